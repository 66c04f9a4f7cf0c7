"""LoRA over a compiled U-Net: one hot-swapped slot, so switching never recompiles, with the same images as
ordinary adapters. Compiled with dynamo's eager backend here (CPU, seconds); the guards that decide on a
recompile are the same as with inductor on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from extensions import lora
from extensions.lora.switch import lora_layers
from models.manager import PipelineManager
from models.request import GenerationRequest
from testing.lora_files import make_lora

pytestmark = pytest.mark.slow  # torch.compile's warm-up and graphs

RANK_LIMIT = 16


@pytest.fixture(scope="module")
def plain_manager():
    return PipelineManager.load("demo", device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, plain_manager):
    folder = tmp_path_factory.mktemp("Lora")
    pipe = plain_manager.pipelines["txt2img"]  # made before any adapter is on it
    make_lora(pipe, folder / "a.safetensors", seed=1, layout="kohya")  # rank 4
    make_lora(pipe, folder / "b.safetensors", seed=2, layout="diffusers", rank=8)
    make_lora(pipe, folder / "wide.safetensors", seed=3, rank=12, text_encoder=False)
    resnet = pipe.unet.down_blocks[0].resnets[0].time_emb_proj
    save_file({"unet.down_blocks.0.resnets.0.time_emb_proj.lora_A.weight": torch.zeros(4, resnet.in_features),
               "unet.down_blocks.0.resnets.0.time_emb_proj.lora_B.weight": torch.zeros(resnet.out_features, 4)},
              str(folder / "resnet.safetensors"))
    return folder


@pytest.fixture(scope="module")
def managers(folder, plain_manager):
    """(compiled, plain): the same model and LoRA folder, with and without the compiled slot."""
    compiled = PipelineManager.load("demo", device="cpu")
    compiled.lora = lora.install(compiled, folder, compiled_rank=RANK_LIMIT)
    compiled.compile_unet(backend="eager")
    compiled.warm_up()  # as the app does at start (service.studio.with_settings)
    plain_manager.lora = lora.install(plain_manager, folder)
    return compiled, plain_manager


def generate(manager, loras=()) -> np.ndarray:
    request = GenerationRequest("txt2img", "a cat", width=64, height=64, steps=3, seed=5, parts={"lora": loras})
    return np.asarray(manager.generate(request).images[0]).astype(int)


def test_the_app_compiles_then_warms_up_at_start():
    """...and then measures the device for the work budget, on the compiled (warmed up) U-Net."""
    from types import SimpleNamespace

    from app import parse_config
    from service.studio import with_settings

    calls = []
    manager = SimpleNamespace(set_previews=lambda *args: None, compile_unet=lambda: calls.append("compile"),
                              warm_up=lambda: calls.append("warm up"), calibrate=lambda: calls.append("calibrate"))
    with_settings(manager, parse_config(["--compile"], {}))
    assert calls == ["compile", "warm up", "calibrate"]


@pytest.mark.parametrize("batch_size, guidance_scale", [(1, 7.0), (8, 5.0), (3, 1.0)])
def test_after_the_warm_up_no_users_request_at_the_models_size_compiles(managers, batch_size, guidance_scale):
    """Whatever batch the queue makes, with guidance or without (the U-Net gets 1 to 16 images)."""
    compiled, _ = managers
    graphs = torch._dynamo.utils.counters["stats"]
    before, side = graphs["unique_graphs"], compiled.default_size
    request = GenerationRequest("txt2img", "a cat", width=side, height=side, steps=1, seed=5, batch_size=batch_size,
                                guidance_scale=guidance_scale, parts={"lora": (("a", 1.0),)})
    assert [image.size for image in compiled.generate(request).images] == [(side, side)] * batch_size
    assert graphs["unique_graphs"] == before, "a user's request compiled"


def test_switching_never_recompiles_and_matches_ordinary_adapters(managers):
    compiled, plain = managers
    generate(compiled)  # the one compile
    sets = [(), (("a", 1.0),), (("b", 0.5),), (("a", 0.7), ("b", 1.0)), (("a", 0.0),), (), (("a", 1.0),)]
    with torch._dynamo.config.patch(error_on_recompile=True):
        images = [generate(compiled, loras) for loras in sets]
    base = images[0]
    assert np.abs(images[1] - base).max() > 10, "a LoRA in the slot changes the output"
    assert np.array_equal(images[4], base) and np.array_equal(images[5], base), "weight 0 / none: base exactly"
    assert np.array_equal(images[6], images[1]), "A, then others, then A again: A's pixels"
    for loras, image in zip(sets, images):
        assert np.abs(image - generate(plain, loras)).max() <= 2, f"{loras}: same image as ordinary adapters"


def test_a_structural_change_would_be_caught(managers):
    """The check above can fail: changing the U-Net's adapter state the ordinary way does recompile."""
    compiled, _ = managers
    generate(compiled)
    layers = lora_layers(compiled.pipelines["txt2img"].unet)
    with torch._dynamo.config.patch(error_on_recompile=True), pytest.raises(Exception, match="[Rr]ecompil"):
        for layer in layers:
            layer._disable_adapters = True
        try:
            generate(compiled)
        finally:
            for layer in layers:
                layer._disable_adapters = False


def test_rank_limit_and_layers_outside_the_slot_are_refused_by_name(managers):
    compiled, _ = managers
    with pytest.raises(ValueError, match=r"ranks add up to 20, over the compiled U-Net's LoRA rank limit 16"):
        generate(compiled, (("b", 1.0), ("wide", 1.0)))
    with pytest.raises(ValueError, match=r"LoRA resnet: .*down_blocks\.0\.resnets\.0\.time_emb_proj"):
        generate(compiled, (("resnet", 1.0),))
    assert np.abs(generate(compiled, (("wide", 1.0),)) - generate(compiled)).max() > 10, "the next requests work"


def test_weighted_long_prompts_on_the_compiled_unet(managers, tmp_path):
    """A1111's prompt syntax over the compiled U-Net with a LoRA in its slot: a prompt of two chunks and a
    weighted one give the images the plain U-Net gives; a new prompt length recompiles once, not per request."""
    from extensions.prompts import Prompts

    compiled, plain = managers
    for manager in managers:
        Prompts(tmp_path).install(manager)

    def image(manager, prompt: str) -> np.ndarray:
        request = GenerationRequest("txt2img", prompt, width=64, height=64, steps=3, seed=5,
                                    parts={"lora": (("a", 1.0),)})
        return np.asarray(manager.generate(request).images[0]).astype(int)

    long, weighted = "a (cat:1.3), " * 30, "a (cat:1.3) on [grass]"
    image(compiled, long)  # the compile for 154 tokens of cross-attention
    with torch._dynamo.config.patch(error_on_recompile=True):
        results = {prompt: image(compiled, prompt) for prompt in (long, "a [dog], " * 30)}
    results[weighted] = image(compiled, weighted)
    for prompt, result in results.items():
        assert np.abs(result - image(plain, prompt)).max() <= 2, prompt


def test_twenty_mixed_requests_cause_no_recompile_after_warm_up(managers):
    """The CPU check of --compile: two sizes that repeat and LoRA sets that change, after two warm-up rounds
    over the sizes (dynamo recompiles once when a second size comes, making it dynamic), never recompile."""
    compiled, _ = managers
    sizes = [(64, 64), (72, 64)]
    sets = [(), (("a", 1.0),), (("b", 0.5),), (("a", 0.7), ("b", 1.0))]

    def run(index: int) -> None:
        width, height = sizes[index % len(sizes)]
        request = GenerationRequest("txt2img", "a cat", width=width, height=height, steps=1, seed=index,
                                    parts={"lora": sets[index % len(sets)]})
        assert compiled.generate(request).images[0].size == (width, height)

    for index in range(2 * len(sizes)):  # warm-up
        run(index)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for index in range(20):
            run(index)

