"""Identifying and loading base models: kinds, refusals, the offline fallback, the shipped SD 1.5 configs."""

from __future__ import annotations

import json

import pytest
from accelerate import init_empty_weights

from models import loading
from models.families import SD1
from models.manager import PipelineManager, load_or_demo
from models.request import GenerationRequest
from tests.conftest import DEMO


def test_identify_each_kind(tmp_path, txt2img_folder):
    assert loading.identify("demo").kind == "demo"
    assert loading.identify(str(txt2img_folder)).kind == "folder"
    checkpoint = tmp_path / "v1-5-pruned.safetensors"
    checkpoint.write_bytes(b"")
    source = loading.identify(str(checkpoint))
    assert (source.kind, source.name) == ("single_file", "v1-5-pruned")
    hub = loading.identify("stable-diffusion-v1-5/stable-diffusion-inpainting")
    assert (hub.kind, hub.name) == ("hub", "stable-diffusion-inpainting")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("missing.safetensors", "does not exist"),
        ("not a model id!", "not 'demo', an existing folder"),
        ("weights.ckpt", "pickle"),
    ],
)
def test_identify_refuses_with_a_reason(spec, message):
    with pytest.raises(ValueError, match=message):
        loading.identify(spec)


def test_folder_without_model_index_is_refused(tmp_path):
    with pytest.raises(ValueError, match="model_index.json"):
        loading.identify(str(tmp_path))


def test_pickle_weights_in_a_folder_are_not_loaded(tmp_path, txt2img_folder):
    """A diffusers folder whose U-Net is only a .bin (pickle) file is refused, not unpickled."""
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(txt2img_folder, folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises((OSError, ValueError, EnvironmentError)):
        PipelineManager.load(str(folder), device="cpu")


def test_single_file_without_a_unet_is_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ValueError, match="no Stable Diffusion U-Net"):
        PipelineManager.load(str(path), device="cpu")


def test_offline_hub_model_falls_back_to_the_demo_and_says_so(monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manager, notice = load_or_demo("stable-diffusion-v1-5/stable-diffusion-inpainting", device="cpu")
    assert manager.source.kind == "demo"
    assert "stable-diffusion-v1-5/stable-diffusion-inpainting" in notice and "demo model" in notice
    assert any("demo model" in record.getMessage() for record in caplog.records)


def test_other_load_errors_are_not_hidden_by_the_fallback(tmp_path):
    with pytest.raises(ValueError):
        load_or_demo(str(tmp_path / "nope.ckpt"), device="cpu")


def test_model_hash_is_a1111_short_sha256(txt2img_folder):
    import hashlib

    source = loading.identify(str(txt2img_folder))
    weights = next((txt2img_folder / "unet").glob("*.safetensors"))
    assert loading.model_hash(source, source.location) == hashlib.sha256(weights.read_bytes()).hexdigest()[:10]


def test_a_model_file_overwritten_in_place_does_not_change_the_loaded_model(tmp_path, txt2img_folder):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(txt2img_folder, tmp_path / "model")
    manager = PipelineManager.load(str(folder), device="cpu")
    unet = manager.pipelines["txt2img"].unet
    before = unet.conv_in.weight.clone()
    weights = next((folder / "unet").glob("*.safetensors"))
    changed = {name: tensor + 1 for name, tensor in load_file(weights).items()}
    with open(weights, "r+b") as file:  # the same inode, as `cp` over it writes
        file.truncate(0)
    save_file(changed, str(weights))
    assert torch.equal(unet.conv_in.weight, before)  # copied out of the file, not memory-mapped from it
    assert manager.generate(GenerationRequest("txt2img", "x", steps=1, width=64, height=64, seed=1)).images


# Parameter counts of the real SD 1.5 components, as published.
SD15_PARAMETERS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}


@pytest.mark.parametrize("in_channels", [4, 9])
def test_shipped_sd15_configs_describe_the_real_architecture(in_channels):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = SD1.config_folder(in_channels)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        encoder_config = json.loads((folder / "text_encoder" / "config.json").read_text())
        text_encoder = CLIPTextModel(CLIPTextConfig(**encoder_config))
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    extra_input_weights = (in_channels - 4) * 320 * 3 * 3  # the inpainting conv_in's 5 extra channels
    assert count(unet) == SD15_PARAMETERS["unet"] + extra_input_weights
    assert count(vae) == SD15_PARAMETERS["vae"]
    assert count(text_encoder) == SD15_PARAMETERS["text_encoder"]
    assert CLIPTokenizer.from_pretrained(folder / "tokenizer")("a photo").input_ids == [49406, 320, 1125, 49407]


def test_demo_model_loads_with_plain_diffusers():
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline.from_pretrained(DEMO)
    assert pipe.unet.config.in_channels == 9
    assert sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file()) < 20 * 2**20
