"""LoRA adapters over the shared demo model: outputs, hot swap, isolation, the cap, bad files."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInpaintPipeline
from PIL import Image

from extensions import lora
from extensions.lora.files import addnet_hash
from models.manager import PipelineManager
from models.request import GenerationRequest
from testing.lora_files import make_lora
from tests.conftest import DEMO

SIZE, STEPS = 64, 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("Lora")
    pipe = StableDiffusionInpaintPipeline.from_pretrained(DEMO, safety_checker=None)
    make_lora(pipe, folder / "kohya_a.safetensors", seed=1, layout="kohya")
    make_lora(pipe, folder / "peft_b.safetensors", seed=2, layout="diffusers")
    for index in range(6):
        make_lora(pipe, folder / "many" / f"m{index}.safetensors", seed=10 + index, layout="kohya", text_encoder=False)
    make_lora(pipe, folder / "sdxl_shaped.safetensors", seed=3, cross_attention_width=2048)
    (folder / "pickled.ckpt").write_bytes(b"not loaded")
    data = (folder / "kohya_a.safetensors").read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    import torch
    from safetensors.torch import save_file
    save_file({"lora_unet_mystery_layer.lora_down.weight": torch.zeros(4, 32)},
              str(folder / "unknown_keys.safetensors"))
    return folder


@pytest.fixture(scope="module")
def manager(folder):
    manager = PipelineManager.load("demo", device="cpu")
    manager.lora = lora.install(manager, folder, cap=4)
    return manager


def generate(manager, loras=(), seed=1, prompt="a cat") -> np.ndarray:
    request = GenerationRequest("txt2img", prompt, width=SIZE, height=SIZE, steps=STEPS, seed=seed,
                                parts={"lora": loras})
    return np.asarray(manager.generate(request).images[0]).astype(int)


def difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


def test_a_lora_changes_the_output_and_weight_zero_or_no_tag_is_the_base_exactly(manager):
    base = generate(manager)
    assert difference(generate(manager, (("kohya_a", 1.0),)), base) > 10
    assert difference(generate(manager, (("peft_b", 0.8),)), base) > 10
    assert difference(generate(manager, (("kohya_a", 0.0),)), base) == 0
    assert difference(generate(manager), base) == 0


def test_a_then_b_then_a_gives_a_exactly(manager):
    first = generate(manager, (("kohya_a", 0.7),))
    other = generate(manager, (("peft_b", 1.0),))
    assert difference(first, other) > 10
    assert difference(generate(manager, (("kohya_a", 0.7),)), first) == 0


def test_two_loras_equal_plain_diffusers_with_the_same_adapters(manager, folder):
    ours = generate(manager, (("kohya_a", 0.6), ("peft_b", -0.4)), seed=5)
    plain = StableDiffusionInpaintPipeline.from_pretrained(DEMO, safety_checker=None, dtype=torch.float32)
    plain.scheduler = EulerAncestralDiscreteScheduler.from_config(plain.scheduler.config)
    plain.load_lora_weights(folder / "kohya_a.safetensors", adapter_name="a")
    plain.load_lora_weights(folder / "peft_b.safetensors", adapter_name="b")
    plain.set_adapters(["a", "b"], [0.6, -0.4])
    image = plain(
        prompt=["a cat"], negative_prompt=[""], image=[Image.new("RGB", (SIZE, SIZE))],
        mask_image=[Image.new("L", (SIZE, SIZE), 255)], width=SIZE, height=SIZE, strength=1.0,
        num_inference_steps=STEPS, guidance_scale=7.0, generator=[__import__("torch").Generator().manual_seed(5)],
    ).images[0]
    assert difference(ours, np.asarray(image).astype(int)) <= 1


@pytest.mark.slow
def test_concurrent_clients_with_different_sets_each_get_what_they_get_alone(manager):
    sets = [(), (("kohya_a", 1.0),), (("peft_b", 0.5),), (("kohya_a", 0.3), ("peft_b", 0.9))]
    alone = [generate(manager, loras, seed=index) for index, loras in enumerate(sets)]
    results: dict[tuple[int, int], np.ndarray] = {}

    def client(index: int) -> None:
        for round_ in range(3):
            results[index, round_] = generate(manager, sets[index], seed=index)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(difference(image, alone[index]) == 0 for (index, _), image in results.items())


def adapters_in(manager) -> set[str]:
    return {name for names in manager.pipelines["inpaint"].get_list_adapters().values() for name in names}


@pytest.mark.slow
def test_the_cap_bounds_loaded_adapters_and_an_evicted_one_reloads(manager):
    first = generate(manager, (("m0", 1.0),))
    for index in range(1, 6):
        generate(manager, ((f"m{index}", 1.0),))
        assert len(manager.lora.loaded_names) <= 4 and len(adapters_in(manager)) <= 4
    assert "m0" not in manager.lora.loaded_names
    assert difference(generate(manager, (("m0", 1.0),)), first) == 0
    assert "m0" in manager.lora.loaded_names


def test_a_file_changed_on_disk_is_reloaded(manager, folder, tmp_path):
    changing = folder / "changing.safetensors"
    make_lora(manager.pipelines["inpaint"], changing, seed=30)
    before = generate(manager, (("changing", 1.0),))
    make_lora(manager.pipelines["inpaint"], changing, seed=31)
    after = generate(manager, (("changing", 1.0),))
    assert difference(before, after) > 10
    fresh = PipelineManager.load("demo", device="cpu")
    lora.install(fresh, folder)
    assert difference(generate(fresh, (("changing", 1.0),)), after) == 0


@pytest.mark.parametrize("name, message", [
    ("pickled", "LoRA 'pickled': only .safetensors files are loaded"),
    ("sdxl_shaped", "LoRA file sdxl_shaped.safetensors: made for another base model .* width 2048, "
                    "this model's layer has 64"),
    ("truncated", "LoRA file truncated.safetensors: not a readable .safetensors file, perhaps truncated"),
    ("unknown_keys", "LoRA file unknown_keys.safetensors: key 'lora_unet_mystery_layer.lora_down.weight' "
                     "names no layer"),
    ("nobody", "LoRA 'nobody' is not in the LoRA folder"),
    ("kohya-a", r"LoRA 'kohya-a' is not in the LoRA folder .*; did you mean 'kohya_a'\?"),
])
def test_bad_loras_are_refused_and_leave_the_state_as_it_was(manager, name, message):
    with_a = generate(manager, (("kohya_a", 1.0),))
    loaded = manager.lora.loaded_names
    with pytest.raises(ValueError, match=message):
        generate(manager, (("kohya_a", 1.0), (name, 1.0)))
    assert manager.lora.loaded_names == loaded
    assert difference(generate(manager, (("kohya_a", 1.0),)), with_a) == 0


def test_fusing_a_repeated_set_keeps_the_output_and_unfusing_restores_the_base(folder):
    fused = PipelineManager.load("demo", device="cpu")
    adapters = lora.install(fused, folder, fuse=True)
    base = generate(fused)
    unfused_run = generate(fused, (("kohya_a", 0.8), ("peft_b", 0.5)))
    fused_run = generate(fused, (("kohya_a", 0.8), ("peft_b", 0.5)))  # the same set again: fused now
    assert adapters._fused_set is not None
    assert difference(fused_run, unfused_run) <= 2
    assert difference(generate(fused), base) <= 1
    assert adapters._fused_set is None


def test_infotext_keeps_the_tags_and_writes_lora_hashes(folder, tmp_path):
    from models.infotext import parse_infotext
    from service.studio import StudioService

    manager = PipelineManager.load("demo", device="cpu")
    service = StudioService(manager, tmp_path, [lora.Lora(folder)])
    result = service.run("txt2img", {"prompt": "a cat <lora:kohya_a:0.5> <lora:peft_b>", "steps": 2, "width": 64,
                                     "height": 64})
    prompt, _, parameters = parse_infotext(result.infotexts[0])
    assert prompt == "a cat <lora:kohya_a:0.5> <lora:peft_b>"
    hashes = {name: addnet_hash(folder / f"{name}.safetensors")[:12] for name in ("kohya_a", "peft_b")}
    assert parameters["Lora hashes"] == f"kohya_a: {hashes['kohya_a']}, peft_b: {hashes['peft_b']}"
    assert '"kohya_a: ' in result.infotexts[0]  # quoted as A1111 writes it
