"""--offload for small cards: diffusers' model offload over the shared modules gives the same
pixels as without it on the demo model, with a LoRA loaded after the hooks and a ControlNet unit; a training run
pauses the hooks and puts them back; the options are checked at start (bad flags: test_config)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app import parse_config
from extensions.controlnet import extension as controlnet
from extensions.lora import Lora
from extensions.train import Train
from models.manager import PipelineManager
from service.studio import StudioService
from testing.controlnet_files import controlnet_for
from testing.lora_files import make_lora

PROMPT = "a red circle on a yellow background"


def studio(offload: str, folder) -> StudioService:
    manager = PipelineManager.load("demo", device="cpu", offload=offload)
    return StudioService(manager, folder / f"outputs-{offload}", [
        Lora(folder / "Lora"), controlnet.ControlNet(folder / "ControlNet"),
        Train(folder / "Lora", folder / f"training-{offload}")])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("offload")
    plain = PipelineManager.load("demo", device="cpu").pipelines["txt2img"]
    make_lora(plain, folder / "Lora" / "ink.safetensors", seed=1, layout="kohya")
    controlnet_for(plain.unet, seed=1, vae_scale_factor=plain.vae_scale_factor).save_pretrained(
        folder / "ControlNet" / "cn")
    return folder


def outputs(service) -> list[np.ndarray]:
    """Plain, with a LoRA (loaded now, over the hooks), plain again, with a ControlNet unit."""
    edges = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(edges).ellipse([16, 16, 48, 48], outline="white", width=3)
    unit = {"enabled": True, "module": "none", "model": "cn", "image": edges}
    runs = [{}, {"prompt": f"{PROMPT} <lora:ink:1>"}, {}, {"controlnet_units": [unit]}]
    return [np.asarray(Image.open(service.run("txt2img", {"prompt": PROMPT, "width": 64, "height": 64, "steps": 4,
                                                           "seed": 3, **run}).files[0])).astype(int) for run in runs]


def hooked(service) -> bool:
    pipe = service.manager.pipelines["txt2img"]
    return all(hasattr(module, "_hf_hook") for module in (pipe.unet, pipe.text_encoder, pipe.vae))


@pytest.mark.slow
def test_model_offload_gives_the_same_pixels_with_a_lora_and_a_controlnet(folder):
    plain, offloaded = studio("none", folder), studio("model", folder)
    assert not hooked(plain) and hooked(offloaded)
    assert "offload: model" in offloaded.manager.describe()
    expected, got = outputs(plain), outputs(offloaded)
    assert np.abs(expected[1] - expected[0]).max() > 10 and np.abs(expected[3] - expected[0]).max() > 10
    for want, have in zip(expected, got):
        assert np.array_equal(want, have)
    assert hooked(offloaded)  # attached again after the LoRA's layers were added


@pytest.mark.slow
def test_training_under_model_offload_pauses_the_hooks_and_puts_them_back(folder, tmp_path):
    service = studio("model", folder)
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse([16, 16, 48, 48], fill=(30, 60, 210))
    image.save(tmp_path / "one.png")
    base = outputs(service)[0]
    outcome = service.extension("train").train([str(tmp_path / "one.png")], "a sks circle", "offloaded", steps=3)
    assert outcome.steps == 3 and np.isfinite(outcome.loss) and outcome.file.exists()
    assert hooked(service)
    assert np.array_equal(outputs(service)[0], base)


def test_offload_options_are_checked_at_start():
    assert parse_config(["--offload", "model"], {}).offload == "model"
    assert parse_config([], {"SD_OFFLOAD": "sequential"}).offload == "sequential"
    assert parse_config([], {}).offload == "none"
    with pytest.raises(ValueError, match="offload 'sequential' needs a GPU"):
        PipelineManager.load("demo", device="cpu", offload="sequential")
    with pytest.raises(ValueError, match="offload must be one of none, model, sequential, got 'layers'"):
        PipelineManager.load("demo", device="cpu", offload="layers")
