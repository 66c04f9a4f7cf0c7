"""The pipeline manager: shared weights, both kinds of base, samplers, seeds, determinism, interrupt, lock."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from PIL import Image

from models.manager import PipelineManager
from models.request import GenerationRequest
from models.sampler_names import SAMPLER_NAMES
from models.samplers import make_scheduler
from models.single_file import save_single_file
from tests.conftest import DEMO, PLUMBING

SMALL = {"width": 64, "height": 64, "steps": 4}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def max_diff(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


def gradient_image(size=(64, 64)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(x, (size[1], 1))] * 3, axis=-1))


def square_mask(size=(64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (16, 16, 48, 48))
    return mask


MODULES = ("unet", "vae", "text_encoder", "tokenizer")


@pytest.mark.parametrize("fixture", ["demo_manager", "txt2img_manager"])
def test_pipelines_share_every_module(fixture, request):
    manager = request.getfixturevalue(fixture)
    first = manager.pipelines["txt2img"]
    for pipe in manager.pipelines.values():
        for name in MODULES:
            assert getattr(pipe, name) is getattr(first, name), name


def test_nine_channel_base_runs_every_mode_through_inpaint(demo_manager):
    assert demo_manager.is_inpainting_model
    assert all(isinstance(p, StableDiffusionInpaintPipeline) for p in demo_manager.pipelines.values())
    assert demo_manager.default_size == 64


def test_four_channel_base_uses_the_usual_pipelines(txt2img_manager):
    assert not txt2img_manager.is_inpainting_model
    assert type(txt2img_manager.pipelines["txt2img"]) is StableDiffusionPipeline
    assert type(txt2img_manager.pipelines["img2img"]) is StableDiffusionImg2ImgPipeline
    assert type(txt2img_manager.pipelines["inpaint"]) is StableDiffusionInpaintPipeline
    for mode, extra in (("txt2img", {}), ("img2img", {"image": gradient_image()}),
                        ("inpaint", {"image": gradient_image(), "mask": square_mask()})):
        result = txt2img_manager.generate(GenerationRequest(mode, "a cat", seed=1, **SMALL, **extra))
        assert result.images[0].size == (64, 64)


def test_single_file_checkpoint_loads_with_the_same_weights(tmp_path):
    folder_manager = PipelineManager.load(str(PLUMBING), device="cpu")
    path = save_single_file(PLUMBING, tmp_path / "plumbing.safetensors")
    manager = PipelineManager.load(str(path), device="cpu", single_file_config=str(PLUMBING))
    assert manager.source.kind == "single_file" and manager.source.name == "plumbing"
    assert manager.is_inpainting_model
    expected = folder_manager.pipelines["inpaint"].unet.state_dict()
    for key, value in manager.pipelines["inpaint"].unet.state_dict().items():
        assert torch.equal(value, expected[key]), key
    request = GenerationRequest("txt2img", "a red circle", seed=3, **SMALL)
    assert max_diff(manager.generate(request).images[0], folder_manager.generate(request).images[0]) == 0


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "model.bin", "model.pth"])
def test_pickle_checkpoints_are_refused_before_reading(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not even read")
    with pytest.raises(ValueError, match="pickle"):
        PipelineManager.load(str(path))


@pytest.mark.slow
def test_every_sampler_runs_with_a_fresh_scheduler(demo_manager):
    shared = demo_manager.pipelines["txt2img"]
    scheduler_before, config_before = shared.scheduler, dict(shared.scheduler.config)
    made = [make_scheduler(name, shared.scheduler.config, [1]) for name in SAMPLER_NAMES]
    assert len({id(s) for s in made}) == len(made) and all(s is not scheduler_before for s in made)
    for name in ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "PNDM",
                 "UniPC", "LMS", "Heun", "LCM"):
        result = demo_manager.generate(GenerationRequest("txt2img", "x", sampler=name, seed=1, **SMALL))
        assert result.images[0].size == (64, 64), name
    assert shared.scheduler is scheduler_before and dict(shared.scheduler.config) == config_before


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE Karras", "DPM++ 2M"])
def test_same_inputs_and_seed_give_the_same_pixels(demo_manager, sampler):
    request = GenerationRequest("txt2img", "a blue square", sampler=sampler, seed=42, **SMALL)
    first, second = demo_manager.generate(request), demo_manager.generate(request)
    assert max_diff(first.images[0], second.images[0]) == 0
    other = demo_manager.generate(GenerationRequest("txt2img", "a blue square", sampler=sampler, seed=43, **SMALL))
    assert max_diff(first.images[0], other.images[0]) > 0


@pytest.mark.parametrize("sampler", ["Euler a", pytest.param("DPM++ SDE Karras", marks=pytest.mark.slow)])
def test_batch_image_i_uses_seed_plus_i(demo_manager, sampler):
    batch = demo_manager.generate(GenerationRequest("txt2img", "x", sampler=sampler, seed=100, batch_size=3, **SMALL))
    assert batch.seeds == [100, 101, 102]
    for image, seed in zip(batch.images, batch.seeds):
        alone = demo_manager.generate(GenerationRequest("txt2img", "x", sampler=sampler, seed=seed, **SMALL))
        assert max_diff(image, alone.images[0]) <= 1  # batched convolutions may round differently


def test_random_seed_is_picked_and_recorded(demo_manager):
    first = demo_manager.generate(GenerationRequest("txt2img", "x", seed=-1, batch_size=2, **SMALL))
    second = demo_manager.generate(GenerationRequest("txt2img", "x", seed=-1, **SMALL))
    assert first.seeds[1] == first.seeds[0] + 1 and first.seeds[0] != second.seeds[0]
    again = demo_manager.generate(GenerationRequest("txt2img", "x", seed=first.seeds[0], **SMALL))
    assert max_diff(again.images[0], first.images[0]) <= 1


def _plain(pipeline_class, folder, sampler, seed, **kwargs) -> Image.Image:
    """The same job through a plain diffusers pipeline loaded on its own."""
    pipe = pipeline_class.from_pretrained(folder, safety_checker=None, requires_safety_checker=False,
                                          dtype=torch.float32)  # as the manager runs on CPU
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config, [seed])
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(generator=generator, num_inference_steps=4, guidance_scale=7.0, **kwargs).images[0]


@pytest.mark.parametrize("sampler", ["Euler a", pytest.param("DPM++ 2M Karras", marks=pytest.mark.slow)])
def test_output_equals_plain_diffusers_on_the_inpainting_base(demo_manager, sampler):
    full = Image.new("L", (64, 64), 255)
    cases = [
        (GenerationRequest("txt2img", "a red circle", sampler=sampler, seed=7, **SMALL),
         dict(image=Image.new("RGB", (64, 64)), mask_image=full, strength=1.0)),
        (GenerationRequest("img2img", "a red circle", sampler=sampler, seed=7, strength=0.6,
                           image=gradient_image(), **SMALL),
         dict(image=gradient_image(), mask_image=full, strength=0.6)),
        (GenerationRequest("inpaint", "a red circle", sampler=sampler, seed=7, strength=0.9,
                           image=gradient_image(), mask=square_mask(), **SMALL),
         dict(image=gradient_image(), mask_image=square_mask(), strength=0.9)),
    ]
    for request, inputs in cases:
        ours = demo_manager.generate(request).images[0]
        plain = _plain(StableDiffusionInpaintPipeline, DEMO, sampler, 7, prompt="a red circle", negative_prompt="",
                       width=64, height=64, **inputs)
        assert max_diff(ours, plain) <= 1, request.mode


@pytest.mark.slow  # the inpainting base's equality stays in make test-fast
def test_output_equals_plain_diffusers_on_a_four_channel_base(txt2img_manager, txt2img_folder):
    ours = txt2img_manager.generate(GenerationRequest("txt2img", "a dog", sampler="Euler", seed=5, **SMALL))
    plain = _plain(StableDiffusionPipeline, txt2img_folder, "Euler", 5, prompt="a dog", negative_prompt="",
                   width=64, height=64)
    assert max_diff(ours.images[0], plain) <= 1
    ours = txt2img_manager.generate(
        GenerationRequest("img2img", "a dog", sampler="Euler", seed=5, strength=0.5, image=gradient_image(), **SMALL)
    )
    plain = _plain(StableDiffusionImg2ImgPipeline, txt2img_folder, "Euler", 5, prompt="a dog", negative_prompt="",
                   image=gradient_image(), strength=0.5)
    assert max_diff(ours.images[0], plain) <= 1


def test_progress_callback_sees_every_step(demo_manager):
    seen = []
    demo_manager.generate(GenerationRequest("txt2img", "x", seed=1, **SMALL), on_step=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_interrupt_stops_within_one_step_and_returns_the_image(demo_manager):
    request = GenerationRequest("txt2img", "x", seed=9, width=64, height=64, steps=20)
    seen = []

    def on_step(done, total):
        seen.append(done)
        if done == 2:
            demo_manager.interrupt()

    result = demo_manager.generate(request, on_step=on_step)
    assert result.interrupted and seen == [1, 2]
    assert result.images[0].size == (64, 64)
    full = demo_manager.generate(request)
    assert not full.interrupted and max_diff(full.images[0], result.images[0]) > 0


def test_concurrent_requests_each_get_their_own_result(demo_manager):
    requests = [
        GenerationRequest("txt2img", prompt, sampler=sampler, seed=seed, **SMALL)
        for prompt, sampler, seed in (("a cat", "Euler", 1), ("a dog", "DDIM", 2), ("a fox", "Euler a", 3))
    ]
    alone = [demo_manager.generate(r).images[0] for r in requests]
    together: dict[int, Image.Image] = {}

    def run(i):
        for _ in range(2):
            together[i] = demo_manager.generate(requests[i]).images[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, image in enumerate(alone):
        assert max_diff(together[i], image) == 0


def test_unload_moves_the_weights_to_cpu_memory_and_reload_brings_them_back():
    """On a GPU (the move is recorded here: this machine has none); on a CPU, or offloaded, nothing moves."""
    import dataclasses

    manager = PipelineManager.load("demo", device="cpu")
    moves = []

    class Recording:
        def to(self, device):
            moves.append(str(device))

    manager._base = Recording()
    manager.unload()
    manager.reload()
    assert moves == [] and not manager.unloaded, "CPU weights stay where they are"
    manager.runtime = dataclasses.replace(manager.runtime, device=torch.device("cuda"))
    manager.unload()
    assert manager.unloaded and moves == ["cpu"]
    manager.reload()
    manager.reload()
    assert moves == ["cpu", "cuda"] and not manager.unloaded
