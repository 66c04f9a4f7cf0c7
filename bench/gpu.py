"""The prepared GPU run, in one go (under 10 minutes on an H100/H200-class card): SD 1.5's architecture
(random weights built from the shipped configs, no download), 512x512, fp16, 20 steps, Euler a.

    python -m bench.gpu [--out DIR] [--budget SECONDS] [--smoke]
    python -m bench.gpu --page DIR/gpu.json     # the table of a run into docs/benchmarks.md

On the lent GPU machine (library `device`; it has torch, transformers, peft and accelerate, not diffusers), with the
wheels in the ignored folder .whl (`pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
manylinux2014_x86_64 -d .whl diffusers==0.42.1 transformers==5.23.0 peft==0.21.2`, from outside the checkout, then
moved in), run with carry [".whl"]:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 -m bench.gpu --out $OUT

Sections, each recorded as it ends (a failing one records its error and the run goes on; when the budget runs
low the rest are skipped and say so):
- device: GPU, torch, xformers' probe;
- eager: the manager's denoising it/s at batch 1, 4 and 8 against plain diffusers on the same weights, peak memory;
- sdxl: SDXL's architecture (random weights from models/configs/sdxl, built on the card) at 1024x1024, batch 1:
  the manager's it/s against plain diffusers' SDXL pipeline on the same modules, and peak memory;
- compiled: `--compile` (torch.compile's default mode): the start's compile and warm-up, it/s at batch 1, 4 and 8,
  and LoRA switches through the hot-swapped slot: recompiles (must be 0) and a switch's cost; then, last, CUDA
  graphs' reduce-overhead mode at batch 1, to choose the mode;
- controlnet: the cost of each ControlNet unit;
- offload: `--offload model` and `sequential`, their peak memory and speed;
- training: a LoRA's training steps per second and peak memory, with and without gradient checkpointing;
- out of memory: a job too big for a capped card, what the manager did, and that the next job works with the
  memory given back.
It writes DIR/gpu.json and DIR/gpu.md (the table, with the GPU's name and the date). `--smoke` runs the same code
on the CPU with the demo model at 64 px (the compile with dynamo's eager backend), to check the script itself.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
import traceback
from pathlib import Path

import torch

from models.request import GenerationRequest

ROOT = Path(__file__).resolve().parent.parent
STEPS, BATCHES = 20, (1, 4, 8)
BENCHMARKS_PAGE = ROOT / "docs" / "benchmarks.md"
PAGE_MARKERS = ("<!-- gpu-bench:begin -->", "<!-- gpu-bench:end -->")  # where the page holds the table


class Run:
    """The sections' results, written after each one, and the time left."""

    def __init__(self, out: Path, budget: float, smoke: bool):
        self.out, self.deadline, self.smoke = out, time.monotonic() + budget, smoke
        self.cuda = torch.cuda.is_available() and not smoke
        self.device = "cuda" if self.cuda else "cpu"
        self.size = 64 if smoke else 512
        self.steps = 3 if smoke else STEPS
        self.results: dict = {"date": datetime.date.today().isoformat(), "smoke": smoke}
        out.mkdir(parents=True, exist_ok=True)

    def section(self, name: str, needs: float, work) -> None:
        left = self.deadline - time.monotonic()
        if left < needs:
            self.results[name] = {"skipped": f"{left:.0f} s left, needs about {needs:.0f} s"}
        else:
            started = time.monotonic()
            try:
                self.results[name] = work()
            except Exception as error:  # noqa: BLE001 - one section's failure must not lose the others' figures
                traceback.print_exc()
                self.results[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
            self.results[name]["seconds"] = round(time.monotonic() - started, 1)
        print(f"gpu  {name}: {json.dumps(self.results[name])}", flush=True)
        (self.out / "gpu.json").write_text(json.dumps(self.results, indent=1))
        (self.out / "gpu.md").write_text(table(self.results))

    def request(self, batch: int = 1, **extra) -> GenerationRequest:
        return GenerationRequest("txt2img", "a photo of a cat", width=self.size, height=self.size, steps=self.steps,
                                 seed=1, batch_size=batch, sampler="Euler a", **extra)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None


# -- timing ----------------------------------------------------------------------------------------------------


def loop_rate(generate, rounds: int = 3) -> dict:
    """Denoising it/s as diffusers' progress bar counts them (step ends after the first, over their time; the text
    encoder and the VAE are not in it), and the whole call's seconds; medians over `rounds` after one warm-up."""
    rates, seconds = [], []
    for round_ in range(rounds + 1):
        stamps: list[float] = []

        def on_step(*_, stamps=stamps):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

        started = time.perf_counter()
        generate(on_step)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if round_:
            rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
            seconds.append(time.perf_counter() - started)
    return {"it_s": round(statistics.median(rates), 2), "image_s": round(statistics.median(seconds), 3)}


def manager_rate(manager, request, rounds: int = 3) -> dict:
    return loop_rate(lambda on_step: manager.generate(request, on_step), rounds)


def plain_rate(manager, run: Run, batch: int = 1) -> dict:
    """The same call in plain diffusers over the same modules: what its users write."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline

    shared = manager.pipelines["txt2img"]
    inpainting = shared.unet.config.in_channels == 9
    pipe = (StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline)(**shared.components)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    size = run.size
    extra = {"image": torch.zeros(1, 3, size, size), "mask_image": torch.ones(1, 1, size, size),
             "strength": 1.0} if inpainting else {}

    def generate(on_step):
        pipe(prompt=["a photo of a cat"] * batch, width=size, height=size, num_inference_steps=run.steps,
             generator=torch.Generator("cpu").manual_seed(1), callback_on_step_end=lambda p, i, t, d: on_step() or d,
             **extra)

    return loop_rate(generate)


# -- the sections ----------------------------------------------------------------------------------------------


def device_facts(run: Run, manager) -> dict:
    from models.device import xformers_unusable

    name = torch.cuda.get_device_name() if run.cuda else "CPU (smoke run)"
    why_not = xformers_unusable(manager.runtime.device, manager.runtime.dtype)
    return {"gpu": name, "torch": torch.__version__, "runtime": manager.runtime.describe(),
            "xformers_probe": "passed" if why_not is None else why_not}


def eager(run: Run, manager) -> dict:
    result = {"plain_batch_1": plain_rate(manager, run)}
    for batch in BATCHES:
        run.reset_peak()
        result[f"batch_{batch}"] = {**manager_rate(manager, run.request(batch)), "peak_gib": run.peak_gib()}
    result["manager_over_plain"] = round(result["batch_1"]["it_s"] / result["plain_batch_1"]["it_s"], 3)
    return result


def sdxl(run: Run) -> dict:
    """SDXL at its native 1024 px (the smoke run: the tiny SDXL of testing/ at 64 px), through the manager and
    through plain diffusers over the same modules."""
    from diffusers import EulerAncestralDiscreteScheduler

    from models import loading
    from models.device import resolve_runtime
    from models.manager import PipelineManager

    base = _sdxl_pipeline(run)
    manager = PipelineManager(base, loading.ModelSource("folder", "sdxl-random", "sdxl-random"),
                              resolve_runtime(run.device))
    size = 64 if run.smoke else 1024
    request = GenerationRequest("txt2img", "a photo of a cat", width=size, height=size, steps=run.steps, seed=1,
                                sampler="Euler a")
    run.reset_peak()
    ours = {**manager_rate(manager, request, rounds=2), "peak_gib": run.peak_gib()}
    shared = manager.pipelines["txt2img"]
    pipe = type(shared)(**shared.components, add_watermarker=False)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def generate(on_step):
        pipe(prompt="a photo of a cat", negative_prompt="", width=size, height=size, num_inference_steps=run.steps,
             generator=torch.Generator("cpu").manual_seed(1), callback_on_step_end=lambda p, i, t, d: on_step() or d)

    plain = loop_rate(generate, rounds=2)
    manager = base = pipe = shared = None  # the card's memory back for the next sections
    if run.cuda:
        torch.cuda.empty_cache()
    return {"size": size, "manager": ours, "plain": plain, "manager_over_plain": round(ours["it_s"] / plain["it_s"], 3)}


def _sdxl_pipeline(run: Run):
    """SDXL's base model with random weights: its real layout from the shipped configs, made on the device (a
    minute of a CPU's time saved), in float16 there."""
    import json

    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from models import families

    if run.smoke:
        from testing.family_models import build

        return StableDiffusionXLPipeline.from_pretrained(build("sdxl", Path(tempfile.mkdtemp()) / "sdxl"))
    configs = families.CONFIGS_DIR / "sdxl"

    def encoder(part: str, model):
        config = json.loads((configs / part / "config.json").read_text())
        return model(CLIPTextConfig(**{k: v for k, v in config.items() if k not in ("architectures", "model_type")}))

    with torch.device(run.device):
        parts = {"unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")),
                 "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")),
                 "text_encoder": encoder("text_encoder", CLIPTextModel),
                 "text_encoder_2": encoder("text_encoder_2", CLIPTextModelWithProjection)}
    for module in parts.values():
        module.to(torch.float16)
    scheduler = EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(configs / "scheduler"))
    return StableDiffusionXLPipeline(**parts, scheduler=scheduler, **families.tokenizers(families.SDXL),
                                     add_watermarker=False)


def compiled(run: Run, model: str, lora_folder: Path, mode: str | None, whole_warm_up: bool) -> dict:
    """A manager as `--compile` makes it (LoRA through the hot-swapped slot, warmed up), then LoRA switches under
    `error_on_recompile`. Without `whole_warm_up`, only batch 1 is compiled and measured: a second mode's figure
    for choosing the mode, in the time left."""
    from extensions import lora
    from models.manager import PipelineManager

    torch._dynamo.reset()
    manager = PipelineManager.load(model, device=run.device)
    lora.install(manager, lora_folder, compiled_rank=32)
    started = time.perf_counter()
    manager.compile_unet(backend="eager" if run.smoke else "inductor", mode=None if run.smoke else mode)
    if whole_warm_up:  # what the app's start with --compile costs: every batch size's graphs
        manager.warm_up()
    else:
        manager.generate(run.request())
    result: dict = {"warm_up_s" if whole_warm_up else "compile_batch_1_s": round(time.perf_counter() - started, 1)}
    graphs = torch._dynamo.utils.counters["stats"]
    for batch in BATCHES if whole_warm_up else (1,):
        run.reset_peak()
        result[f"batch_{batch}"] = {**manager_rate(manager, run.request(batch)), "peak_gib": run.peak_gib()}
    # LoRA switches at batch 1: the same set each time against a new set each time
    sets = [(("a", 1.0),), (("b", 0.8),), (("a", 0.5), ("b", 0.5)), ()]
    for chosen in sets:  # loaded once (a load is not a switch)
        manager.generate(run.request(parts={"lora": chosen}))
    before = graphs["unique_graphs"]
    with torch._dynamo.config.patch(error_on_recompile=True):
        switching = iter(sets * 3)
        changing = loop_rate(lambda on_step: manager.generate(run.request(parts={"lora": next(switching)}), on_step),
                             rounds=8)
    switch = switch_seconds(manager, run, sets)
    result["lora"] = {"recompiles": graphs["unique_graphs"] - before, "new_set_each_time": changing,
                      "switch_ms": round(1000 * switch, 2),
                      "switch_share_of_generation": round(switch / result["batch_1"]["image_s"], 5)}
    return result


def switch_seconds(manager, run: Run, sets, rounds: int = 12) -> float:
    """A LoRA switch alone: what the extensions' configurers do when the set changes (the slot's weights written
    in place), timed to the end of the device's work."""
    pipe = manager.pipelines["txt2img"]
    times = []
    with manager.lock:
        for index in range(rounds):
            request = run.request(parts={"lora": sets[index % len(sets)]})
            if run.cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            for configure in manager.configurers:
                configure(pipe, request)
            if run.cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def controlnet(run: Run, manager, folder: Path) -> dict:
    from extensions.controlnet.extension import ControlNet
    from service.studio import StudioService
    from testing.controlnet_files import controlnet_for

    pipe = manager.pipelines["txt2img"]
    for name, seed in (("cn_a", 1), ("cn_b", 2)):
        controlnet_for(pipe.unet, seed=seed, vae_scale_factor=pipe.vae_scale_factor).save_pretrained(folder / name)
    service = StudioService(manager, folder / "outputs", [ControlNet(folder)])
    from PIL import Image

    picture = Image.new("RGB", (run.size, run.size), "white")
    units = [{"enabled": True, "module": "none", "model": name, "image": picture} for name in ("cn_a", "cn_b")]
    result = {}
    for count in (0, 1, 2):
        fields = {"prompt": "a photo of a cat", "width": run.size, "height": run.size, "steps": run.steps, "seed": 1,
                  "sampler": "Euler a", "controlnet_units": units[:count]}
        request, _ = service.build("txt2img", fields)
        run.reset_peak()
        result[f"units_{count}"] = {**manager_rate(service.manager, request), "peak_gib": run.peak_gib()}
    base = result["units_0"]["image_s"]
    result["per_unit_share"] = round((result["units_2"]["image_s"] / base - 1) / 2, 3)
    return result


def offload(run: Run, model: str) -> dict:
    from models.manager import PipelineManager

    result = {}
    for mode in ("model", "sequential") if run.cuda else ("model",):
        if run.cuda:
            torch.cuda.empty_cache()
        run.reset_peak()
        manager = PipelineManager.load(model, device=run.device, offload=mode)
        result[mode] = {**manager_rate(manager, run.request(), rounds=1 if mode == "sequential" else 3),
                        "peak_gib": run.peak_gib()}
        del manager
    return result


def training(run: Run, manager, folder: Path) -> dict:
    """The GPU figure of training: LoRA training steps per second (rank 8, batch 1, at the model's size) and the peak
    memory, with and without gradient checkpointing, through the Train extension."""
    from bench.train_lora import circles
    from extensions.lora import Lora
    from extensions.train import Train
    from service.studio import StudioService

    folder.mkdir(parents=True, exist_ok=True)
    service = StudioService(manager, folder / "outputs", [Lora(folder / "Lora"), Train(folder / "Lora", folder)])
    files = circles(folder, 4, run.size)
    steps, result = (3 if run.smoke else 30), {}
    for checkpointing in (False, True):
        run.reset_peak()
        started = time.perf_counter()
        service.extension("train").train(files, "a sks circle", f"gpu{int(checkpointing)}", steps=steps,
                                         resolution=run.size, gradient_checkpointing=checkpointing)
        result["checkpointing" if checkpointing else "plain"] = {
            "steps_s": round(steps / (time.perf_counter() - started), 2), "peak_gib": run.peak_gib()}
    return result


def out_of_memory(run: Run, manager) -> dict:
    """The card capped to what the weights take plus 3 GiB (a small card): 1024x1024 at batch 8 does not fit. The
    manager's answer, then a 512 px job, and the memory afterwards."""
    from models.manager import OutOfMemory

    big = run.request(8).replace(width=2 * run.size, height=2 * run.size)
    result: dict = {}
    if run.cuda:
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, (base + 3 * 2**30) / total))
        result["cap_gib"] = round((base + 3 * 2**30) / 2**30, 2)
    try:
        try:
            images = manager.generate(big).images
            result["too_big"] = f"fitted ({len(images)} images)"
        except OutOfMemory as error:
            result["too_big"] = f"refused: {error}"
        result["next_job"] = f"{len(manager.generate(run.request()).images)} image"
        if run.cuda:
            torch.cuda.synchronize()
            result["allocated_after_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
            result["allocated_before_gib"] = round(base / 2**30, 2)
    finally:
        if run.cuda:
            torch.cuda.set_per_process_memory_fraction(1.0)
    return result


# -- the report ------------------------------------------------------------------------------------------------


def table(results: dict) -> str:
    """The benchmarks page's table: one line a figure."""
    device = results.get("device", {})
    lines = [f"GPU run of `python -m bench.gpu` on {device.get('gpu', '?')} ({results['date']}, torch "
             f"{device.get('torch', '?')}, {device.get('runtime', '?')}; xformers: "
             f"{device.get('xformers_probe', '?')})",
             "", "| what | figure |", "| --- | --- |"]

    def add(label: str, value) -> None:
        lines.append(f"| {label} | {value} |")

    for name in ("eager", "sdxl", "compiled_default", "compiled_reduce_overhead", "controlnet", "offload", "training",
                 "out_of_memory"):
        part = results.get(name)
        if part is None:
            continue
        if "skipped" in part or "error" in part:
            add(name, part.get("skipped") or part.get("error"))
            continue
        if name == "eager":
            add("plain diffusers, batch 1", f"{part['plain_batch_1']['it_s']} it/s")
        for batch in BATCHES:
            if f"batch_{batch}" in part:
                figures = part[f"batch_{batch}"]
                add(f"{name}, batch {batch}", f"{figures['it_s']} it/s, {figures['image_s']} s a call"
                                              + (f", peak {figures['peak_gib']} GiB" if figures["peak_gib"] else ""))
        if name == "eager":
            add("manager / plain diffusers (batch 1)", f"{part['manager_over_plain']}x")
        if name == "sdxl":
            ours = part["manager"]
            add(f"SDXL {part['size']}x{part['size']}, batch 1", f"{ours['it_s']} it/s, {ours['image_s']} s a call"
                                                              + (f", peak {ours['peak_gib']} GiB" if ours["peak_gib"]
                                                                 else ""))
            add("SDXL: manager / plain diffusers", f"{part['manager_over_plain']}x ({part['plain']['it_s']} it/s "
                                                   "plain)")
        if name.startswith("compiled"):
            if "warm_up_s" in part:
                add(f"{name}: the start's compile and warm-up (every batch size)", f"{part['warm_up_s']} s")
            else:
                add(f"{name}: compile (batch 1 only)", f"{part['compile_batch_1_s']} s")
            lora = part["lora"]
            add(f"{name}: LoRA switches", f"{lora['recompiles']} recompiles; a switch takes {lora['switch_ms']} ms, "
                                          f"{100 * lora['switch_share_of_generation']:.2f}% of a generation")
            if "eager" in results and "batch_1" in results["eager"]:
                add(f"{name} / plain diffusers (batch 1)",
                    f"{part['batch_1']['it_s'] / results['eager']['plain_batch_1']['it_s']:.2f}x")
        if name == "controlnet":
            for count in (0, 1, 2):
                add(f"ControlNet, {count} unit{'s' if count != 1 else ''}", f"{part[f'units_{count}']['it_s']} it/s")
            add("ControlNet, each unit's cost", f"{100 * part['per_unit_share']:.1f}% of a generation")
        if name == "offload":
            for mode, figures in part.items():
                if isinstance(figures, dict):
                    add(f"--offload {mode}", f"{figures['it_s']} it/s"
                                             + (f", peak {figures['peak_gib']} GiB" if figures["peak_gib"] else ""))
        if name == "training":
            for kind, figures in part.items():
                if isinstance(figures, dict):
                    add(f"LoRA training, rank 8, batch 1, {kind}", f"{figures['steps_s']} steps/s"
                                                                   + (f", peak {figures['peak_gib']} GiB"
                                                                      if figures["peak_gib"] else ""))
        if name == "out_of_memory":
            add("out of memory (1024 px, batch 8, card capped)", part["too_big"])
            add("the next job", f"{part['next_job']}; allocated {part.get('allocated_before_gib')} GiB before, "
                                f"{part.get('allocated_after_gib')} GiB after")
    return "\n".join(lines) + "\n"


def into_page(json_file: Path, page: Path = BENCHMARKS_PAGE) -> None:
    text = page.read_text()
    begin, end = PAGE_MARKERS
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{begin}\n{table(json.loads(json_file.read_text()))}{end}{tail}")


def main(out: Path, budget: float, smoke: bool) -> dict:
    from bench.sd15_random import cached
    from models.manager import PipelineManager
    from testing.lora_files import make_lora

    run = Run(out, budget, smoke)
    model = "demo" if smoke else str(cached(inpainting=False))
    manager = PipelineManager.load(model, device=run.device)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name, seed in (("a", 1), ("b", 2)):
            make_lora(manager.pipelines["txt2img"], folder / "Lora" / f"{name}.safetensors", seed=seed, rank=16)
        run.section("device", 0, lambda: device_facts(run, manager))
        run.section("eager", 30, lambda: eager(run, manager))
        run.section("sdxl", 90, lambda: sdxl(run))
        run.section("compiled_default", 150, lambda: compiled(run, model, folder / "Lora", None, True))
        run.section("controlnet", 30, lambda: controlnet(run, manager, folder / "ControlNet"))
        run.section("offload", 60, lambda: offload(run, model))
        run.section("training", 40, lambda: training(run, manager, folder / "training"))
        run.section("out_of_memory", 20, lambda: out_of_memory(run, manager))
        # the other figures first: this one only tells which compile mode the app should use
        run.section("compiled_reduce_overhead", 120,
                    lambda: compiled(run, model, folder / "Lora", "reduce-overhead", False))
    print(table(run.results))
    return run.results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--budget", type=float, default=540, help="seconds; sections that would not fit are skipped")
    parser.add_argument("--smoke", action="store_true", help="the demo model on the CPU: checks the script")
    parser.add_argument("--page", type=Path, help="put this run's table (gpu.json) into docs/benchmarks.md")
    args = parser.parse_args()
    if args.page:
        into_page(args.page)
    elif not args.smoke and not torch.cuda.is_available():
        print("bench.gpu: no CUDA device here, so nothing to measure (SD 1.5 at 512 px would take hours on a CPU). "
              "Run it on a GPU machine, or `python -m bench.gpu --smoke` to check the script on the CPU.")
    else:
        main(args.out, args.budget, args.smoke)
