"""LyCORIS files (LoHa, LoKr) through the LoRA extension, on SD 1.x and SDXL: the pixels equal a plain diffusers
pipeline whose weights have A1111's change merged in (network_hada.py / network_lokr.py's arithmetic), alone and
beside a LoRA; the base comes back exactly; files of another base are refused by name."""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from safetensors.torch import load_file

from extensions.lora import Lora
from models.manager import PipelineManager
from models.samplers import make_scheduler
from service.studio import StudioService
from testing.lora_files import TEXT_TARGETS, UNET_TARGETS, _kohya_name, make_lora, make_lycoris
from tests.test_manager import SMALL, max_diff


def a1111_change(layer: dict[str, torch.Tensor]) -> torch.Tensor:
    """A layer's change as A1111 computes it, scaled by alpha / dim."""
    if "hada_w1_a" in layer:
        dim = layer["hada_w1_b"].shape[0]
        change = (layer["hada_w1_a"] @ layer["hada_w1_b"]) * (layer["hada_w2_a"] @ layer["hada_w2_b"])
    else:
        dim = layer["lokr_w2_b"].shape[0]
        change = torch.kron(layer["lokr_w1"], layer["lokr_w2_a"] @ layer["lokr_w2_b"])
    return change * (float(layer["alpha"]) / dim)


def lora_change(layer: dict[str, torch.Tensor]) -> torch.Tensor:
    up, down = layer["lora_up.weight"], layer["lora_down.weight"]
    return up @ down * (float(layer["alpha"]) / up.shape[1])


@functools.cache
def _plain(folder: str) -> tuple[DiffusionPipeline, dict]:
    """A plain pipeline loaded on its own, and its weights as loaded (each reference starts from them)."""
    pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    return pipe, {name: {key: value.clone() for key, value in getattr(pipe, name).state_dict().items()}
                  for name in ("unet", "text_encoder", "text_encoder_2") if getattr(pipe, name, None) is not None}


def merged_reference(folder, files: list[tuple[str, float]], seed: int) -> Image.Image:
    """A plain pipeline with each file's change (times its weight) added to the weights, then run."""
    pipe, weights = _plain(str(folder))
    for name, state in weights.items():
        getattr(pipe, name).load_state_dict(state)
    xl = getattr(pipe, "text_encoder_2", None) is not None
    prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if xl else "lora_te_", "text_encoder_2": "lora_te2_"}
    for path, weight in files:
        tensors = load_file(path)
        for component, targets in (("unet", UNET_TARGETS), ("text_encoder", TEXT_TARGETS),
                                   ("text_encoder_2", TEXT_TARGETS)):
            model = getattr(pipe, component, None)
            if model is None:
                continue
            for name, module in model.named_modules():
                if not isinstance(module, torch.nn.Linear) or not name.endswith(targets):
                    continue
                key = prefixes[component] + _kohya_name(component, name, pipe.unet.config, xl)
                layer = {k.removeprefix(key + "."): v for k, v in tensors.items() if k.startswith(key + ".")}
                change = lora_change(layer) if "lora_up.weight" in layer else a1111_change(layer)
                with torch.no_grad():
                    module.weight += weight * change
    pipe.scheduler = make_scheduler("Euler", pipe.scheduler.config, [seed])
    pipe.set_progress_bar_config(disable=True)
    extra = {}
    if pipe.unet.config.in_channels == 9:
        extra = {"image": Image.new("RGB", (64, 64)), "mask_image": Image.new("L", (64, 64), 255), "strength": 1.0}
    return pipe(prompt="a red circle", negative_prompt="", num_inference_steps=4, guidance_scale=7.0, width=64,
                height=64, generator=torch.Generator("cpu").manual_seed(seed), **extra).images[0]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_loha_and_lokr_equal_a1111s_arithmetic_alone_and_beside_a_lora(family, family_folder, tmp_path):
    folder = family_folder("sdxl") if family == "sdxl" else tmp_path / "unused"
    manager = PipelineManager.load(str(folder) if family == "sdxl" else "demo", device="cpu")
    folder = manager.source.location
    pipe, loras = manager.pipelines["txt2img"], tmp_path / "Lora"
    files = {"hada": make_lycoris(pipe, loras / "hada.safetensors", seed=1, kind="loha", scale=0.6),
             "kron": make_lycoris(pipe, loras / "kron.safetensors", seed=2, kind="lokr", scale=0.6),
             "plain": make_lora(pipe, loras / "plain.safetensors", seed=3, layout="kohya", scale=0.2)}
    service = StudioService(manager, tmp_path / "outputs", [Lora(loras)])

    def run(tags: str) -> Image.Image:
        generation = service.run("txt2img", dict(prompt=f"a red circle{tags}", sampler="Euler", seed=6, **SMALL))
        return Image.open(generation.files[0])

    base = run("")
    for tags, used in [(" <lora:hada:0.7>", [("hada", 0.7)]), (" <lora:kron:1>", [("kron", 1.0)]),
                       (" <lora:hada:0.5> <lora:plain:0.8>", [("hada", 0.5), ("plain", 0.8)])]:
        ours = run(tags)
        theirs = merged_reference(folder, [(str(files[name]), weight) for name, weight in used], 6)
        assert max_diff(ours, base) > 8, tags
        assert max_diff(ours, theirs) <= 2, tags
    assert max_diff(run(""), base) == 0


@pytest.mark.slow
def test_a_lycoris_file_for_another_base_is_refused_and_the_state_kept(demo_manager, family_folder, tmp_path):
    xl = DiffusionPipeline.from_pretrained(family_folder("sdxl"))
    loras = tmp_path / "Lora"
    make_lycoris(xl, loras / "xl-hada.safetensors", seed=1)
    wide = make_lycoris(demo_manager.pipelines["txt2img"], loras / "wide.safetensors", seed=1, kind="lokr")
    tensors = load_file(str(wide))
    key = next(key for key in tensors if key.endswith(".lokr_w1"))
    tensors[key] = torch.randn(8, 8)  # twice the layer's size each way
    from safetensors.torch import save_file

    save_file(tensors, str(wide))
    manager = PipelineManager.load("demo", device="cpu")
    service = StudioService(manager, tmp_path / "outputs", [Lora(loras)])
    before = Image.open(service.run("txt2img", dict(prompt="a red circle", seed=1, **SMALL)).files[0])
    with pytest.raises(ValueError, match=r"xl-hada.safetensors: made for SDXL .*; this model is SD 1.x"):
        service.run("txt2img", dict(prompt="x <lora:xl-hada:1>", **SMALL))
    with pytest.raises(ValueError, match=r"wide.safetensors: made for another base model: its change of .* is "):
        service.run("txt2img", dict(prompt="x <lora:wide:1>", **SMALL))
    after = Image.open(service.run("txt2img", dict(prompt="a red circle", seed=1, **SMALL)).files[0])
    assert max_diff(before, after) == 0
