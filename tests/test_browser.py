"""The UI in a real browser: Playwright driving Debian's Chromium against the launched app."""

from __future__ import annotations

import io
import re
import shutil

import pytest
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from models.request import size_of_image
from tests.conftest import ARTIFACTS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Debian's Chromium as root on a machine without network or GPU (see shared/DESIGN.md).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_server) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(app_server[0])
    yield page
    page.close()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and \
        a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


def upload_to_editor(page: Page, path) -> None:
    """A picture into the (empty) inpaint editor, once it shows that it takes one, waited for until it has: its upload
    event sets the tab's Width to the picture's (a click or a stroke before then finds no picture). An upload the
    editor dropped (seen while it was still settling after its tab opened) is given again, the input emptied first
    so that the browser sees a change."""
    editor = page.locator("#inpaint-editor")
    expect(editor.get_by_text("Upload an image")).to_be_visible()
    width = str(size_of_image(Image.open(path))[0])
    shown = page.get_by_role("tabpanel").locator("input[aria-label='number input for Width']")
    for attempt in range(3):
        files = editor.locator("input[type=file]").first
        files.set_input_files([])
        files.set_input_files(path)
        try:
            expect(shown).to_have_value(width, timeout=10_000)
            return
        except AssertionError:
            if attempt == 2:
                raise


def set_number(page: Page, label: str, value: float, in_tab: bool = False) -> None:
    """`in_tab`: the open tab's own field of that label (each tab has its "Sampling steps")."""
    scope = page.get_by_role("tabpanel") if in_tab else page
    field = scope.locator(f"input[type=number][aria-label='number input for {label}']").first
    slider = scope.locator(f"input[type=range][aria-label='range slider for {label}']").first
    # The slider's own value is what a click sends. Under CI load a typed value was once lost outright
    # (a just-opened accordion still mounting), so type it again until the slider shows it.
    for _ in range(3):
        field.fill(str(value))
        field.press("Enter")
        try:
            expect(slider).to_have_value(str(value), timeout=5_000)
            return
        except AssertionError:
            pass
    expect(slider).to_have_value(str(value))


def test_txt2img_generate_shows_the_image_and_its_parameters(page):
    page.locator("#txt2img-prompt textarea").fill("a large red circle on a blue background")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-gallery img").first).to_be_visible(timeout=30_000)
    infotext = page.locator("#txt2img-infotext textarea")
    expect(infotext).to_have_value(
        re.compile(r"^a large red circle on a blue background\nSteps: 20, Sampler: Euler a, "
                   r".*Model: sd-shapes-inpainting")
    )
    expect(page.locator("#system-line")).to_contain_text("native 64x64 · cpu · float32 · attention: sdpa")
    result = page.locator("#txt2img-gallery img").first
    assert result.evaluate("image => getComputedStyle(image).imageRendering") == "pixelated", "crisp, not blurred"
    screenshot(page, "txt2img")


def test_progress_beside_generate_moves_each_step_previews_show_and_interrupt_returns_the_image_early(page):
    page.locator("#txt2img-prompt textarea").fill("a slow job")
    set_number(page, "Sampling steps", 150)
    set_number(page, "Width", 320)  # far beyond the demo's 64 px: slow steps, and a warning
    set_number(page, "Height", 320)
    status = page.locator("#txt2img-status")  # beside Generate: the bar, the step and the time left together
    expect(status).to_contain_text(re.compile(r"this job: about \d+ (s|min) here"))  # the estimate, before
    page.locator("#txt2img-generate").click()
    bar = status.locator("progress")
    expect(bar).to_have_attribute("max", "150", timeout=30_000)
    expect(status).to_contain_text(re.compile(r"step \d+/150 · about \d+ (s|min) left"), timeout=30_000)
    seen = {bar.get_attribute("value")}
    expect(bar).not_to_have_attribute("value", next(iter(seen)), timeout=30_000)  # it moves, step by step
    seen.add(bar.get_attribute("value"))
    assert len(seen) == 2 and max(map(int, seen)) - min(map(int, seen)) < 5, seen  # every step, not every 5th
    # a live preview (every 5 steps) shows in the result area, beside the status, while the job runs
    preview = page.locator("#txt2img-gallery img").first
    expect(preview).to_be_visible(timeout=30_000)
    expect(bar).to_be_visible()
    screenshot(page, "progress")
    page.locator("#txt2img-interrupt").click()
    expect(status).to_contain_text(re.compile(r"interrupted at step \d+/150 after \d+ s"), timeout=30_000)
    notes = page.locator("#txt2img-notes textarea")
    expect(notes).to_have_value(re.compile(r"(^|\n)interrupted"))
    expect(notes).to_have_value(re.compile("^320x320 is far beyond this model's native 64x64: each step takes at "
                                           "least 25x as long"))


def test_inpaint_error_then_painted_mask_generates(page, tmp_path):
    page.get_by_role("tab", name="inpaint").click()
    page.locator("#inpaint-prompt textarea").fill("a cat")
    set_number(page, "Sampling steps", 4, in_tab=True)  # three generations follow
    page.locator("#inpaint-generate").click()  # no image yet
    # beside Generate, where the progress shows, not in a toast over the controls
    expect(page.locator("#inpaint-status")).to_contain_text("error: image is required for inpaint")
    expect(page.locator("#inpaint-notes textarea")).to_have_value("error: image is required for inpaint")
    expect(page.locator(".toast-body")).to_have_count(0)

    Image.new("RGB", (128, 128), "navy").save(tmp_path / "navy.png")
    upload_to_editor(page, tmp_path / "navy.png")
    canvas = page.locator("#inpaint-editor canvas").first
    expect(canvas).to_be_visible()
    canvas.scroll_into_view_if_needed()  # the stroke must be inside the window to reach the canvas
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 40, y)
    page.mouse.down()
    page.mouse.move(x + 40, y, steps=10)
    page.mouse.up()
    page.locator("#inpaint-generate").click()
    expect(page.locator("#inpaint-gallery img").first).to_be_visible(timeout=30_000)
    expect(page.locator("#inpaint-infotext textarea")).to_have_value(re.compile("Steps: 4,.*Denoising strength: 0.75"))
    screenshot(page, "inpaint")

    page.get_by_label("Only masked", exact=True).check()
    page.get_by_label("Soft inpainting", exact=True).check()
    page.locator("#inpaint-generate").click()
    expect(page.locator("#inpaint-infotext textarea")).to_have_value(
        re.compile("Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, Soft inpainting enabled: True"),
        timeout=30_000
    )
    page.locator("#outpaint").get_by_text("Outpaint").first.click()  # open the accordion
    set_number(page, "Right", 64)
    page.locator("#outpaint-button").click()
    first = page.locator("#inpaint-gallery img").first
    expect(first).to_have_js_property("naturalWidth", 128 + 64, timeout=30_000)
    expect(first).to_have_js_property("naturalHeight", 128)
    screenshot(page, "outpaint")


# The colour of one pixel of a picture on the page, as the browser decoded it
PIXEL = """([selector, x, y]) => {
  const image = document.querySelector(selector), canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
  canvas.getContext("2d").drawImage(image, 0, 0);
  return Array.from(canvas.getContext("2d").getImageData(x, y, 1, 1).data.slice(0, 3));
}"""


def test_inpaint_click_to_mask_paints_sams_mask_into_the_editor(page, tmp_path):
    """The app's tiny SAM selects a disc around each include click (testing/sam_files.py): a click paints its mask
    into the editor, which the generation takes as a painted mask, with the picture as it was (lossless: the
    pixels far from the mask come back unchanged); Shift+click adds an exclude point."""
    import numpy as np

    page.get_by_role("tab", name="inpaint").click()
    page.locator("#inpaint-prompt textarea").fill("a cat")
    set_number(page, "Sampling steps", 4, in_tab=True)
    picture = np.random.default_rng(5).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "noise.png")
    upload_to_editor(page, tmp_path / "noise.png")
    page.locator("#inpaint-segment").get_by_text("Click to mask (SAM)").click()  # opening it loads the picture
    shown = "#inpaint-segment-image img"
    expect(page.locator(shown)).to_have_js_property("naturalWidth", 96 * 5)  # a small picture, enlarged 5x
    page.locator(shown).scroll_into_view_if_needed()
    box = page.locator(shown).bounding_box()  # the picture is centred in it at its own size

    def click(x: int, y: int, modifiers=()) -> None:
        page.mouse.move(box["x"] + (box["width"] - 480) / 2 + x * 5 + 2,
                        box["y"] + (box["height"] - 320) / 2 + y * 5 + 2)
        for key in modifiers:
            page.keyboard.down(key)
        page.mouse.down()
        page.mouse.up()
        for key in modifiers:
            page.keyboard.up(key)

    def dot(x: int, y: int, colour: str) -> None:
        """Wait for a dot of that colour on the picture's pixel (x, y) (the page's colours are within a few levels)."""
        test = {"green": "g > 150 && r < 100", "red": "r > 200 && g < 100"}[colour]
        page.wait_for_function(f"(arg) => {{ const [r, g, b] = ({PIXEL})(arg); return {test}; }}",
                               arg=[shown, x * 5 + 2, y * 5 + 2])

    click(20, 40)
    dot(20, 40, "green")
    click(80, 10, ["Shift"])
    dot(80, 10, "red")
    page.locator("#inpaint-generate").click()  # the mask is in the editor: an empty one would be refused
    expect(page.locator("#inpaint-infotext textarea")).to_have_value(re.compile("Steps: 4,"), timeout=30_000)
    expect(page.locator("#inpaint-notes textarea")).to_have_value("")
    result = page.request.get(page.locator("#inpaint-gallery img").first.get_attribute("src")).body()
    result = np.asarray(Image.open(io.BytesIO(result)).convert("RGB"))
    assert np.array_equal(result[:, 60:], picture[:, 60:]), "beyond the click's disc, the picture's own pixels"
    assert not np.array_equal(result[30:50, 10:30], picture[30:50, 10:30]), "around the click, repainted"


def test_lora_picker_writes_tags_and_weights_into_the_prompt(page):
    prompt = page.locator("#txt2img-prompt textarea")
    prompt.fill("a cat")
    page.locator("#txt2img-lora").click()
    page.locator("#txt2img-lora-choice input").click()
    page.get_by_role("option", name="ink", exact=True).click()
    expect(prompt).to_have_value("a cat <lora:ink:1>")
    set_number(page, "ink weight", 0.5)
    expect(prompt).to_have_value("a cat <lora:ink:0.5>")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-infotext textarea")).to_have_value(
        re.compile(r'^a cat <lora:ink:0.5>\n.*Lora hashes: "ink: [0-9a-f]{12}"')
    )
    screenshot(page, "lora")


def test_controlnet_unit_preview_then_generate(page, tmp_path):
    from PIL import ImageDraw

    ring = Image.new("RGB", (128, 128), "black")
    ImageDraw.Draw(ring).ellipse([32, 32, 96, 96], outline="white", width=4)
    ring.save(tmp_path / "ring.png")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.locator("#txt2img-prompt textarea").fill("a ring")
    page.locator("#txt2img-controlnet").get_by_text("ControlNet").first.click()  # open the accordion
    page.locator("#txt2img-cn0-image input[type=file]").set_input_files(tmp_path / "ring.png")
    expect(page.locator("#txt2img-cn0-enabled input")).to_be_checked()  # a control image switches its unit on
    header = page.locator("#txt2img-controlnet").get_by_text(re.compile("^ControlNet")).first
    expect(header).to_have_text("ControlNet (1 unit on)")
    page.locator("#txt2img-cn0-preview").click()
    expect(page.locator("#txt2img-cn0-map img")).to_be_visible(timeout=30_000)
    assert page.locator("#txt2img-cn0-map img").bounding_box()["width"] > 150, "the 64 px map is shown enlarged"
    assert overflowing_labels(page.locator("#txt2img-controlnet")) == []
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-infotext textarea")).to_have_value(
        re.compile(r'ControlNet 0: "Module: canny, Model: edges \[[0-9a-f]{8}\], Weight: 1.0'), timeout=30_000
    )
    screenshot(page, "controlnet")


def overflowing_labels(area) -> list[str]:
    """The components' labels in `area` that wrap onto a second line or overflow their box, from their bounding
    boxes."""
    return area.evaluate("""area => [...area.querySelectorAll('[data-testid="block-info"]')]
        .filter(label => label.offsetParent !== null && label.textContent.trim())
        .filter(label => {
            const box = label.getBoundingClientRect(), style = getComputedStyle(label);
            const line = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.3;
            return box.height > line * 1.5 || label.scrollWidth > label.clientWidth + 1;
        })
        .map(label => label.textContent.trim())""")


def test_results_reuse_seed_survive_an_error_and_go_to_inpaint_and_extras(page):
    page.locator("#txt2img-prompt textarea").fill("a green square")
    page.locator("#txt2img-generate").click()
    infotext = page.locator("#txt2img-infotext textarea")
    expect(infotext).to_have_value(re.compile(r"^a green square\n.*Seed: \d+"), timeout=30_000)
    seed = re.search(r"Seed: (\d+)", infotext.input_value())[1]
    result = page.locator("#txt2img-gallery img").first
    source = result.get_attribute("src")
    page.locator("#txt2img-reuse-seed").click()
    expect(page.get_by_role("tabpanel").get_by_label("Seed (-1: random)")).to_have_value(seed)

    page.locator("#txt2img-prompt textarea").fill("a green square <lora:inc:1>")  # a typo: the job fails
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-status")).to_contain_text("did you mean 'ink'?")
    expect(page.locator("#txt2img-notes textarea")).to_have_value(re.compile("^error: LoRA 'inc'"))
    expect(result).to_be_visible()  # the last image stays, without an error badge over it
    assert result.get_attribute("src") == source
    expect(page.locator("#txt2img-gallery").get_by_text("Error", exact=True)).to_be_hidden()
    screenshot(page, "error-keeps-result")

    page.locator("#txt2img-to-inpaint").click()
    expect(page.locator("#inpaint-prompt textarea")).to_have_value("a green square")
    tab = page.get_by_role("tabpanel")  # the tab on show
    expect(tab.get_by_label("Seed (-1: random)")).to_have_value(seed)
    expect(page.locator("#inpaint-editor canvas").first).to_be_visible()
    expect(tab.locator("input[aria-label='number input for Width']")).to_have_value("64")

    page.get_by_role("tab", name="txt2img").click()
    page.locator("#txt2img-to-extras").click()
    expect(page.locator("#extras-image img")).to_be_visible()
    page.locator("#extras-upscaler input").click()
    page.get_by_role("option", name="tiny-x2", exact=True).click()
    page.locator("#extras-run").click()
    expect(page.locator("#extras-info textarea")).to_have_value("64x64 -> 128x128 (tiny-x2)", timeout=30_000)
    expect(page.locator("#extras-result img")).to_have_js_property("naturalWidth", 128)
    screenshot(page, "extras")


@pytest.fixture
def restarted(app_server, browser):
    """A page on a second app over the app_server's output folder: what a restart sees."""
    import app
    from testing.ports import free_port

    config = app.parse_config(["--model", "demo", "--device", "cpu", "--port", str(free_port()),
                               "--output-dir", str(app_server[1].output_dir)], environ={})
    server, service = app.start_in_background(config)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"http://{config.host}:{config.port}")
    yield page
    page.close()
    app.stop_in_background(server)


def test_history_after_a_restart_lists_filters_sends_to_img2img_and_deletes(restarted, app_server):
    """What the first app made today, and an image of yesterday's, are listed by a restarted app, newest first;
    the filter finds yesterday's; Send to img2img fills the tab; Delete removes the file."""
    import os

    from models.infotext import save_png

    service, page = app_server[1], restarted
    today = service.run("txt2img", dict(prompt="a blue triangle today", seed=3, steps=2, width=64,
                                        height=64)).files[0]
    yesterday = save_png(Image.new("RGB", (64, 64), "purple"),
                         service.output_dir / "txt2img-images" / "2026-11-29" / "00000-42.png",
                         "a purple moon yesterday\nSteps: 7, Sampler: Euler a, CFG scale: 6, Seed: 42, Size: 64x64")
    os.utime(yesterday, (1, 1))
    page.get_by_role("tab", name="History").click()
    gallery = page.locator("#history-gallery")
    expect(page.locator("#history-page")).to_contain_text(re.compile(r"page 1 of \d+ · \d+ images"))
    seed = today.stem.split("-")[1]  # captions tell images apart by mode, day, time and seed, not file name
    expect(gallery.get_by_text(re.compile(rf"^txt2img · {today.parent.name} \d\d:\d\d · seed {seed}$"))).to_be_visible()
    page.locator("#history-filter textarea").fill("PURPLE moon")
    page.locator("#history-filter textarea").press("Enter")
    expect(page.locator("#history-page")).to_have_text("page 1 of 1 · 1 image matching 'PURPLE moon'")
    gallery.locator("img").first.click()
    expect(page.locator("#history-infotext textarea")).to_have_value(re.compile("^a purple moon yesterday\nSteps: 7"))
    screenshot(page, "history")
    page.locator("#history-to-img2img").click()
    expect(page.locator("#img2img-prompt textarea")).to_have_value("a purple moon yesterday")
    expect(page.get_by_role("tabpanel").locator("input[aria-label='number input for Sampling steps']")
           ).to_have_value("7")
    expect(page.locator("#img2img-image img")).to_be_visible()

    page.get_by_role("tab", name="History").click()
    gallery.locator("img").first.click()
    page.locator("#history-delete").click()
    expect(page.locator("#history-page")).to_contain_text("0 images matching 'PURPLE moon' · deleted 00000-42.png")
    assert not yesterday.exists() and today.exists()


def test_the_model_dropdown_switches_the_model_and_a_bad_name_keeps_it(page, app_server, family_folder,
                                                                         tmp_path_factory):
    """From the demo (SD 1.x) to an SDXL checkpoint: each choice names its family."""
    from tests.conftest import checkpoint_dir

    service = app_server[1]
    copy = checkpoint_dir(tmp_path_factory) / "ui"  # taken away after: other tests list the folder
    shutil.copytree(family_folder("sdxl"), copy / "tiny-sdxl", dirs_exist_ok=True)
    choice = page.locator("#model-choice input")
    expect(choice).to_have_value("demo · SD 1.x")
    page.locator("#model-refresh").click()  # the checkpoint just added
    try:
        choice.click()
        page.get_by_role("option", name="ui/tiny-sdxl · SDXL").click()
        expect(page.locator("#system-line")).to_contain_text("model: tiny-sdxl [", timeout=30_000)
        expect(page.locator("#system-line")).to_contain_text(" · SDXL · 4-channel U-Net")
        page.locator("#txt2img-prompt textarea").fill("a (red:1.2) circle")
        page.locator("#txt2img-generate").click()
        expect(page.locator("#txt2img-infotext textarea")).to_have_value(re.compile("Model: tiny-sdxl"),
                                                                         timeout=30_000)
        choice.fill("nosuch")
        choice.press("Enter")
        toast = page.locator(".toast-body").filter(has_text="no model named 'nosuch'")
        expect(toast).to_be_visible()
        for control in ("#model-choice", "#txt2img-generate", "#txt2img-interrupt", "#txt2img-status"):
            assert not overlap(toast.bounding_box(), page.locator(control).bounding_box()), control  # off them
        expect(choice).to_have_value("ui/tiny-sdxl · SDXL")
        page.reload()  # a page opened later shows the model in use
        expect(page.locator("#model-choice input")).to_have_value("ui/tiny-sdxl · SDXL")
        screenshot(page, "model-switched")
    finally:
        service.switch_model("demo")
        shutil.rmtree(copy)
    assert service.model_name == "demo" and service.manager.source.name == "sd-shapes-inpainting"


def regenerate_in_txt2img(page: Page, infotext_pattern: str, original) -> None:
    """Generate in txt2img, wait for an infotext matching the pattern, and check the pixels equal the original's."""
    import io

    import numpy as np

    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-infotext textarea")).to_have_value(re.compile(infotext_pattern), timeout=30_000)
    source = page.locator("#txt2img-gallery img").first.get_attribute("src")
    regenerated = Image.open(io.BytesIO(page.request.get(source).body()))
    assert np.array_equal(np.asarray(regenerated.convert("RGB")), np.asarray(Image.open(original).convert("RGB")))


def test_png_info_send_to_txt2img_regenerates_the_same_pixels(page, app_server, tmp_path):
    service = app_server[1]
    original = service.run("txt2img", dict(prompt="a lighthouse <lora:ink:0.6>", negative_prompt="fog", seed=77,
                                           steps=5,
                                           guidance_scale=5.5, sampler="DPM++ 2M Karras", width=64, height=72)).files[0]
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo-image input[type=file]").set_input_files(original)
    expect(page.locator("#pnginfo-text textarea")).to_have_value(re.compile("a lighthouse <lora:ink:0.6>"))
    page.locator("#pnginfo-to-txt2img").click()
    expect(page.locator("#txt2img-prompt textarea")).to_have_value("a lighthouse <lora:ink:0.6>")
    regenerate_in_txt2img(page, r"Steps: 5, Sampler: DPM\+\+ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 77, "
                                r"Size: 64x72", original)
    screenshot(page, "pnginfo")


def test_png_info_send_to_fills_the_controlnet_unit_and_regenerates_the_same_pixels(page, app_server, tmp_path):
    from PIL import ImageDraw

    ring = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(ring).ellipse([12, 12, 52, 52], outline="white", width=3)
    ring.save(tmp_path / "ring.png")
    unit = {"enabled": True, "image": ring, "module": "canny", "model": "edges", "weight": 0.7, "guidance_end": 0.8}
    original = app_server[1].run("txt2img", dict(prompt="a ring", seed=5, steps=4, width=64, height=64,
                                                 controlnet_units=[unit])).files[0]
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo-image input[type=file]").set_input_files(original)
    expect(page.locator("#pnginfo-text textarea")).to_have_value(re.compile("ControlNet 0"))
    page.locator("#pnginfo-to-txt2img").click()
    page.locator("#txt2img-controlnet").get_by_text("ControlNet").first.click()  # open the accordion
    expect(page.locator("#txt2img-cn0-enabled input")).to_be_checked()
    expect(page.locator("#txt2img-cn0-model input")).to_have_value("edges")
    panel = page.locator("#txt2img-controlnet")
    expect(panel.locator("input[type=number][aria-label='number input for Control Weight']").first).to_have_value("0.7")
    expect(panel.locator("input[type=number][aria-label='number input for Ending Control Step']").first
           ).to_have_value("0.8")
    # the image does not carry the control image: give it again, then the same pixels come back
    page.locator("#txt2img-cn0-image input[type=file]").set_input_files(tmp_path / "ring.png")
    regenerate_in_txt2img(page, r'ControlNet 0: "Module: canny, Model: edges \[[0-9a-f]{8}\], Weight: 0.7.*'
                                r'Guidance End: 0.8', original)
    screenshot(page, "pnginfo-controlnet")


def test_hires_fix_sent_from_png_info_is_on_in_the_accordion_and_regenerates_the_same_pixels(page, app_server):
    service = app_server[1]
    original = service.run("txt2img", dict(prompt="a red circle", seed=31, steps=4, width=64, height=64,
                                           enable_hr=True, hr_upscaler="tiny-x2", hr_scale=1.5, hr_second_pass_steps=2,
                                           hr_denoising_strength=0.55)).files[0]
    assert Image.open(original).size == (96, 96)
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo-image input[type=file]").set_input_files(original)
    expect(page.locator("#pnginfo-text textarea")).to_have_value(re.compile("Hires upscaler: tiny-x2"))
    page.locator("#pnginfo-to-txt2img").click()
    accordion = page.locator("#txt2img-hires")
    expect(accordion).to_contain_text("Hires. fix: on, from 64x64 to 96x96")
    regenerate_in_txt2img(page, r"Size: 64x64, .*Denoising strength: 0.55, Hires upscale: 1.5, Hires steps: 2, "
                                r"Hires upscaler: tiny-x2$", original)
    accordion.get_by_text("Hires. fix: on").click()  # open it, and turn it off there
    page.locator("#txt2img-enable-hr input").uncheck()
    expect(accordion).not_to_contain_text("Hires. fix: on")
    screenshot(page, "hires")


def test_train_tab_trains_a_lora_with_progress_and_a_sample(page, app_server, tmp_path):
    from PIL import ImageDraw

    files = []
    for index in range(3):
        picture = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(picture).ellipse([8 + 8 * index, 10, 40 + 8 * index, 42], fill=(30, 60, 210))
        picture.save(tmp_path / f"{index}.png")
        files.append(str(tmp_path / f"{index}.png"))
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-images input[type=file]").set_input_files(files)
    page.locator("#train-run").click()  # no name yet: refused, and the progress box says so (not "waiting")
    expect(page.locator("#train-status textarea")).to_have_value(re.compile(r"^not trained: name must be 1 to 64"))
    page.locator("#train-name input, #train-name textarea").first.fill("browser-trained")
    page.locator("#train-instance input, #train-instance textarea").first.fill("a sks circle")
    set_number(page, "Steps", 6)
    set_number(page, "A sample every N steps", 3)
    try:
        page.locator("#train-run").click()
        expect(page.locator("#train-result textarea")).to_have_value(
            re.compile(r"^trained 6 steps; final loss [0-9.]+\. Use it as <lora:browser-trained:1>"), timeout=60_000)
        expect(page.locator("#train-status textarea")).to_have_value(
            re.compile(r"^step 6/6, loss [0-9.]+, sample at step 6$"))
        expect(page.locator("#train-sample img")).to_be_visible()
        screenshot(page, "train")
    finally:
        trained = app_server[1].extension("lora").library.folder / "browser-trained.safetensors"
        trained.unlink(missing_ok=True)


# The shown part of the largest image in a gallery: where object-fit draws it inside its box, clipped by every
# ancestor that hides what overflows and by the window; and how its drawn aspect ratio compares with the picture's.
SHOWN = """(gallery) => {
    const images = [...document.querySelectorAll(gallery + ' img')];
    const size = (image) => image.getBoundingClientRect().width * image.getBoundingClientRect().height;
    const image = images.reduce((a, b) => size(a) >= size(b) ? a : b);
    const box = image.getBoundingClientRect(), fit = getComputedStyle(image).objectFit;
    const [nw, nh] = [image.naturalWidth, image.naturalHeight];
    const scale = {contain: Math.min(box.width / nw, box.height / nh), cover: Math.max(box.width / nw, box.height / nh),
                   none: 1, 'scale-down': Math.min(1, box.width / nw, box.height / nh)}[fit];
    const [w, h] = scale === undefined ? [box.width, box.height] : [nw * scale, nh * scale];
    let shown = {left: box.left + (box.width - w) / 2, top: box.top + (box.height - h) / 2};
    shown = {...shown, right: shown.left + w, bottom: shown.top + h};
    const clip = (r) => { shown = {left: Math.max(shown.left, r.left), top: Math.max(shown.top, r.top),
                                   right: Math.min(shown.right, r.right), bottom: Math.min(shown.bottom, r.bottom)}; };
    for (let element = image.parentElement; element; element = element.parentElement) {
        const style = getComputedStyle(element);
        const hides = [style.overflowX, style.overflowY].some((value) => value !== 'visible');
        if (hides) clip(element.getBoundingClientRect());
    }
    clip({left: 0, top: 0, right: innerWidth, bottom: innerHeight});
    const area = Math.max(0, shown.right - shown.left) * Math.max(0, shown.bottom - shown.top);
    return {fraction: area / (w * h), aspect: (w / h) / (nw / nh), drawn: [w, h], natural: [nw, nh]};
}"""


def test_results_are_shown_whole_at_any_window_size(page, tmp_path):
    """64x64 and 64x128 from txt2img and a 200x150 inpaint result, each at 1280x800 and 1920x1080: all of the
    picture inside the results box and the window, in its own aspect ratio, enlarged."""
    results = []
    for width, height in ((64, 64), (64, 128)):
        page.set_viewport_size({"width": 1280, "height": 800})
        page.locator("#txt2img-prompt textarea").fill("a red circle")
        set_number(page, "Sampling steps", 2)
        set_number(page, "Width", width)
        set_number(page, "Height", height)
        page.locator("#txt2img-generate").click()
        expect(page.locator("#txt2img-infotext textarea")).to_have_value(re.compile(f"Size: {width}x{height}"),
                                                                          timeout=30_000)
        results.append(("#txt2img-gallery", (width, height)))
        for viewport in ((1280, 800), (1920, 1080)):
            page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
            page.evaluate("window.scrollTo(0, 0)")  # the page's top: the results box is lowest in the window there
            page.wait_for_timeout(300)
            results.append((viewport, page.evaluate(SHOWN, "#txt2img-gallery")))
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("tab", name="inpaint").click()
    Image.new("RGB", (200, 150), "navy").save(tmp_path / "wide.png")
    mask = Image.new("L", (200, 150), 0)
    mask.paste(255, (60, 40, 140, 110))
    mask.save(tmp_path / "mask.png")
    upload_to_editor(page, tmp_path / "wide.png")
    page.locator("#inpaint-mask input[type=file]").first.set_input_files(tmp_path / "mask.png")
    uploaded = page.locator("#inpaint-mask img").first
    expect(uploaded).to_be_visible()
    assert uploaded.bounding_box()["height"] >= 150, "the uploaded mask is shown large enough to check, not a stamp"
    page.locator("#inpaint-prompt textarea").fill("a square")
    set_number(page, "Sampling steps", 4, in_tab=True)
    page.locator("#inpaint-generate").click()
    expect(page.locator("#inpaint-infotext textarea")).to_have_value(re.compile("Steps: 4"), timeout=30_000)
    for viewport in ((1280, 800), (1920, 1080)):
        page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        results.append((viewport, page.evaluate(SHOWN, "#inpaint-gallery")))
    screenshot(page, "whole-results")
    measured = [shown for viewport, shown in results if isinstance(shown, dict)]
    assert [tuple(shown["natural"]) for shown in measured] == [(64, 64)] * 2 + [(64, 128)] * 2 + [(200, 150)] * 2
    for shown in measured:
        assert shown["fraction"] > 0.99, shown  # whole: nothing cropped, nothing out of the window
        assert abs(shown["aspect"] - 1) < 0.02, shown  # its own shape
        assert max(shown["drawn"]) >= 300, shown  # enlarged to the box, not a stamp


def test_styles_apply_into_the_prompts_and_the_prompts_save_as_a_style(page, app_server):
    library = app_server[1].extension("styles").library
    kept = library.path.read_bytes()
    try:
        prompt, negative = page.locator("#txt2img-prompt textarea"), page.locator("#txt2img-negative textarea")
        prompt.fill("a cat")
        page.locator("#txt2img-styles").click()
        page.locator("#txt2img-styles-choice input").click()
        page.get_by_role("option", name="inked", exact=True).click()
        page.locator("#txt2img-styles-apply").click()
        expect(prompt).to_have_value("ink drawing of a cat, lineart")
        negative.fill("blurry")
        page.locator("#txt2img-styles-name").locator("textarea, input").first.fill("my style")
        page.locator("#txt2img-styles-save").click()
        expect(page.locator("#txt2img-styles-name").locator("textarea, input").first).to_have_value("")
        assert library.styles()["my style"].negative_prompt == "blurry"
        screenshot(page, "styles")
    finally:
        library.path.write_bytes(kept)


def test_variation_seed_and_tiling_reach_the_image_and_come_back_with_reuse(page):
    page.locator("#txt2img-prompt textarea").fill("a red circle")
    set_number(page, "Sampling steps", 2)
    page.get_by_label("Seed (-1: random)").first.fill("5")
    page.locator("#txt2img-variation").get_by_text("Variation seed").first.click()  # open the accordion
    page.locator("#txt2img-subseed input").fill("42")
    set_number(page, "Variation strength", 0.3)
    page.locator("#txt2img-tiling input[type=checkbox]").check()
    page.locator("#txt2img-generate").click()
    infotext = page.locator("#txt2img-infotext textarea")
    expect(infotext).to_have_value(re.compile("Tiling: True.*Variation seed: 42, Variation seed strength: 0.3"),
                                   timeout=30_000)
    screenshot(page, "variation-seed")
    page.locator("#txt2img-to-img2img").click()  # the parameters travel with the picture, as PNG Info's Send to
    tab = page.get_by_role("tabpanel")
    expect(tab.locator("#img2img-tiling input[type=checkbox]")).to_be_checked()
    tab.locator("#img2img-variation").get_by_text("Variation seed").first.click()
    expect(tab.locator("#img2img-subseed input")).to_have_value("42")
    expect(tab.locator("#img2img-subseed-strength input[type=number]")).to_have_value("0.3")


def test_the_script_dropdown_runs_an_xyz_plot(page):
    page.locator("#txt2img-prompt textarea").fill("a red circle")
    set_number(page, "Sampling steps", 2)
    page.locator("#txt2img-script input").click()
    page.get_by_role("option", name="X/Y/Z plot", exact=True).click()
    page.locator("#txt2img-x_type input").click()
    page.get_by_role("option", name="Steps", exact=True).click()
    page.locator("#txt2img-x_values textarea, #txt2img-x_values input").first.fill("1, 2")
    page.locator("#txt2img-generate").click()
    expect(page.locator("#txt2img-infotext textarea")).to_have_value(re.compile("Script: X/Y/Z plot, X Type: Steps"),
                                                                      timeout=60_000)
    expect(page.locator("#txt2img-gallery img").first).to_have_js_property("naturalWidth", 128)
    page.locator("#txt2img-script").scroll_into_view_if_needed()
    screenshot(page, "xyz-plot")
