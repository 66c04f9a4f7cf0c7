"""Inpaint geometry (extensions.inpaint): plan sizes, crop boxes, pixel-exact paste-back, masks, fill, outpainting and
validation. Pure PIL/numpy, no model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from extensions.inpaint import (
    INPAINT_AREAS,
    MASKED_CONTENT,
    InpaintOptions,
    InpaintPlan,
    prepare_mask,
)
from extensions.inpaint.plan import round8
from extensions.outpaint import extend_canvas


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth gradient with some noise: every pixel differs from uniform noise pasted over it."""
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    base = np.stack([x * 200, y * 200, (x + y) * 100], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 8, base.shape)
    return Image.fromarray(np.clip(base + noise + 20, 0, 255).astype(np.uint8))


def ellipse_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    return mask


def noise(size: tuple[int, int], seed: int = 1) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def assert_paste_keeps_outside(plan: InpaintPlan, image: Image.Image, hard: Image.Image) -> None:
    result = plan.paste(noise(plan.size))
    assert result.mode == "RGB" and result.size == image.size
    out, orig = np.asarray(result), np.asarray(image.convert("RGB"))
    keep = np.asarray(plan.soft_mask) == 0
    assert keep.any()
    assert np.array_equal(out[keep], orig[keep])
    # Inside the mask, where the blend is mostly the generated image, the pixels changed.
    repainted = (np.asarray(hard) == 255) & (np.asarray(plan.soft_mask) >= 192)
    assert repainted.any()
    assert np.any(out[repainted] != orig[repainted], axis=-1).mean() > 0.9


CASES = [
    # (image size, mask ellipse box, width, height)
    ((1000, 750), (400, 300, 560, 420), 512, 512),
    ((333, 217), (20, 150, 90, 210), 512, 768),
    ((64, 64), (10, 10, 30, 40), 512, 512),
    ((1000, 750), (0, 0, 999, 749), 768, 512),
]


@pytest.mark.parametrize("area", INPAINT_AREAS)
@pytest.mark.parametrize("size, ellipse, width, height", CASES)
def test_plan_sizes_and_pixel_exact_paste(area, size, ellipse, width, height):
    image, mask = picture(*size), ellipse_mask(size, ellipse)
    options = InpaintOptions(inpaint_area=area)
    plan = InpaintPlan.make(image, mask, options, width, height)
    assert plan.image.size == plan.mask.size == plan.size
    assert plan.image.mode == "RGB" and plan.mask.mode == "L"
    assert plan.size[0] % 8 == 0 and plan.size[1] % 8 == 0
    assert plan.original.size == plan.soft_mask.size == size
    if area == "Only masked":
        assert plan.size == (width, height)
    else:
        assert plan.box == (0, 0, *size)
        gen_w, gen_h = plan.size
        assert gen_w <= width and gen_h <= height
        assert gen_w == width or gen_h == height  # scaled to fit: one side touches the limit
        # The aspect is kept: each side is the scaled side rounded to a multiple of 8, off by at most 4 px.
        scale = min(width / size[0], height / size[1])
        assert abs(gen_w - size[0] * scale) <= 4 and abs(gen_h - size[1] * scale) <= 4
    hard, _ = prepare_mask(mask, False, options.mask_blur)
    assert_paste_keeps_outside(plan, image, hard)


@pytest.mark.slow
def test_large_image_only_masked():
    size = (3000, 2000)
    image, mask = picture(*size), ellipse_mask(size, (1400, 900, 1500, 960))
    plan = InpaintPlan.make(image, mask, InpaintOptions(inpaint_area="Only masked", padding=64), 512, 512)
    assert plan.size == (512, 512)
    left, top, right, bottom = plan.box
    assert right - left == bottom - top  # room to grow: exact aspect
    assert right - left < 400  # a crop, not the whole picture: the small mask gets the full resolution
    hard, _ = prepare_mask(mask, False, 4)
    assert_paste_keeps_outside(plan, image, hard)


@pytest.mark.parametrize(
    "size, ellipse, padding, width, height",
    [
        ((1000, 750), (400, 300, 560, 340), 32, 512, 512),  # flat mask: grows in height
        ((1000, 750), (400, 300, 430, 500), 32, 512, 512),  # tall mask: grows in width
        ((1000, 750), (0, 0, 60, 40), 16, 768, 512),  # in a corner: shifted inside
        ((1000, 750), (940, 700, 999, 749), 16, 512, 768),  # the other corner
        ((333, 217), (100, 50, 200, 150), 200, 512, 512),  # padding beyond the image: clamped
    ],
)
def test_only_masked_box_holds_mask_and_padding_at_the_aspect(size, ellipse, padding, width, height):
    image, mask = picture(*size), ellipse_mask(size, ellipse)
    options = InpaintOptions(inpaint_area="Only masked", padding=padding)
    plan = InpaintPlan.make(image, mask, options, width, height)
    left, top, right, bottom = plan.box
    x1, y1, x2, y2 = plan.soft_mask.getbbox()
    assert 0 <= left <= max(x1 - padding, 0) and 0 <= top <= max(y1 - padding, 0)
    assert min(x2 + padding, size[0]) <= right <= size[0] and min(y2 + padding, size[1]) <= bottom <= size[1]
    box_w, box_h = right - left, bottom - top
    if box_w < size[0] and box_h < size[1]:  # the image allowed the full growth
        assert abs(box_w / box_h - width / height) <= 1.5 / min(box_w, box_h)
    else:  # clamped to the image in the direction it had to grow
        assert box_w == size[0] or box_h == size[1]


def test_full_mask_box_is_whole_image_in_both_modes():
    image, mask = picture(200, 120), Image.new("L", (200, 120), 255)
    for area in INPAINT_AREAS:
        plan = InpaintPlan.make(image, mask, InpaintOptions(inpaint_area=area), 512, 512)
        assert plan.box == (0, 0, 200, 120)


def test_invert_repaints_the_complement():
    size = (300, 200)
    image, mask = picture(*size), ellipse_mask(size, (100, 50, 200, 150))
    plan = InpaintPlan.make(image, mask, InpaintOptions(invert_mask=True, mask_blur=0), 304, 200)
    assert np.array_equal(np.asarray(plan.soft_mask) == 255, np.asarray(mask) < 128)
    hard, _ = prepare_mask(mask, True, 0)
    assert_paste_keeps_outside(plan, image, hard)
    # Only masked, inverted: the complement touches every border, so the crop is the whole picture.
    plan = InpaintPlan.make(image, mask, InpaintOptions(invert_mask=True, inpaint_area="Only masked"), 512, 512)
    assert plan.box == (0, 0, *size)


def test_prepare_mask_binarises_and_blurs():
    mask = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (4, 1)), "L")
    hard, soft = prepare_mask(mask, False, 0)
    assert soft is hard and hard.mode == "L"
    values = np.asarray(hard)[0]
    assert set(values[:128]) == {0} and set(values[128:]) == {255}
    inverted, _ = prepare_mask(mask, True, 0)
    assert np.array_equal(np.asarray(inverted), 255 - np.asarray(hard))
    _, soft = prepare_mask(ellipse_mask((64, 64), (20, 20, 40, 40)), False, 4)
    assert len(np.unique(np.asarray(soft))) > 2  # a real gradient at the edge
    rgba = Image.new("RGBA", (16, 16))
    ImageDraw.Draw(rgba).rectangle((2, 2, 8, 8), fill=(255, 255, 255, 255))
    assert prepare_mask(rgba, False, 0)[0].getbbox() == (2, 2, 9, 9)


def test_empty_masks_raise():
    image = picture(64, 64)
    with pytest.raises(ValueError, match="mask is empty: paint"):
        InpaintPlan.make(image, Image.new("L", (64, 64), 60), InpaintOptions(), 64, 64)
    with pytest.raises(ValueError, match="mask is empty after inverting.*untick invert"):
        InpaintPlan.make(image, Image.new("L", (64, 64), 255), InpaintOptions(invert_mask=True), 64, 64)


def test_mask_size_must_match():
    with pytest.raises(ValueError, match=r"mask size \(32, 32\) differs from image size \(64, 64\)"):
        InpaintPlan.make(picture(64, 64), Image.new("L", (32, 32), 255), InpaintOptions(), 64, 64)


def test_fill_spreads_surrounding_colour():
    red = Image.new("RGB", (96, 96), (200, 30, 30))
    ImageDraw.Draw(red).rectangle((32, 32, 63, 63), fill=(255, 255, 255))
    mask = Image.new("L", red.size)
    ImageDraw.Draw(mask).rectangle((32, 32, 63, 63), fill=255)
    plan = InpaintPlan.make(red, mask, InpaintOptions(masked_content="fill"), 96, 96)
    filled, orig = np.asarray(plan.image).astype(int), np.asarray(red).astype(int)
    inside = np.asarray(mask) == 255
    assert np.abs(filled[inside] - (200, 30, 30)).max() <= 8  # no trace of the white square
    outside = ~inside
    assert np.array_equal(filled[outside], orig[outside])
    for content in MASKED_CONTENT[1:4]:  # these act on the latents, not here
        plan = InpaintPlan.make(red, mask, InpaintOptions(masked_content=content), 96, 96)
        assert np.array_equal(np.asarray(plan.image), np.asarray(red))


@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_paste_works_in_rgb_for_other_modes(mode):
    image = picture(120, 80).convert(mode)
    mask = ellipse_mask(image.size, (40, 20, 80, 60))
    plan = InpaintPlan.make(image, mask, InpaintOptions(inpaint_area="Only masked"), 256, 256)
    assert plan.original.mode == plan.image.mode == "RGB"
    result = plan.paste(noise(plan.size).convert("RGBA"))
    keep = np.asarray(plan.soft_mask) == 0
    assert result.mode == "RGB" and np.array_equal(np.asarray(result)[keep], np.asarray(image.convert("RGB"))[keep])
    assert len(plan.paste_all([noise(plan.size), noise(plan.size, 2)])) == 2
    with pytest.raises(ValueError, match="generated image size"):
        plan.paste(noise((64, 64)))


def test_round8():
    assert [round8(x) for x in (0, 3.9, 4, 11.9, 12, 341.3, 512)] == [8, 8, 8, 8, 16, 344, 512]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mask_blur": 80}, "mask_blur must be a whole number from 0 to 64, got 80"),
        ({"mask_blur": 4.5}, "mask_blur must be a whole number from 0 to 64, got 4.5"),
        ({"mask_blur": True}, "mask_blur must be a whole number from 0 to 64, got True"),
        ({"padding": -1}, "padding must be a whole number from 0 to 256, got -1"),
        ({"inpaint_area": "Everything"}, "inpaint_area must be one of Whole picture, Only masked, got 'Everything'"),
        ({"masked_content": "zeros"}, "masked_content must be one of fill, original, latent noise, latent nothing"),
        ({"invert_mask": "yes"}, "invert_mask must be true or false, got 'yes'"),
        ({"invert_mask": 1}, "invert_mask must be true or false, got 1"),
    ],
)
def test_option_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InpaintOptions(**kwargs)


def test_options_accept_integral_floats():
    options = InpaintOptions(mask_blur=4.0, padding=32.0)
    assert options.mask_blur == 4 and type(options.mask_blur) is int and type(options.padding) is int


@pytest.mark.parametrize("area", INPAINT_AREAS)
@pytest.mark.parametrize(
    "width, height, message",
    [(500, 512, "width must be a positive multiple of 8, got 500"), (512, 0, "height must be a positive multiple")],
)
def test_generation_size_errors_name_the_field(area, width, height, message):
    image, mask = picture(64, 64), ellipse_mask((64, 64), (10, 10, 30, 30))
    with pytest.raises(ValueError, match=message):
        InpaintPlan.make(image, mask, InpaintOptions(inpaint_area=area), width, height)


@pytest.mark.parametrize(
    "options, expected",
    [
        (InpaintOptions(), {"Mask blur": 4}),
        (
            InpaintOptions(mask_blur=8, inpaint_area="Only masked", padding=48),
            {"Mask blur": 8, "Inpaint area": "Only masked", "Masked area padding": 48},
        ),
        (
            InpaintOptions(masked_content="latent noise", invert_mask=True),
            {"Mask blur": 4, "Masked content": "latent noise", "Mask mode": "Inpaint not masked"},
        ),
        (
            InpaintOptions(inpaint_area="Only masked", masked_content="fill", invert_mask=True),
            {
                "Mask blur": 4,
                "Inpaint area": "Only masked",
                "Masked area padding": 32,
                "Masked content": "fill",
                "Mask mode": "Inpaint not masked",
            },
        ),
    ],
)
def test_infotext(options, expected):
    assert list(options.infotext().items()) == list(expected.items())  # order too


# --- outpainting ---


@pytest.mark.parametrize("fill", ["edge", "noise"])
@pytest.mark.parametrize("left, right, up, down", [(64, 0, 0, 0), (0, 40, 24, 0), (16, 16, 16, 16), (0, 0, 0, 100)])
def test_extend_canvas_geometry(fill, left, right, up, down):
    image, overlap = picture(120, 90), 16
    canvas, mask = extend_canvas(image, left, right, up, down, overlap=overlap, fill=fill)
    w, h = image.size
    assert canvas.size == mask.size == (w + left + right, h + up + down)
    assert canvas.mode == "RGB" and mask.mode == "L"
    c, m = np.asarray(canvas), np.asarray(mask)
    assert np.array_equal(c[up:up + h, left:left + w], np.asarray(image))
    new = np.ones(m.shape, bool)
    new[up:up + h, left:left + w] = False
    assert (m[new] == 255).all()
    inner = m[up:up + h, left:left + w]
    assert (inner[overlap:h - overlap, overlap:w - overlap] == 0).all()
    # Along a line into the picture from each extended side: 255 at the border, falling to 0 at `overlap` px in.
    middle_row, middle_col = inner[h // 2], inner[:, w // 2]
    for extended, line in ((left, middle_row), (right, middle_row[::-1]), (up, middle_col), (down, middle_col[::-1])):
        band = line[:overlap + 1]
        if extended:
            assert band[0] == 255 and band[-1] == 0 and (np.diff(band.astype(int)) < 0).all()
        else:
            assert (band == 0).all()  # no feathering on sides that were not extended


def test_extend_canvas_fills():
    image = Image.new("RGB", (40, 40), (10, 200, 90))
    canvas, _ = extend_canvas(image, left=32, fill="edge")
    assert np.abs(np.asarray(canvas).astype(int) - (10, 200, 90)).max() <= 1  # a flat edge stretches to itself
    first, _ = extend_canvas(image, right=32, fill="noise", seed=3)
    again, _ = extend_canvas(image, right=32, fill="noise", seed=3)
    other, _ = extend_canvas(image, right=32, fill="noise", seed=4)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    assert np.asarray(first)[:, 40:].std() > 50


@pytest.mark.parametrize("area", INPAINT_AREAS)
@pytest.mark.parametrize("mask_blur", [0, 2])  # 2 = overlap // 8: the seam is soft, the soft mask still ends inside
def test_outpaint_then_inpaint_keeps_the_picture_beyond_the_overlap(area, mask_blur):
    image, overlap, left, up = picture(200, 150), 16, 96, 40
    canvas, mask = extend_canvas(image, left=left, up=up, overlap=overlap)
    plan = InpaintPlan.make(canvas, mask, InpaintOptions(mask_blur=mask_blur, inpaint_area=area), 512, 512)
    result = np.asarray(plan.paste(noise(plan.size)))
    w, h = image.size
    kept = result[up + overlap:up + h, left + overlap:left + w]
    assert np.array_equal(kept, np.asarray(image)[overlap:, overlap:])
    assert np.any(result[:up, :] != np.asarray(canvas)[:up, :], axis=-1).mean() > 0.9  # the new area was painted


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"left": -5}, "left must be a whole number from 0 to 1024, got -5"),
        ({"down": 2000}, "down must be a whole number from 0 to 1024, got 2000"),
        ({"up": 8.5}, "up must be a whole number from 0 to 1024, got 8.5"),
        ({}, "outpaint: give at least one of left, right, up, down"),
        ({"left": 0, "right": 0, "up": 0, "down": 0}, "outpaint: give at least one of left, right, up, down"),
        ({"left": 64, "overlap": 64}, "overlap must not exceed the image width 48"),
        ({"down": 64, "overlap": 40}, "overlap must not exceed the image height 32"),
        ({"left": 64, "overlap": 300}, "overlap must be a whole number from 0 to 256, got 300"),
        ({"left": 64, "fill": "mirror"}, "fill must be one of edge, noise, lama, got 'mirror'"),
        ({"left": 64, "fill": "noise", "seed": -1}, "seed must be a whole number"),
    ],
)
def test_outpaint_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        extend_canvas(picture(48, 32), **kwargs)


def test_overlap_up_to_the_other_axis_is_fine():
    canvas, mask = extend_canvas(picture(48, 32), left=64, overlap=40)  # 40 > height, but only width matters here
    assert np.asarray(mask)[:, 64].min() == 255
