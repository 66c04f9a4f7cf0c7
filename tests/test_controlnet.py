"""ControlNet units through the studio service on real (tiny) ControlNets with SD 1.5's 4-channel conv_in: over
the 9-channel inpainting U-Net and a 4-channel one, in every mode, several at once, switching, bad input, the
infotext, and the API (units and the canny preview through gradio_client)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from PIL import Image, ImageDraw

from extensions.controlnet import extension as controlnet
from extensions.controlnet.units import fit
from extensions.inpaint import Inpaint, InpaintOptions, InpaintPlan
from models.infotext import parse_infotext
from models.manager import PipelineManager
from service.studio import StudioService
from testing.controlnet_files import controlnet_for

SIZE = 64


def circle(size: int = SIZE) -> Image.Image:
    image = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(image).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], outline="white", width=3)
    return image


def studio(manager: PipelineManager, folder, outputs) -> StudioService:
    unet, scale = manager.pipelines["txt2img"].unet, manager.pipelines["txt2img"].vae_scale_factor
    controlnet_for(unet, seed=1, vae_scale_factor=scale).save_pretrained(folder / "cn_a")
    controlnet_for(unet, seed=2, vae_scale_factor=scale).save_pretrained(folder / "cn_b")
    (folder / "pickled.pth").write_bytes(b"never unpickled")
    wide = controlnet_for(unet, seed=3, vae_scale_factor=scale)
    wide.register_to_config(cross_attention_dim=2048)  # as an SDXL ControlNet declares itself
    wide.save_pretrained(folder / "sdxl_cn")
    return StudioService(manager, outputs, [Inpaint(), controlnet.ControlNet(folder)])


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return studio(PipelineManager.load("demo", device="cpu"), tmp_path_factory.mktemp("ControlNet"),
                  tmp_path_factory.mktemp("outputs"))


@pytest.fixture(scope="module")
def service4(txt2img_folder, tmp_path_factory):
    """The same over a 4-channel U-Net."""
    return studio(PipelineManager.load(str(txt2img_folder), device="cpu"), tmp_path_factory.mktemp("ControlNet4"),
                  tmp_path_factory.mktemp("outputs4"))


def run(service, mode="txt2img", units=(), **settings) -> np.ndarray:
    inputs = {"prompt": "a cat", "steps": 3, "seed": 4, "width": SIZE, "height": SIZE}
    if mode != "txt2img":
        inputs.update(image=Image.new("RGB", (SIZE, SIZE), "gray"), strength=0.8)
    if mode == "inpaint":
        mask = Image.new("L", (SIZE, SIZE), 0)
        mask.paste(255, (8, 8, 56, 56))
        inputs["mask"] = mask
    generation = service.generate(*service.build(mode, {"controlnet_units": list(units), **inputs, **settings}))
    return np.asarray(Image.open(generation.files[0])).astype(int)


def preview(service):
    """A unit's Preview button, as the tabs have it."""
    from extensions.controlnet.panel import make_preview
    from ui.handlers import editor_image_and_mask, image_file

    return make_preview(service.extension("controlnet"), image_file, lambda editor: editor_image_and_mask(editor)[0])


def unit(model="cn_a", **settings) -> dict:
    return {"enabled": True, "module": "canny", "model": model, "image": circle(), **settings}


def test_weight_zero_or_guidance_end_zero_equal_no_controlnet_and_a_unit_changes_the_output(service):
    base = run(service)
    assert np.array_equal(run(service, units=[unit(weight=0.0)]), base)
    assert np.array_equal(run(service, units=[unit(guidance_end=0.0)]), base)
    assert np.array_equal(run(service, units=[{**unit(), "enabled": False}]), base)
    assert np.abs(run(service, units=[unit()]) - base).max() > 10


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_every_mode_over_both_unets(service, service4, mode):
    for studio_service in (service, service4):
        base = run(studio_service, mode)
        assert np.abs(run(studio_service, mode, [unit()]) - base).max() > 10, (mode, studio_service.manager)


def test_two_units_at_once_and_switching_back_reproduces_and_shares_the_unet(service):
    unet = service.manager.pipelines["inpaint"].unet
    a = run(service, units=[unit("cn_a")])
    b = run(service, units=[unit("cn_b")])
    both = run(service, units=[unit("cn_a"), unit("cn_b", control_mode="My prompt is more important")])
    assert np.abs(a - b).max() > 10 and np.abs(both - a).max() > 0 and np.abs(both - b).max() > 0
    assert np.array_equal(run(service, units=[unit("cn_a")]), a), "A, B, A again: A's pixels"
    assert all(pipe.unet is unet for pipe in service.manager.pipelines.values()), "the U-Net is never copied"


def test_only_masked_crops_the_control_map_like_the_image(service):
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (120, 30, 160, 70))
    options = {"inpaint_area": "Only masked", "padding": 8, "mask_blur": 0}
    seen = []
    original = service.manager.generate_together
    service.manager.generate_together = lambda jobs, *rest: seen.extend(jobs) or original(jobs, *rest)
    try:
        service.generate(*service.build("inpaint", dict(
            prompt="x", image=picture, mask=mask, steps=2, width=SIZE, height=SIZE,
            controlnet_units=[{"module": "none", "model": "cn_a"}], **options)))
    finally:
        del service.manager.generate_together
    plan = InpaintPlan.make(picture, mask, InpaintOptions(**options), SIZE, SIZE)
    control = np.asarray(seen[0].part("controlnet").maps[0].image).astype(int)
    fitted = fit(picture, picture.size, "Crop and Resize")
    expected = np.asarray(fitted.crop(plan.box).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    whole = np.asarray(fitted.resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    assert np.array_equal(control, expected), "the map is cropped exactly as the image is"
    assert np.abs(control - whole).mean() > 20, "(and not the whole picture)"


def halves(size: int = SIZE) -> tuple[Image.Image, Image.Image]:
    """Regions: the left half white, and the right half."""
    left = Image.new("L", (size, size), 0)
    left.paste(255, (0, 0, size // 2, size))
    return left, Image.eval(left, lambda value: 255 - value)


def test_an_effective_region_limits_the_unit_to_it(service):
    """sd-webui-controlnet's effective region mask: white everywhere is no region, black everywhere no unit; the left
    half moves the picture's left half the most."""
    base, whole = run(service), run(service, units=[unit()])
    white, black = Image.new("L", (SIZE, SIZE), 255), Image.new("L", (32, 32), 0)  # any size: stretched over
    assert np.array_equal(run(service, units=[unit(effective_region_mask=white)]), whole)
    assert np.array_equal(run(service, units=[unit(effective_region_mask=black)]), base)
    left, _ = halves()
    assert np.abs(run(service, units=[unit(effective_region_mask=left)]) - whole).max() > 10


def test_the_region_weights_each_units_residuals_at_their_sizes(service4):
    from extensions.controlnet.pipeline import UnitControlNets
    from extensions.controlnet.regions import weights

    unet = service4.manager.pipelines["txt2img"].unet
    nets = [controlnet_for(unet, seed=1), controlnet_for(unet, seed=2)]
    generator = torch.Generator().manual_seed(0)
    inputs = dict(sample=torch.randn(1, 4, 8, 8, generator=generator), timestep=torch.tensor(500),
                  encoder_hidden_states=torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator),
                  controlnet_cond=[torch.rand(1, 3, SIZE, SIZE, generator=generator)] * 2, conditioning_scale=[1.0] * 2)
    left, right = halves()
    with torch.no_grad():
        alone = [UnitControlNets([net], [False])(**{**inputs, "controlnet_cond": inputs["controlnet_cond"][:1],
                                                    "conditioning_scale": [1.0]}) for net in nets]
        down, mid = UnitControlNets(nets, [False, False], [left, right])(**inputs)
    for level, (total, first, second) in enumerate(zip([*down, mid], [*alone[0][0], alone[0][1]],
                                                       [*alone[1][0], alone[1][1]])):
        height, width = total.shape[-2:]
        expected = first * weights(left, height, width) + second * weights(right, height, width)
        assert torch.allclose(total, expected, atol=1e-5), level
        if width >= 4:  # the first unit's residuals are the left half's, the second's the right half's
            assert torch.equal(total[..., : width // 2 - 1], first[..., : width // 2 - 1])


def test_the_panel_sends_each_units_region_with_it(service):
    """The panel's components, unit after unit, become the units the API takes; a region drawn in one stays its."""
    import gradio as gr

    from extensions.base import TabContext
    from extensions.controlnet.panel import UNIT_FIELDS, controlnet_panel

    with gr.Blocks():
        tab = TabContext("txt2img", gr.Textbox(), gr.Textbox(), None, [gr.Slider(), gr.Slider()],
                         image_file=lambda image, name: name, editor_image=lambda editor: None, encoder_text=str)
        panel = controlnet_panel(service.extension("controlnet"), tab)
    regions = [component for component in panel.inputs if (component.elem_id or "").endswith("-region")]
    assert len(regions) == service.extension("controlnet").max_units == len(panel.inputs) // len(UNIT_FIELDS)
    left, _ = halves()
    values = [None] * len(panel.inputs)
    for index, name in enumerate(UNIT_FIELDS):
        values[len(UNIT_FIELDS) + index] = {"enabled": True, "model": "cn_a", "effective_region_mask": left}.get(name)
    assert panel.collect(values) == {"controlnet_units": [{**dict.fromkeys(UNIT_FIELDS), "enabled": True,
                                                          "model": "cn_a", "effective_region_mask": left}]}
    assert panel.inputs.index(regions[1]) == len(UNIT_FIELDS) + UNIT_FIELDS.index("effective_region_mask")


def test_only_masked_crops_the_effective_region_like_the_image():
    from extensions.controlnet.units import ControlUnit

    region = Image.new("L", (200, 150), 0)
    region.paste(255, (120, 30, 160, 70))
    unit_ = ControlUnit(module="none", model="cn_a", effective_region_mask=region)
    box = (110, 20, 170, 80)
    control = unit_.control_input(circle(), (SIZE, SIZE), 0, crop=((200, 150), box))
    expected = region.crop(box).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(control.region), np.asarray(expected))
    stretched = unit_.control_input(circle(), (SIZE, 48), 0).region
    assert stretched.size == (SIZE, 48)


class Captured(Exception):
    """Raised by the spy instead of running the job: the test only needs what the model would get."""


def control_images_of(service, mode: str, **inputs) -> list[Image.Image]:
    """The control maps the job of a request for `mode` with `inputs` hands the model."""
    jobs = []

    def spy(requests, *rest):
        jobs.extend(requests)
        raise Captured

    service.manager.generate_together = spy
    try:
        with pytest.raises(Captured):
            service.generate(*service.build(mode, {"prompt": "x", "steps": 2, **inputs}))
    finally:
        del service.manager.generate_together
    return [control.image for control in jobs[0].part("controlnet").maps]


@pytest.mark.parametrize("pixel_perfect", [True, False])
@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_preview_shows_exactly_the_map_the_generation_uses(service, mode, pixel_perfect):
    rng = np.random.default_rng(3)
    source = circle(96).crop((0, 10, 96, 80))  # 96x70: another size and aspect than the generation's
    picture = Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    settings = {"module": "canny", "processor_res": 256, "threshold_a": 60, "threshold_b": 120,
                "pixel_perfect": pixel_perfect, "resize_mode": "Crop and Resize"}
    inputs = {"width": 96, "height": SIZE} if mode == "txt2img" else {"width": SIZE, "height": SIZE, "image": picture}
    tab_image = {"background": picture, "layers": [], "composite": picture} if mode == "inpaint" else picture
    if mode == "inpaint":
        inputs["mask"] = Image.new("L", picture.size, 255)  # whole picture: the map is not cropped
    used = control_images_of(service, mode, controlnet_units=[{"model": "cn_a", "image": source, **settings}],
                             **inputs)
    shown = Image.open(preview(service)(
        source, settings["module"], settings["processor_res"], settings["threshold_a"], settings["threshold_b"],
        pixel_perfect, settings["resize_mode"], inputs["width"], inputs["height"],
        None if mode == "txt2img" else tab_image))
    assert shown.size == used[0].size == (inputs["width"], inputs["height"])
    assert np.array_equal(np.asarray(shown), np.asarray(used[0]))
    assert np.asarray(shown).max() > 40, "an edge map, not an empty one"


def test_pixel_perfect_is_the_default_and_detects_at_the_generation_resolution(service):
    """At the old default (Preprocessor Resolution 512 for a 64 px generation) the canny map of a demo image is
    black but for faint traces; pixel perfect, now the default, detects at the generation's own resolution."""
    from training.shapes import Scene, Shape, render

    small = render(Scene((Shape("circle", "red", "large"),), "blue"), SIZE)
    default = control_images_of(service, "txt2img", controlnet_units=[{"model": "cn_a", "image": small,
                                                                       "module": "canny"}], width=SIZE, height=SIZE)
    at_512 = control_images_of(service, "txt2img", width=SIZE, height=SIZE, controlnet_units=[
        {"model": "cn_a", "image": small, "module": "canny", "pixel_perfect": False, "processor_res": 512}])
    strong = [int((np.asarray(image.convert("L")) > 128).sum()) for image in (default[0], at_512[0])]
    assert strong[0] > 100 and strong[1] < 10, strong


@pytest.mark.parametrize("change, message", [
    ({"model": "nowhere"}, "ControlNet 'nowhere' not found in"),
    ({"model": "pickled"}, "pickled weights .* can run code"),
    ({"model": "sdxl_cn"}, "made for another base model: its cross-attention width is 2048 .SDXL., the base "
                           "model's is 64"),
    ({"image": "bm90IGFuIGltYWdl"}, "controlnet unit 0: image is not a readable base64-encoded image"),
    ({"weight": 3}, "controlnet unit 0: ControlNet weight must be from 0.0 to 2.0, got 3"),
    ({"module": "cany"}, "controlnet unit 0: preprocessor 'cany' is not available here; available: none, canny"),
    ({"resize_mode": "Stretch"}, "resize_mode must be one of Just Resize, Crop and Resize, Resize and Fill"),
])
def test_bad_units_are_refused_clearly_and_the_next_request_works(service, change, message):
    with pytest.raises(ValueError, match=message):
        run(service, units=[unit(**change)])
    assert run(service, units=[unit()]).shape == (SIZE, SIZE, 3)


def test_txt2img_unit_needs_an_image_and_mixed_guess_mode_is_refused(service):
    with pytest.raises(ValueError, match="controlnet unit 0: give it an image"):
        run(service, units=[{"module": "canny", "model": "cn_a"}])
    with pytest.raises(ValueError, match="every unit of the request must use it or none"):
        run(service, units=[unit(control_mode="ControlNet is more important"), unit("cn_b")])


def encoded(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_units_and_canny_preview_through_gradio_client(client, tmp_path):
    circle(128).save(tmp_path / "circle.png")
    detected = client.predict(image=handle_file(tmp_path / "circle.png"), module="canny", threshold_a=50,
                              threshold_b=150, api_name="/controlnet_detect")
    edges = np.asarray(Image.open(detected).convert("L"))
    assert edges.shape == (128, 128) and edges[60:68, 60:68].max() == 0 and edges.max() > 40, "edges on the ring only"
    from training.shapes import Scene, Shape, render

    # pixel perfect by default: the map at the image's own resolution
    render(Scene((Shape("circle", "red", "large"),), "blue"), 64).save(tmp_path / "small.png")
    small = [np.asarray(Image.open(client.predict(image=handle_file(tmp_path / "small.png"), module="canny",
                                                  pixel_perfect=pixel_perfect, api_name="/controlnet_detect")))
             for pixel_perfect in (True, False)]
    assert (small[0] > 128).sum() > 100 and (small[1] > 128).sum() < 10, "at 512 px a 64 px image's edges fade"
    gallery, infotext, warnings = client.predict(
        prompt="a ring", seed=1, steps=2, width=64, height=64, api_name="/txt2img",
        controlnet_units=[{"module": "canny", "model": "edges", "image": encoded(circle(128)), "weight": 0.8,
                           "extra_field": 1}],
    )
    entry = parse_infotext(infotext)[2]["ControlNet 0"]
    assert re.fullmatch(
        r"Module: canny, Model: edges \[[0-9a-f]{8}\], Weight: 0.8, Resize Mode: Crop and Resize, Processor Res: 64, "
        r"Threshold A: 100, Threshold B: 200, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: True, "
        r"Control Mode: Balanced", entry)
    assert "ignored unknown fields extra_field" in warnings


@pytest.mark.slow
def test_the_switching_benchmark_runs_on_the_demo_model(tmp_path):
    """bench.controlnet builds its ControlNets for the demo model's own VAE (4x, where SD's is 8x): with SD's it
    failed at the first generation with a size mismatch."""
    from bench.controlnet import switching

    result = switching(tmp_path, switches=10)
    assert 0 < result["cached_ms"] < result["disk_ms"] and result["rss"][10] > 0
