"""LaMa through spandrel from a `.safetensors` file in the annotator folder: its fill, bounded on large pictures, as
inpaint's masked content and outpaint's pre-fill, and what is refused (no file, a pickle, another model)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from extensions.inpaint import Inpaint, InpaintOptions, InpaintPlan
from extensions.outpaint import Outpaint
from extensions.outpaint.canvas import extend_canvas
from models import lama
from models.images import png_base64
from service.studio import StudioService
from testing.lama_files import make_lama


@pytest.fixture(scope="module")
def annotators(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotators")
    make_lama(folder / "lama" / "big-lama.safetensors")
    return folder


def noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8))


def ellipse(size: tuple[int, int], box) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    return mask


@pytest.mark.slow  # big-lama's real size
def test_the_fill_changes_only_the_hole(annotators):
    picture, mask = noise(300, 200), ellipse((300, 200), (80, 40, 220, 160))
    filled = np.asarray(lama.fill(picture, mask, annotators)).astype(int)
    hole = np.asarray(mask) == 255
    assert np.array_equal(filled[~hole], np.asarray(picture)[~hole])
    assert np.abs(filled[hole] - np.asarray(picture)[hole]).mean() > 20
    again = np.asarray(lama.fill(picture, mask, annotators)).astype(int)
    assert np.array_equal(filled, again), "the same fill every time"


@pytest.mark.slow
def test_a_large_picture_is_filled_within_bounded_time(annotators):
    picture = Image.new("RGB", (4000, 3000), "navy")
    mask = ellipse(picture.size, (500, 400, 3500, 2600))
    started = time.perf_counter()
    filled = lama.fill(picture, mask, annotators)
    assert filled.size == picture.size
    assert time.perf_counter() - started < 30, "LaMa works at most WORKING_SIDE px, whatever the picture's size"


def test_what_is_refused_is_named(tmp_path):
    with pytest.raises(ValueError, match="LaMa needs its weights: put big-lama.safetensors in"):
        lama.find(tmp_path)
    (tmp_path / "lama").mkdir()
    (tmp_path / "lama" / "big-lama.ckpt").write_bytes(b"never unpickled")
    with pytest.raises(ValueError, match="big-lama.ckpt .* is a pickle, which can run code when loaded"):
        lama.find(tmp_path)
    import torch

    save_file({"weight": torch.zeros(3, 3)}, tmp_path / "lama" / "other.safetensors")
    with pytest.raises(ValueError, match="other.safetensors is not a LaMa model spandrel knows"):
        lama.fill(noise(32, 32), ellipse((32, 32), (8, 8, 24, 24)), tmp_path)


def test_masked_content_lama_starts_the_model_from_the_fill(annotators):
    picture, mask = noise(96, 96), ellipse((96, 96), (24, 24, 72, 72))
    plan = InpaintPlan.make(picture, mask, InpaintOptions(masked_content="lama"), 96, 96,
                            lama=lambda image, hole: lama.fill(image, hole, annotators))
    expected = lama.fill(picture, mask, annotators)
    assert np.array_equal(np.asarray(plan.image), np.asarray(expected))


def test_inpaint_and_outpaint_with_lama_on_the_demo_model(demo_manager, annotators, tmp_path):
    service = StudioService(demo_manager, tmp_path, [Inpaint(annotators), Outpaint(annotators)])
    picture, mask = noise(128, 96), ellipse((128, 96), (30, 20, 90, 70))
    generation = service.run("inpaint", dict(prompt="a red circle", image=picture, mask=mask, steps=2, seed=3,
                                             width=128, height=96, strength=0.6, masked_content="lama", mask_blur=0))
    result = np.asarray(Image.open(generation.files[0]).convert("RGB"))
    outside = np.asarray(mask) == 0
    assert np.array_equal(result[outside], np.asarray(picture)[outside])
    assert "Masked content: lama" in generation.infotexts[0]
    canvas, _ = extend_canvas(picture, right=64, lama=lambda image, hole: lama.fill(image, hole, annotators),
                              fill="lama")
    edge, _ = extend_canvas(picture, right=64, fill="edge")
    assert np.array_equal(np.asarray(canvas)[:, :128], np.asarray(picture))
    assert np.abs(np.asarray(canvas)[:, 128:].astype(int) - np.asarray(edge)[:, 128:]).mean() > 5, "LaMa's fill"
    outpainted = service.run("outpaint", dict(prompt="a red circle", image=picture, right=64, fill="lama", steps=2,
                                              seed=3, width=192, height=96))
    assert Image.open(outpainted.files[0]).size == (192, 96)


def test_without_weights_lama_is_refused_by_name(demo_manager, tmp_path):
    service = StudioService(demo_manager, tmp_path, [Inpaint(tmp_path), Outpaint(tmp_path)])
    picture, mask = noise(64, 64), ellipse((64, 64), (16, 16, 48, 48))
    with pytest.raises(ValueError, match="masked_content 'lama': LaMa needs its weights"):
        service.run("inpaint", dict(prompt="x", image=picture, mask=mask, steps=2, masked_content="lama"))
    with pytest.raises(ValueError, match="LaMa needs its weights"):
        service.run("outpaint", dict(prompt="x", image=picture, right=32, fill="lama", steps=2))


def test_rest_inpainting_fill_4_is_lama(app_server):
    url, _ = app_server
    picture, mask = noise(64, 64), ellipse((64, 64), (16, 16, 48, 48))

    body = {"prompt": "x", "init_images": [png_base64(picture)], "mask": png_base64(mask), "steps": 2, "seed": 1,
            "width": 64, "height": 64, "inpainting_fill": 4}
    answer = requests.post(f"{url}/sdapi/v1/img2img", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    assert "Masked content: lama" in answer.json()["info"]
    past = requests.post(f"{url}/sdapi/v1/img2img", json={**body, "inpainting_fill": 5}, timeout=60)
    assert past.status_code == 422 and "inpainting_fill" in past.json()["detail"]


@pytest.mark.slow
def test_a_pickled_lama_checkpoint_converts_without_running_code(annotators, tmp_path):
    """A Lightning-style checkpoint (generator and discriminator) becomes a LaMa file the fill loads."""
    import torch
    from safetensors.torch import load_file

    from training.to_safetensors import convert

    generator = load_file(annotators / "lama" / "big-lama.safetensors")
    # big-lama's own names: its generator's layers as `generator.model.N...` (spandrel's are `model.model.N...`)
    checkpoint = {"state_dict": {**{"generator." + name.removeprefix("model."): value
                                    for name, value in generator.items()},
                                 "discriminator.conv.weight": torch.zeros(2, 2)}, "epoch": 3}
    torch.save(checkpoint, tmp_path / "big-lama.ckpt")
    assert convert(tmp_path / "big-lama.ckpt", tmp_path / "converted" / "lama" / "big-lama.safetensors",
                   keep="generator.") == len(generator)
    picture, mask = noise(64, 64), ellipse((64, 64), (16, 16, 48, 48))
    assert np.array_equal(np.asarray(lama.fill(picture, mask, tmp_path / "converted")),
                          np.asarray(lama.fill(picture, mask, annotators)))

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"state_dict": {"x": Evil()}}, tmp_path / "evil.ckpt")
    with pytest.raises(Exception, match="Weights only load failed"):
        convert(tmp_path / "evil.ckpt", tmp_path / "evil.safetensors")
