"""LoRA training in the app: the objective (epsilon, v-prediction, Min-SNR; the demo model's training
uses the same code), a short run through gradio_client on the launched app (a kohya file with its ss_* metadata,
loaded by our LoRA extension and by plain diffusers, usable at once, the base pixels unchanged), interrupt and
resume, captions from .txt files and zips, and bad input named."""

from __future__ import annotations

import io
import json
import threading
import zipfile

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image, ImageDraw
from safetensors import safe_open

from extensions.lora import Lora
from extensions.train import Train
from extensions.train.dataset import training_set
from extensions.train.objective import diffusion_loss, snr_weights, target
from models.manager import PipelineManager
from service.studio import StudioService

YELLOW = (240, 210, 30)


def circles(folder, count: int = 4, caption: str | None = None) -> list[str]:
    """`count` yellow circles on white, 64 px; the first one with a caption file when `caption` is given."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for index in range(count):
        image = Image.new("RGB", (64, 64), "white")
        radius = int(rng.integers(12, 22))
        x, y = rng.integers(radius + 2, 62 - radius, 2)
        ImageDraw.Draw(image).ellipse([x - radius, y - radius, x + radius, y + radius], fill=YELLOW)
        image.save(folder / f"circle{index}.png")
        files.append(str(folder / f"circle{index}.png"))
    if caption is not None:
        (folder / "circle0.txt").write_text(caption)
        files.append(str(folder / "circle0.txt"))
    return files


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    (folder / "Lora").mkdir()
    return StudioService(PipelineManager.load("demo", device="cpu"), folder / "outputs",
                         [Lora(folder / "Lora"), Train(folder / "Lora", folder / "outputs" / "training")])


def pixels(generation) -> np.ndarray:
    return np.asarray(Image.open(generation.files[0]).convert("RGB"), dtype=int)


# -- the objective -----------------------------------------------------------------------------------------


def test_the_objective_follows_the_scheduler_and_min_snr():
    latents, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    timesteps = torch.tensor([10, 500, 990])
    epsilon = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    velocity = DDPMScheduler.from_config(epsilon.config, prediction_type="v_prediction")
    assert torch.equal(target(epsilon, latents, noise, timesteps), noise)
    assert torch.allclose(target(velocity, latents, noise, timesteps), velocity.get_velocity(latents, noise, timesteps))
    snr = epsilon.alphas_cumprod[timesteps] / (1 - epsilon.alphas_cumprod[timesteps])
    assert torch.allclose(snr_weights(epsilon, timesteps, 5.0), snr.clamp(max=5) / snr)
    assert torch.allclose(snr_weights(velocity, timesteps, 5.0), snr.clamp(max=5) / (snr + 1))
    prediction = noise + 0.1
    assert torch.isclose(diffusion_loss(epsilon, prediction, latents, noise, timesteps), torch.tensor(0.01))
    with pytest.raises(ValueError, match="prediction type 'sample' cannot be trained here"):
        target(DDPMScheduler.from_config(epsilon.config, prediction_type="sample"), latents, noise, timesteps)


def test_the_demo_models_training_uses_the_same_objective():
    from training.train_unet import NOISE_SCHEDULER, epsilon_loss

    prediction, noise = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    timesteps = torch.tensor([3, 300, 600, 999])
    alphas = NOISE_SCHEDULER.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    expected = ((snr.clamp(min=0.25, max=5.0) / snr) * ((prediction - noise) ** 2).mean(dim=(1, 2, 3))).mean()
    assert torch.isclose(epsilon_loss(prediction, noise, timesteps), expected)


# -- a run through gradio_client on the app ------------------------------------------------------------------


def test_train_lora_through_gradio_client_then_use_it(app_server, client, tmp_path):
    from diffusers import StableDiffusionInpaintPipeline
    from gradio_client import handle_file

    from tests.conftest import DEMO

    service = app_server[1]
    fields = dict(prompt="a sks circle", seed=3, steps=4, width=64, height=64)
    before = pixels(service.run("txt2img", fields))
    files = circles(tmp_path / "set", caption="a sks circle, yellow")
    lora_file = None
    try:
        name, lora_file, loss = client.predict(
            images=[handle_file(path) for path in files], instance_prompt="a sks circle", name="sks-circle",
            steps=6, rank=4, learning_rate=1e-3, api_name="/train_lora")
        assert name == "sks-circle" and np.isfinite(loss)
        saved = service.extension("lora").library.resolve("sks-circle")
        with safe_open(str(saved), "pt") as file:
            meta, keys = file.metadata(), list(file.keys())
        assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "4.0" and meta["ss_steps"] == "6"
        assert meta["ss_resolution"] == "(64, 64)" and meta["ss_num_train_images"] == "4"
        assert meta["ss_sd_model_hash"] == service.manager.model_hash and meta["ss_base_model_version"] == "sd_v1"
        assert json.loads(meta["ss_tag_frequency"]) == {"sks-circle": {"a sks circle": 4, "yellow": 1}}
        assert any(key.startswith("lora_unet_") and key.endswith(".lora_down.weight") for key in keys)
        assert sum(key.endswith(".alpha") for key in keys) * 3 == len(keys)
        assert np.array_equal(pixels(service.run("txt2img", fields)), before), "the base weights are unchanged"
        used = service.run("txt2img", {**fields, "prompt": "a sks circle <lora:sks-circle:1>"})
        assert "Lora hashes" in used.infotexts[0] and np.abs(pixels(used) - before).mean() > 0.5
        plain = StableDiffusionInpaintPipeline.from_pretrained(DEMO, safety_checker=None)
        plain.load_lora_weights(str(saved.parent), weight_name=saved.name)  # diffusers reads kohya's format too
        assert plain.get_list_adapters()["unet"]
    finally:
        if lora_file is not None:
            service.extension("lora").library.resolve("sks-circle").unlink()


# -- interrupt and resume ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_interrupt_keeps_a_checkpoint_and_resume_continues_from_it(studio, tmp_path):
    train = studio.extension("train")
    files = circles(tmp_path / "set")
    settings = dict(steps=40, rank=2, learning_rate=1e-3)

    def stop_at_five(done: int, total: int) -> None:
        if done >= 5:
            studio.interrupt()

    first = train.train(files, "a sks circle", "resumable", on_step=stop_at_five, **settings)
    assert first.interrupted and 5 <= first.steps < 40 and first.file.exists()
    state = json.loads((train.work_folder / "resumable" / "state.json").read_text())
    assert state["step"] == first.steps
    with pytest.raises(ValueError, match="name: a LoRA 'resumable' exists in the LoRA folder; choose another name, "
                                         "or resume its run"):
        train.train(files, "a sks circle", "resumable", **settings)
    with pytest.raises(ValueError, match="resume: the run of .resumable. was started with alpha 2.0, rank 2; "
                                         "resume it with the same"):
        train.train(files, "a sks circle", "resumable", resume=True, **{**settings, "rank": 3})
    # the interrupted LoRA is usable at once: the LoRA extension loads it over the very layers the run trains
    studio.run("txt2img", dict(prompt="a sks circle <lora:resumable:1>", steps=2, width=64, height=64))
    reported = []
    second = train.train(files, "a sks circle", "resumable", resume=True,
                         on_step=lambda done, total: reported.append(done), **settings)
    assert not second.interrupted and second.steps == 40 and min(reported) > first.steps
    assert not (train.work_folder / "resumable").exists(), "a finished run leaves nothing to resume"


def test_cross_attention_layers_train_only_their_keys_and_values(studio, tmp_path):
    """Custom Diffusion's choice: the file holds cross-attention's key and value factors alone, says so in its
    metadata, and acts through the LoRA extension."""
    outcome = studio.extension("train").train(circles(tmp_path / "set", 2), "a sks circle", "keys-values", steps=3,
                                              layers="cross_attention", learning_rate=1e-2)
    with safe_open(str(outcome.file), "pt") as lora:
        keys, meta = set(lora.keys()), lora.metadata()
    assert keys and all("_attn2_to_k." in key or "_attn2_to_v." in key for key in keys), sorted(keys)[:4]
    assert json.loads(meta["ss_network_args"]) == {"layers": "cross_attention"}
    fields = dict(prompt="a sks circle", seed=2, steps=2, width=64, height=64)
    with_lora = pixels(studio.run("txt2img", {**fields, "prompt": "a sks circle <lora:keys-values:1>"}))
    assert np.abs(with_lora - pixels(studio.run("txt2img", fields))).max() > 0


def test_a_seed_repeats_a_run_exactly_whatever_ran_before(studio, tmp_path):
    train, files = studio.extension("train"), circles(tmp_path / "set", 2)

    def trained(name: str) -> dict:
        with safe_open(str(train.train(files, "a sks circle", name, steps=2, seed=7).file), "pt") as lora:
            return {key: lora.get_tensor(key) for key in lora.keys()}

    first = trained("seeded-a")
    torch.randn(1000)  # the process's own random state moves on, as generations and other runs move it
    second = trained("seeded-b")
    assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


# -- inputs ------------------------------------------------------------------------------------------------


def test_captions_from_txt_files_and_a_zip(tmp_path):
    files = circles(tmp_path / "set", count=2, caption="a sks circle, on white")
    examples = training_set(files, "a thing", 32)
    assert [example.caption for example in examples] == ["a sks circle, on white", "a thing"]
    assert all(example.image.size == (32, 32) for example in examples)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in files:
            bundle.write(path, f"../../outside/{path.rsplit('/', 1)[-1]}")  # names are read, never extracted
        bundle.writestr("__MACOSX/._circle0.png", b"resource fork")
    (tmp_path / "set.zip").write_bytes(archive.getvalue())
    zipped = training_set([str(tmp_path / "set.zip")], "a thing", 32)
    assert [example.caption for example in zipped] == ["a sks circle, on white", "a thing"]
    assert not (tmp_path / "outside").exists()


def test_a_zip_is_read_one_member_at_a_time(tmp_path):
    """Six members of 32 MB zeros (200 KB zipped) once went into memory together before the first was decoded:
    now one is, and the first that is no image ends the reading."""
    import tracemalloc

    archive = tmp_path / "zeros.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for index in range(6):
            bundle.writestr(f"{index}.png", bytes(32 * 2**20))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"images: '0.png' is not a readable image"):
            training_set([str(archive)], "a thing", 32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80 * 2**20, f"{peak / 2**20:.0f} MB held at once"


@pytest.mark.parametrize("images, options, message", [
    ([], {}, "images: add the images to train on"),
    (["notes.pdf"], {}, "images: 'notes.pdf' are not images"),
    (["broken.png"], {}, "images: 'broken.png' is not a readable image"),
    (["circle"], {"steps": 0}, "steps must be a whole number from 1 to 10000, got 0"),
    (["circle"], {"rank": 4096}, "rank must be a whole number from 1 to"),
    (["circle"], {"name": "../../escape"}, "name must be 1 to 64 letters, digits"),
    (["circle"], {"name": "sub/dir"}, "no folders), got 'sub/dir'"),
    (["circle"], {"name": "taken"}, "name: a LoRA 'taken' exists in the LoRA folder"),
    (["circle"], {"resume": True}, "resume: there is no run of 'fresh' to resume"),
    (["circle"], {"prior_preservation": True}, "class_prompt: prior preservation needs a class prompt"),
    (["circle"], {"learning_rate": 5}, "learning_rate must be from 1e-07 to 1.0, got 5"),
    (["circle"], {"layers": "mlp"}, "layers must be one of attention, cross_attention, got 'mlp'"),
])
def test_bad_input_is_named(studio, tmp_path, images, options, message):
    train = studio.extension("train")
    (train.lora_folder / "taken.safetensors").write_bytes(b"")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    paths = [circles(tmp_path / "set", 1)[0] if image == "circle" else str(tmp_path / image) for image in images]
    options = {"name": "fresh", **options}
    with pytest.raises(ValueError) as error:
        train.train(paths, "a sks circle", **options)
    assert message in str(error.value)
    assert not (train.lora_folder / "fresh.safetensors").exists()


def test_a_run_waits_for_the_running_generation_in_the_same_queue(studio, tmp_path):
    """Training is a job of the queue: a generation submitted first finishes first, and its pixels are what the
    model gives without any adapter."""
    files = circles(tmp_path / "set", 2)
    fields = dict(prompt="a red circle", seed=1, steps=12, width=64, height=64)
    alone = pixels(studio.run("txt2img", fields))
    job = studio.submit(*studio.build("txt2img", fields))
    order = []
    worker = threading.Thread(target=lambda: order.append(
        studio.extension("train").train(files, "a sks circle", "queued", steps=3, rank=2)))
    worker.start()
    job.outcome()
    order.insert(0, "generation")
    worker.join(60)
    assert order[0] == "generation" and order[1].steps == 3
    assert np.array_equal(np.asarray(Image.open(job.outcome().files[0]).convert("RGB"), dtype=int), alone)
