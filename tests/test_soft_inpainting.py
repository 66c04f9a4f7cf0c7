"""Soft inpainting: its arithmetic, kept pixels exact under it (whole picture and only masked, batched), grey mask
values as partial strength, A1111's REST args and infotext, and bad input named."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import requests
import torch
from PIL import Image, ImageDraw, ImageFilter

from extensions.inpaint import Inpaint
from extensions.soft_inpainting import SoftInpaint
from extensions.soft_inpainting.blend import blend, composite, composite_weights, step_mask
from extensions.soft_inpainting.fields import SoftSettings
from models.images import png_base64
from models.request import GenerationRequest
from models.sampler_names import BATCH_TOLERANCE
from service.pnginfo import fields_from_infotext
from service.studio import Composed, StudioService

SIZE = 128


@pytest.fixture(scope="module")
def service(demo_manager, tmp_path_factory):
    return StudioService(demo_manager, tmp_path_factory.mktemp("outputs"), [Inpaint(), SoftInpaint()])


@pytest.fixture(scope="module")
def picture(demo_manager) -> Image.Image:
    """A picture the demo model made (its VAE reproduces it closely, unlike noise)."""
    request = GenerationRequest("txt2img", "a blue square on a yellow background", width=SIZE, height=SIZE, steps=8,
                                seed=3)
    return demo_manager.generate(request).images[0]


def bands(levels: tuple[int, ...], size: tuple[int, int] = (SIZE, SIZE)) -> Image.Image:
    """A mask of vertical bands, one per grey level, over the middle rows."""
    mask = Image.new("L", size, 0)
    width = size[0] // len(levels)
    for index, level in enumerate(levels):
        ImageDraw.Draw(mask).rectangle([index * width, size[1] // 4, (index + 1) * width - 1, 3 * size[1] // 4],
                                       fill=level)
    return mask


def soft(service, image, mask, **fields) -> tuple[np.ndarray, str]:
    settings = dict(prompt="a red circle", steps=6, seed=7, width=SIZE, height=SIZE, strength=1.0, mask_blur=0,
                    soft_inpainting=True)
    generation = service.run("inpaint", dict(image=image, mask=mask, **{**settings, **fields}))
    return np.asarray(Image.open(generation.files[0]).convert("RGB")).astype(int), generation.infotexts[0]


# -- the arithmetic ----------------------------------------------------------------------------------------------

def test_the_step_mask_keeps_the_unmasked_and_releases_partly_masked_areas_as_the_noise_falls():
    mask = torch.tensor([0.0, 0.25, 0.5, 1.0])
    settings = SoftSettings()
    early, late = step_mask(mask, 14.6, settings), step_mask(mask, 0.3, settings)
    assert early[0] == late[0] == 0 and early[3] == late[3] == 1
    assert early[1] < early[2] < 0.01, "held to the original while the noise is high"
    assert 0.5 < late[1] < late[2] < 1, "let go when it is low"
    assert step_mask(mask, 0.3, SoftSettings(preservation_strength=4))[2] < late[2], "preservation holds longer"


def test_the_blend_keeps_the_magnitude_and_the_composite_keeps_unmasked_pixels_exactly():
    generator = torch.Generator().manual_seed(0)
    original, generated = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 4, 8, 8, generator=generator)
    half = blend(original, generated, torch.full((1, 1, 8, 8), 0.5), contrast=4)
    plain = (original + generated) / 2
    assert (half.norm(dim=1) > plain.norm(dim=1)).float().mean() > 0.9, "contrast kept where a mean loses it"
    assert torch.allclose(blend(original, generated, torch.zeros(1, 1, 8, 8), 4), original, atol=1e-5)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 0.6
    weights = composite_weights(original, generated, mask, SoftSettings(difference_threshold=0.1))
    assert weights[mask == 0].max() == 0 and weights[mask > 0].min() > 0.5
    pixels = torch.randint(0, 256, (1, 3, 32, 32)).float()
    pixel_mask = torch.nn.functional.interpolate(mask, size=(32, 32))
    mixed = composite(pixels, 255 - pixels, weights, pixel_mask)
    assert torch.equal(mixed[pixel_mask.expand_as(pixels) == 0], pixels[pixel_mask.expand_as(pixels) == 0])


# -- on the demo model ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("area", ["Whole picture", "Only masked"])
def test_pixels_where_the_mask_is_zero_are_the_input_exactly(service, picture, area):
    image = picture.resize((333, 217))
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse([90, 60, 220, 170], fill=200)
    result, infotext = soft(service, image, mask, mask_blur=8, inpaint_area=area, padding=16, width=128, height=96)
    outside = np.asarray(mask.filter(ImageFilter.GaussianBlur(8))) == 0
    assert np.array_equal(result[outside], np.asarray(image)[outside])
    assert np.abs(result[np.asarray(mask) > 0] - np.asarray(image)[np.asarray(mask) > 0]).mean() > 5
    assert "Soft inpainting enabled: True, Soft inpainting schedule bias: 1" in infotext


def test_grey_mask_values_are_partial_strength(service, picture):
    """With the mask's influence on the threshold and a strong preservation (the tiny demo model changes whatever
    it is let go on), the more a band is masked the more it changes; the unmasked band not at all."""
    levels = (0, 64, 128, 255)
    mask = bands(levels)
    change = {level: 0.0 for level in levels}
    for seed in (7, 8):
        result, _ = soft(service, picture, mask, seed=seed, soft_mask_influence=1.0, soft_preservation_strength=4.0)
        for level in levels:
            change[level] += np.abs(result - np.asarray(picture))[np.asarray(mask) == level].mean() / 2
    assert change[0] == 0
    assert 0 < change[64] < change[128] / 2 < change[255] / 2, change


@pytest.mark.slow
def test_on_a_four_channel_model_the_pipelines_own_hard_blend_is_left_to_it(txt2img_manager, picture, tmp_path,
                                                                             monkeypatch):
    """The 4-channel pipeline blends by the mask rounded at 0.5 itself, which would hold a band masked at 0.25 to
    the original; under soft inpainting the band's latents are let go late in the denoising, so the final composite
    takes much of the generated picture there (its weights, recorded as they are computed)."""
    import extensions.soft_inpainting.pipeline as pipeline

    recorded = []

    def recording(original, generated, mask, settings):
        recorded.append((composite_weights(original, generated, mask, settings), mask))
        return recorded[-1][0]

    monkeypatch.setattr(pipeline, "composite_weights", recording)
    service = StudioService(txt2img_manager, tmp_path, [Inpaint(), SoftInpaint()])
    mask = bands((0, 64, 255))
    result, _ = soft(service, picture, mask, strength=0.8)
    assert np.array_equal(result[np.asarray(mask) == 0], np.asarray(picture).astype(int)[np.asarray(mask) == 0])
    [(weights, latent_mask)] = recorded
    band = (latent_mask - 0.25).abs() < 0.01
    assert weights[band].mean() > 0.5, "the quarter-masked band was let go, not rounded away"
    assert weights[latent_mask == 0].max() == 0


def test_batched_soft_inpainting_gives_each_request_its_solo_result(service, picture):
    masks = [bands((0, 128, 255)), bands((255, 0, 64))]
    built = [service.build("inpaint", dict(prompt="a red circle", image=picture, mask=mask, seed=5 + index, steps=4,
                                           width=SIZE, height=SIZE, strength=1.0, mask_blur=4,
                                           soft_inpainting=True))
             for index, mask in enumerate(masks)]
    together = service.compose_together(built)
    for (request, warnings), joint, mask in zip(built, together, masks):
        assert isinstance(joint, Composed), joint
        [solo] = service.compose_together([(request, warnings)])
        joint_pixels, solo_pixels = (np.asarray(outcome.images[0]).astype(int) for outcome in (joint, solo))
        assert np.abs(joint_pixels - solo_pixels).max() <= BATCH_TOLERANCE
        outside = np.asarray(mask.filter(ImageFilter.GaussianBlur(4))) == 0
        assert np.array_equal(joint_pixels[outside], np.asarray(picture).astype(int)[outside])


def test_the_infotext_reads_back_into_the_fields(service, picture):
    sent = dict(soft_schedule_bias=1.5, soft_preservation_strength=0.75, soft_transition_contrast_boost=8.0,
                soft_mask_influence=0.25, soft_difference_threshold=1.0, soft_difference_contrast=3.0)
    _, infotext = soft(service, picture, bands((255,)), steps=2, **sent)
    read = fields_from_infotext(infotext, service.extensions)
    assert not read["warnings"] and read["soft_inpainting"] is True
    assert {name: read[name] for name in sent} == sent


@pytest.mark.parametrize(("fields", "message"), [
    ({"soft_inpainting": "yes"}, "soft_inpainting must be true or false, got 'yes'"),
    ({"soft_preservation_strength": 0}, "soft_preservation_strength must be"),
    ({"soft_transition_contrast_boost": 40}, "soft_transition_contrast_boost must be"),
])
def test_bad_settings_are_named(service, picture, fields, message):
    with pytest.raises(ValueError, match=message):
        soft(service, picture, bands((255,)), **fields)


# -- REST, as A1111's clients send it ------------------------------------------------------------------------------


def test_rest_alwayson_scripts_soft_inpainting_with_lora_and_controlnet(app_server):
    """A1111's positional args, beside a LoRA in the prompt and a ControlNet unit on the same job."""
    url, _ = app_server
    picture = Image.new("RGB", (96, 64), "yellow")
    ImageDraw.Draw(picture).rectangle([10, 10, 40, 40], fill="blue")
    mask = Image.new("L", picture.size, 0)
    ImageDraw.Draw(mask).rectangle([30, 16, 80, 48], fill=160)
    body = {"prompt": "a red circle <lora:ink:0.8>", "init_images": [png_base64(picture)], "mask": png_base64(mask),
            "seed": 3, "steps": 3, "width": 96, "height": 64, "denoising_strength": 0.9, "mask_blur": 4,
            "alwayson_scripts": {
                "soft inpainting": {"args": [True, 1.2, 0.8, 4, 0.5, 0.6, 2]},
                "controlnet": {"args": [{"image": png_base64(picture), "module": "canny", "model": "edges"}]}}}
    answer = requests.post(f"{url}/sdapi/v1/img2img", json=body, timeout=300)
    assert answer.status_code == 200, answer.text
    infotext = json.loads(answer.json()["info"])["infotexts"][0]
    for entry in ("Soft inpainting enabled: True", "Soft inpainting schedule bias: 1.2",
                  "Soft inpainting preservation strength: 0.8", "Soft inpainting mask influence: 0.5",
                  "Lora hashes:", 'ControlNet 0: "Module: canny, Model: edges'):
        assert entry in infotext, (entry, infotext)
    result = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))).convert("RGB"))
    outside = np.asarray(mask.filter(ImageFilter.GaussianBlur(4))) == 0
    assert np.array_equal(result[outside], np.asarray(picture)[outside])


@pytest.mark.parametrize(("args", "named"), [
    ("on", 'alwayson_scripts["soft inpainting"].args must be a list'),
    ([True, 1, 0.5, 4, 0, 0.5, 2, 9], 'alwayson_scripts["soft inpainting"].args must be a list of at most 7'),
    ([True, 9.5], 'alwayson_scripts["soft inpainting"].args[1] must be from 0.0 to 8.0, got 9.5'),
    (["yes"], 'alwayson_scripts["soft inpainting"].args[0] must be true or false'),
])
def test_bad_rest_args_are_a_422_naming_them(app_server, args, named):
    url, _ = app_server
    body = {"prompt": "x", "init_images": [png_base64(Image.new("RGB", (64, 64)))],
            "mask": png_base64(Image.new("L", (64, 64), 255)), "steps": 2,
            "alwayson_scripts": {"Soft Inpainting": {"args": args}}}
    answer = requests.post(f"{url}/sdapi/v1/img2img", json=body, timeout=60)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"], answer.json()["detail"]


def test_listed_as_an_img2img_always_on_script_with_its_arguments(app_server):
    url, _ = app_server
    listed = requests.get(f"{url}/sdapi/v1/scripts", timeout=30).json()
    assert "soft inpainting" in listed["img2img"] and "soft inpainting" not in listed["txt2img"]
    assert "controlnet" in listed["txt2img"] and "controlnet" in listed["img2img"]
    info = requests.get(f"{url}/sdapi/v1/script-info", timeout=30).json()
    [script] = [script for script in info if script["name"] == "soft inpainting"]
    assert script["is_alwayson"] and script["is_img2img"]
    assert [(argument["label"], argument["value"]) for argument in script["args"]] == [
        ("Soft inpainting", False), ("Schedule bias", 1.0), ("Preservation strength", 0.5),
        ("Transition contrast boost", 4.0), ("Mask influence", 0.0), ("Difference threshold", 0.5),
        ("Difference contrast", 2.0)]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sdxl", "sdxl-inpainting"])
def test_on_sdxl_too(family_folder, family, tmp_path):
    from models.manager import PipelineManager

    service = StudioService(PipelineManager.load(str(family_folder(family)), device="cpu"), tmp_path,
                            [Inpaint(), SoftInpaint()])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    mask = bands((0, 128, 255), size=(80, 64))
    generation = service.run("inpaint", dict(image=image, mask=mask, prompt="a red circle", steps=3, seed=7,
                                             width=80, height=64, strength=1.0, mask_blur=2, soft_inpainting=True))
    result = np.asarray(Image.open(generation.files[0]).convert("RGB"))
    outside = np.asarray(mask.filter(ImageFilter.GaussianBlur(2))) == 0
    assert np.array_equal(result[outside], np.asarray(image)[outside])
    assert "Soft inpainting enabled: True" in generation.infotexts[0]
