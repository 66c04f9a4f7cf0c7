"""The launched app through gradio_client: named endpoints, keyword arguments, metadata, errors, interrupt."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from models.infotext import parse_infotext, read_png_infotext


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    Image.new("RGB", (96, 64), "red").save(folder / "image.png")
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(folder / "mask.png")
    Image.new("L", (96, 64), 0).save(folder / "empty.png")
    Image.new("L", (48, 32), 255).save(folder / "small_mask.png")
    (folder / "broken.png").write_text("not a png")
    return folder


def test_endpoints_are_named_with_keyword_parameters(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/txt2img", "/img2img", "/inpaint", "/outpaint", "/interrupt", "/controlnet_detect"} <= set(endpoints)
    parameters = {p["parameter_name"]: p for p in endpoints["/inpaint"]["parameters"]}
    assert list(parameters) == ["prompt", "image", "mask", "negative_prompt", "seed", "steps", "guidance_scale",
                                "width", "height", "sampler", "batch_size", "strength", "styles", "mask_blur",
                                "invert_mask", "inpaint_area", "padding", "masked_content", "clip_skip", "vae",
                                "controlnet_units", "tiling", "subseed", "subseed_strength", "seed_resize_from_w",
                                "seed_resize_from_h", "soft_inpainting", "soft_schedule_bias",
                                "soft_preservation_strength", "soft_transition_contrast_boost", "soft_mask_influence",
                                "soft_difference_threshold", "soft_difference_contrast", "refiner_checkpoint",
                                "refiner_switch_at", "script_name", "script_args"]
    assert {"/upscale"} <= set(endpoints)
    outpaint = [p["parameter_name"] for p in endpoints["/outpaint"]["parameters"]]
    assert outpaint[:8] == ["prompt", "image", "left", "right", "up", "down", "overlap", "fill"]
    optional = {name for name, p in parameters.items() if p["parameter_has_default"]}
    assert optional == set(parameters) - {"prompt", "image", "mask"}
    assert parameters["width"]["parameter_default"] == 0  # the input image's own size
    txt2img = {p["parameter_name"]: p for p in endpoints["/txt2img"]["parameters"]}
    assert txt2img["width"]["parameter_default"] == 64  # the demo model's native size
    assert "detailer_units" in txt2img
    img2img = [p["parameter_name"] for p in endpoints["/img2img"]["parameters"]]
    assert {"detailer_units", "ad_skip_img2img"} <= set(img2img)


def check_result(result, prompt, asked: dict, mode_extra: dict | None = None):
    gallery, infotext, warnings = result
    assert len(gallery) == asked.get("batch_size", 1)
    for index, item in enumerate(gallery):
        stored = read_png_infotext(item["image"])  # the PNG file itself carries the infotext
        parsed_prompt, negative, parameters = parse_infotext(stored)
        assert parsed_prompt == prompt and negative == asked.get("negative_prompt", "")
        assert parameters["Seed"] == str(asked["seed"] + index)
        assert parameters["Steps"] == str(asked["steps"])
        assert parameters["Sampler"] == asked["sampler_written"]
        assert parameters["CFG scale"] == asked["cfg_written"]
        assert parameters["Size"] == f"{asked['width']}x{asked['height']}"
        assert parameters["Model"] == "sd-shapes-inpainting"
        for key, value in (mode_extra or {}).items():
            assert parameters[key] == value
        assert Image.open(item["image"]).size == (asked["width"], asked["height"])
    assert infotext == read_png_infotext(gallery[0]["image"])
    return warnings


def test_txt2img(client):
    asked = dict(seed=11, steps=3, width=64, height=72, batch_size=2, negative_prompt="blurry",
                 sampler_written="DPM++ 2M", cfg_written="5.5")
    result = client.predict(
        prompt="a red circle", negative_prompt="blurry", seed=11, steps=3, guidance_scale=5.5, width=64, height=72,
        sampler="DPM++ 2M Karras", batch_size=2, api_name="/txt2img",
    )
    check_result(result, "a red circle", asked, {"Schedule type": "Karras"})
    assert "Denoising strength" not in parse_infotext(result[1])[2]


def test_img2img(client, files):
    result = client.predict(
        prompt="a blue square", image=handle_file(files / "image.png"), seed=5, steps=4, width=96, height=64,
        strength=0.5, api_name="/img2img",
    )
    asked = dict(seed=5, steps=4, width=96, height=64, sampler_written="Euler a", cfg_written="7")
    check_result(result, "a blue square", asked, {"Denoising strength": "0.5"})


def test_img2img_and_inpaint_default_to_the_input_image_size_rounded_to_8(client, tmp_path):
    Image.new("RGB", (100, 60), "navy").save(tmp_path / "odd.png")  # 100 -> 104, 60 -> 64
    Image.new("RGB", (128, 128), "navy").save(tmp_path / "square.png")
    Image.new("L", (128, 128), 255).save(tmp_path / "mask.png")
    for api_name, image in (("/img2img", "odd.png"), ("/inpaint", "square.png")):
        mask = {"mask": handle_file(tmp_path / "mask.png")} if api_name == "/inpaint" else {}
        gallery, infotext, _ = client.predict(prompt="a red circle", image=handle_file(tmp_path / image), steps=2,
                                              api_name=api_name, **mask)
        expected = {"odd.png": (104, 64), "square.png": (128, 128)}[image]
        assert Image.open(gallery[0]["image"]).size == expected, api_name
        assert parse_infotext(infotext)[2]["Size"] == "{}x{}".format(*expected)


def test_inpaint_with_plain_image_and_mask_files(client, files):
    result = client.predict(
        prompt="green", image=handle_file(files / "image.png"), mask=handle_file(files / "mask.png"), seed=3,
        steps=4, width=96, height=64, sampler="DDIM", api_name="/inpaint",
    )
    asked = dict(seed=3, steps=4, width=96, height=64, sampler_written="DDIM", cfg_written="7")
    assert check_result(result, "green", asked, {"Denoising strength": "0.75"}) == ""


def test_inpaint_options_and_outpaint(client, files):
    gallery, infotext, _ = client.predict(
        prompt="green", image=handle_file(files / "image.png"), mask=handle_file(files / "mask.png"), seed=3,
        steps=4, width=64, height=64, inpaint_area="Only masked", padding=8, mask_blur=2, api_name="/inpaint",
    )
    parameters = parse_infotext(infotext)[2]
    assert (parameters["Inpaint area"], parameters["Masked area padding"], parameters["Mask blur"]) == (
        "Only masked", "8", "2")
    assert Image.open(gallery[0]["image"]).size == (96, 64), "the result has the input's size"
    gallery, infotext, _ = client.predict(
        prompt="a wall", image=handle_file(files / "image.png"), right=40, up=16, steps=3, seed=2,
        api_name="/outpaint",
    )
    assert Image.open(gallery[0]["image"]).size == (96 + 40, 64 + 16)
    parameters = parse_infotext(infotext)[2]
    assert parameters["Result size"] == "136x80", "the result's size, beside the generation's Size"
    assert parameters["Outpaint extents"] == "left 0, right 40, up 16, down 0"
    with pytest.raises(Exception, match="inpaint_area must be one of Whole picture, Only masked, got 'All'"):
        client.predict(prompt="x", image=handle_file(files / "image.png"), mask=handle_file(files / "mask.png"),
                       inpaint_area="All", api_name="/inpaint")
    with pytest.raises(Exception, match="left must be a whole number from 0 to 1024, got -8"):
        client.predict(prompt="x", image=handle_file(files / "image.png"), left=-8, api_name="/outpaint")


def test_defaults_come_from_the_ui(client):
    gallery, infotext, _ = client.predict(prompt="defaults", api_name="/txt2img")
    parameters = parse_infotext(infotext)[2]
    assert (parameters["Steps"], parameters["Sampler"], parameters["CFG scale"], parameters["Size"]) == (
        "20", "Euler a", "7", "64x64")
    assert 0 <= int(parameters["Seed"]) < 2**32  # -1 picked a random seed and recorded it


BAD_TXT2IMG = [
    ({"width": 100}, "width must be a multiple of 8 from 64 to 2048, got 100"),
    ({"height": 4096}, "height must be a multiple of 8 from 64 to 2048, got 4096"),
    ({"steps": 0}, "steps must be from 1 to 150, got 0"),
    ({"steps": 151}, "steps must be from 1 to 150, got 151"),
    ({"guidance_scale": 0}, "guidance_scale must be from 1.0 to 30.0, got 0"),
    ({"guidance_scale": 99}, "guidance_scale must be from 1.0 to 30.0, got 99"),
    ({"batch_size": 9}, "batch_size must be from 1 to 8, got 9"),
    ({"sampler": "Euler z"}, "sampler 'Euler z' is unknown"),
    ({"seed": 1.5}, "seed must be a whole number, got 1.5"),
]


@pytest.mark.parametrize("changes, message", BAD_TXT2IMG)
def test_bad_txt2img_inputs_get_a_clear_error_and_the_next_request_works(client, changes, message):
    with pytest.raises(Exception, match=message):
        client.predict(prompt="x", **{"steps": 2, "width": 64, "height": 64, **changes}, api_name="/txt2img")
    gallery, _, _ = client.predict(prompt="x", steps=1, width=64, height=64, api_name="/txt2img")
    assert len(gallery) == 1


@pytest.mark.parametrize(
    "endpoint, changes, message",
    [
        ("/img2img", {"strength": 0}, r"strength must be in \(0, 1\], got 0"),
        ("/img2img", {"strength": 1.2}, r"strength must be in \(0, 1\], got 1.2"),
        ("/img2img", {"image": None}, "image is required for img2img"),
        # named by the field, without the server's path of the uploaded file (the message used to show it)
        ("/img2img", {"image": "broken.png"}, r"^image is not a readable image \(UnidentifiedImageError"),
        ("/img2img", {"steps": 1, "strength": 0.5}, "steps × strength must give at least one denoising step"),
        ("/inpaint", {"mask": "empty.png"}, "mask is empty"),
        ("/inpaint", {"mask": None}, "mask is required for inpaint"),
    ],
)
def test_bad_image_inputs_get_a_clear_error(client, files, endpoint, changes, message):
    arguments = {"image": handle_file(files / "image.png"), "steps": 2, "width": 64, "height": 64}
    if endpoint == "/inpaint":
        arguments["mask"] = handle_file(files / "mask.png")
    for key, value in changes.items():
        arguments[key] = handle_file(files / value) if isinstance(value, str) else value
    with pytest.raises(Exception, match=message):
        client.predict(prompt="x", **arguments, api_name=endpoint)
    gallery, _, _ = client.predict(prompt="x", steps=1, width=64, height=64, api_name="/txt2img")
    assert len(gallery) == 1


def test_mask_of_another_size_is_resized_and_said_so(client, files):
    _, _, warnings = client.predict(
        prompt="x", image=handle_file(files / "image.png"), mask=handle_file(files / "small_mask.png"), steps=2,
        width=64, height=64, api_name="/inpaint",
    )
    assert warnings == "mask was 48x32, resized to the image's 96x64"


def test_a_long_prompt_is_not_cut_off(client, tmp_path):
    """Past 75 tokens the prompt goes on in a second chunk: no warning, and a word there changes the
    image."""
    def pixels(prompt: str) -> np.ndarray:
        gallery, infotext, warnings = client.predict(prompt=prompt, seed=3, steps=2, width=64, height=64,
                                                     api_name="/txt2img")
        assert warnings == "" and infotext.startswith(prompt + "\n")
        return np.asarray(Image.open(gallery[0]["image"]).convert("RGB")).astype(int)

    base = "a red circle, " * 20  # 80 tokens
    assert np.abs(pixels(base + "on a green background") - pixels(base + "on a blue background")).max() > 0


def test_progress_is_reported_and_interrupt_returns_the_image_early(client):
    job = client.submit(prompt="slow", steps=150, width=256, height=256, seed=1, api_name="/txt2img")
    progress = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = job.status()
        if status.progress_data and status.progress_data[0].index:
            progress = status.progress_data[0]
            break
        time.sleep(0.05)
    assert progress is not None and progress.length == 150 and progress.unit == "steps"
    started = time.monotonic()
    client.predict(api_name="/interrupt")
    gallery, infotext, warnings = job.result(timeout=60)
    assert time.monotonic() - started < 10  # one 256 px step of the demo model is well under a second
    assert "interrupted" in warnings and len(gallery) == 1
    assert Image.open(gallery[0]["image"]).size == (256, 256)
    done = int(re.search(r"Interrupted: at step (\d+) of 150(,|$)", infotext)[1])  # where it stopped, in its own entry
    assert 0 < done < 150 and "Steps: 150," in infotext  # the schedule's length, which reproduces it


def test_lora_tags_in_the_prompt_reach_every_endpoint(client, files):
    _, infotext, _ = client.predict(prompt="a cat <lora:ink:0.8>", steps=2, width=64, height=64, api_name="/txt2img")
    assert infotext.startswith("a cat <lora:ink:0.8>\n") and 'Lora hashes: "ink: ' in infotext
    _, infotext, _ = client.predict(
        prompt="<lora:ink> a door", image=handle_file(files / "image.png"), mask=handle_file(files / "mask.png"),
        steps=2, width=64, height=64, api_name="/inpaint",
    )
    assert 'Lora hashes: "ink: ' in infotext
    with pytest.raises(Exception, match="LoRA 'nope' is not in the LoRA folder"):
        client.predict(prompt="a cat <lora:nope:1>", steps=2, width=64, height=64, api_name="/txt2img")
    gallery, _, _ = client.predict(prompt="a cat", steps=1, width=64, height=64, api_name="/txt2img")
    assert len(gallery) == 1
