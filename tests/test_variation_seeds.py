"""Variation seeds as A1111 has them: the noise turned from the seed's to the variation seed's (strength 1 is the
variation seed's own image), image i of a batch with subseed + i, seed resize from keeping the seed's noise in the
middle, hires fix's second pass with the same variation, the infotext written and read back, REST's A1111 fields."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from extensions.seeds import Seeds
from extensions.upscale import Upscale
from models.infotext import parse_infotext
from models.manager import PipelineManager
from models.noise import ORIGINAL_RANDN, Variation, VariedGenerator, again, centred_in, slerp, varied_randn
from service.pnginfo import fields_from_infotext
from service.studio import StudioService

FIELDS = dict(prompt="a red circle", seed=11, steps=3, width=64, height=64, sampler="Euler")


@pytest.fixture(scope="module")
def service(txt2img_folder, tmp_path_factory):
    """A 4-channel model: its txt2img draws no noise but the initial noise and the sampler's (the demo's 9-channel
    U-Net also samples its blank picture's latents from the seed, as A1111's inpainting models do)."""
    folder = tmp_path_factory.mktemp("seeds")
    return StudioService(PipelineManager.load(str(txt2img_folder), device="cpu"), folder / "outputs",
                         [Seeds(), Upscale(folder / "upscale_models")])


def generate(service, **fields):
    generation = service.generate(*service.build("txt2img", {**FIELDS, **fields}))
    return [np.asarray(Image.open(path), dtype=np.int16) for path in generation.files], generation.infotexts


def test_slerp_runs_from_one_noise_to_the_other_keeping_its_scale():
    low, high = torch.randn(2, 4, 32, 32), torch.randn(2, 4, 32, 32)
    assert torch.allclose(slerp(0.0, low, high), low, atol=1e-5)
    assert torch.allclose(slerp(1.0, low, high), high, atol=1e-5)
    halfway = slerp(0.5, low, high)
    assert 0.9 < halfway.std().item() < 1.1, "a straight line's middle would have a std of about 0.71"
    assert torch.allclose(slerp(0.3, low, low), low, atol=1e-5), "parallel noises: no division by about 0"


def test_centred_in_pastes_the_middle_either_way():
    target, small = torch.zeros(1, 1, 6, 8), torch.ones(1, 1, 2, 4)
    pasted = centred_in(target, small)
    assert pasted.sum() == 8 and pasted[0, 0, 2:4, 2:6].eq(1).all()
    large = torch.arange(100.0).view(1, 1, 10, 10)
    assert torch.equal(centred_in(torch.zeros(1, 1, 4, 4), large), large[..., 3:7, 3:7])


def test_a_varied_generator_draws_the_seed_the_subseed_or_between_and_then_as_its_seed():
    shape = (1, 4, 8, 8)

    def plain(seed):
        generator = torch.Generator("cpu").manual_seed(seed)
        return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)

    seed_first, seed_second = plain(3)
    subseed_first, _ = plain(9)
    for strength, expected in ((0.0, seed_first), (1.0, subseed_first)):
        generator = VariedGenerator(3, Variation(9, strength))
        assert torch.allclose(varied_randn(shape, generator=[generator]), expected, atol=1e-5)
        assert torch.equal(torch.randn(shape, generator=generator), seed_second), \
            "later draws (ancestral noise) come from the seed, as in A1111"
    between = varied_randn(shape, generator=[VariedGenerator(3, Variation(9, 0.5))])
    assert not torch.allclose(between, seed_first, atol=0.1) and not torch.allclose(between, subseed_first, atol=0.1)


def test_plain_generators_draw_as_diffusers_does():
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in (1, 2)]
    expected = ORIGINAL_RANDN((2, 4, 8, 8), generator=[torch.Generator("cpu").manual_seed(seed) for seed in (1, 2)])
    assert torch.equal(varied_randn((2, 4, 8, 8), generator=generators), expected)


def test_seed_resize_from_keeps_the_seeds_noise_in_the_middle():
    from_noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(3))
    wide = VariedGenerator(3, Variation(0, 0.0, resize_from=(8, 8))).initial_noise((1, 4, 8, 16), None)
    assert torch.equal(wide[..., 4:12], from_noise), "the noise found at 8x8 sits in the middle of 8x16"
    assert not torch.equal(wide[..., :4], from_noise[..., :4])
    narrow = VariedGenerator(3, Variation(0, 0.0, resize_from=(8, 8))).initial_noise((1, 4, 8, 4), None)
    assert torch.equal(narrow, from_noise[..., 2:6])
    renewed = again(VariedGenerator(3, Variation(5, 0.25, (8, 8))))
    assert (renewed.initial_seed(), renewed.variation) == (3, Variation(5, 0.25, (8, 8)))


@pytest.mark.slow
def test_strength_one_is_the_variation_seeds_own_image_and_batches_count_up(service):
    [own], _ = generate(service, seed=42)
    [varied], [infotext] = generate(service, seed=11, subseed=42, subseed_strength=1.0)
    assert np.abs(varied - own).max() <= 1
    assert "Seed: 11," in infotext and "Variation seed: 42, Variation seed strength: 1" in infotext
    [off], [plain] = generate(service)
    [half], _ = generate(service, subseed=42, subseed_strength=0.5)
    assert np.abs(half - off).mean() > 1 and np.abs(half - own).mean() > 1
    assert "Variation" not in plain, "strength 0 is off, and not written"
    [_, second], infotexts = generate(service, subseed=42, subseed_strength=1.0, batch_size=2)
    [own_second], _ = generate(service, seed=43)
    assert np.abs(second - own_second).max() <= 1, "image 2 of a batch: seed + 1 turned to subseed + 1"
    assert ["Variation seed: 42," in infotexts[0], "Variation seed: 43," in infotexts[1]] == [True, True]


@pytest.mark.slow
def test_a_random_variation_seed_is_written_and_reproduces_the_image(service):
    [first], [infotext] = generate(service, subseed=-1, subseed_strength=0.4)
    fields = fields_from_infotext(infotext, service.extensions)
    assert fields["subseed"] != -1 and fields["subseed_strength"] == 0.4
    [again_image], _ = generate(service, subseed=fields["subseed"], subseed_strength=0.4)
    assert np.array_equal(first, again_image)


@pytest.mark.slow
def test_seed_resize_from_its_own_size_is_the_plain_image_and_is_written(service):
    [plain], _ = generate(service)
    [resized], [infotext] = generate(service, seed_resize_from_w=64, seed_resize_from_h=64)
    assert np.array_equal(plain, resized)
    assert "Seed resize from: 64x64" in infotext
    [wider], _ = generate(service, width=128, seed_resize_from_w=64, seed_resize_from_h=64)
    [wider_plain], _ = generate(service, width=128)
    assert not np.array_equal(wider, wider_plain)
    fields = fields_from_infotext(infotext, service.extensions)
    assert (fields["seed_resize_from_w"], fields["seed_resize_from_h"]) == (64, 64)


@pytest.mark.slow
def test_hires_fixs_second_pass_keeps_the_variation(service):
    hires = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2)
    [varied], [infotext] = generate(service, seed=11, subseed=42, subseed_strength=1.0, **hires)
    [own], _ = generate(service, seed=42, **hires)
    assert varied.shape == (128, 128, 3) and np.abs(varied - own).max() <= 1
    assert "Variation seed: 42" in infotext and "Hires upscale: 2" in infotext


@pytest.mark.parametrize("fields, message", [
    (dict(subseed_strength=1.5), "subseed_strength must be from 0 to 1, got 1.5"),
    (dict(subseed=-2), "subseed must be -1 (random) or from 0 to 4294967295, got -2"),
    (dict(seed_resize_from_w=20, seed_resize_from_h=64), "seed_resize_from_w must be 0 or -1 (off) or from 64"),
])
def test_bad_variation_values_are_named(service, fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        service.build("txt2img", {**FIELDS, **fields})


@pytest.mark.server
def test_rest_takes_a1111s_variation_fields(app_server):
    body = dict(prompt="a red circle", seed=11, steps=2, width=64, height=64, subseed=42, subseed_strength=1.0,
                seed_resize_from_w=-1, seed_resize_from_h=-1, sampler_name="Euler")
    answer = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    _, _, parameters = parse_infotext(_infotext(answer.json()))
    assert (parameters["Variation seed"], parameters["Variation seed strength"]) == ("42", "1")
    assert json.loads(answer.json()["info"])["all_subseeds"] == [42]
    plain = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json={**body, "subseed_strength": 0}, timeout=120)
    assert "Variation" not in _infotext(plain.json())
    assert np.abs(_picture(answer.json()) - _picture(plain.json())).mean() > 1


def _infotext(answer: dict) -> str:
    return json.loads(answer["info"])["infotexts"][0]


def _picture(answer: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))), dtype=np.int16)
