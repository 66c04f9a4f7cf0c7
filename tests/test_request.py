"""Validation at the edge: every bad value is refused with a message naming the field and the value."""

from __future__ import annotations

import pytest
from PIL import Image

from models.request import GenerationRequest

IMAGE = Image.new("RGB", (64, 64))
MASK = Image.new("L", (64, 64), 255)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"width": 100}, "width must be a multiple of 8 from 64 to 2048, got 100"),
        ({"height": 2056}, "height must be a multiple of 8 from 64 to 2048, got 2056"),
        ({"width": 56}, "width .* got 56"),
        ({"steps": 0}, "steps must be from 1 to 150, got 0"),
        ({"steps": 151}, "steps must be from 1 to 150, got 151"),
        ({"steps": 2.5}, "steps must be a whole number, got 2.5"),
        ({"guidance_scale": 0.5}, "guidance_scale must be from 1.0 to 30.0, got 0.5"),
        ({"guidance_scale": 31}, "guidance_scale must be from 1.0 to 30.0, got 31"),
        ({"batch_size": 0}, "batch_size must be from 1 to 8, got 0"),
        ({"batch_size": 9}, "batch_size must be from 1 to 8, got 9"),
        ({"seed": -2}, "seed must be -1 .* got -2"),
        ({"seed": 2**32}, "seed must be -1 .* got 4294967296"),
        ({"sampler": "Euler b"}, "sampler 'Euler b' is unknown"),
        ({"mode": "img2txt"}, "mode must be one of .* got 'img2txt'"),
        ({"prompt": None}, "prompt must be text, got None"),
        ({"mode": "img2img", "strength": 0.0}, r"strength must be in \(0, 1\], got 0.0"),
        ({"mode": "img2img", "strength": 1.5}, r"strength must be in \(0, 1\], got 1.5"),
        ({"mode": "img2img", "steps": 3, "strength": 0.3},
         "steps × strength must give at least one denoising step, got steps 3 × strength 0.3 = 0.9"),
        ({"mode": "img2img", "image": None}, "image is required for img2img"),
        ({"mode": "inpaint", "mask": None}, "mask is required for inpaint"),
        ({"mode": "inpaint", "mask": Image.new("L", (64, 64), 0)}, "mask is empty"),
        ({"mode": "inpaint", "mask": Image.new("L", (32, 32), 255)}, r"mask size \(32, 32\) differs"),
    ],
)
def test_bad_values_are_named(changes, message):
    fields = {"mode": "txt2img", "prompt": "x", "width": 64, "height": 64, "image": IMAGE, "mask": MASK, **changes}
    with pytest.raises(ValueError, match=message):
        GenerationRequest(**fields)


def test_good_values_pass_unchanged():
    request = GenerationRequest("inpaint", "x", width=2048, height=64, steps=150, guidance_scale=30, seed=2**32 - 1,
                                batch_size=8, strength=1.0, image=IMAGE, mask=MASK)
    assert (request.width, request.steps, request.seed) == (2048, 150, 2**32 - 1)


def test_an_input_image_asks_for_its_own_size_in_multiples_of_8_within_the_range():
    from models.request import size_of_image

    assert size_of_image(Image.new("RGB", (100, 60))) == (104, 64)
    assert size_of_image(Image.new("RGB", (4000, 3000))) == (2048, 1536)  # scaled to fit, the aspect kept
    assert size_of_image(Image.new("RGB", (10, 300))) == (64, 304)
