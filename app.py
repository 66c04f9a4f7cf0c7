"""SD Studio: txt2img, img2img and inpaint over one shared Stable Diffusion 1.x model.

    python app.py [--model ID_OR_PATH] [--host HOST] [--port PORT] [--device auto|cuda|mps|cpu] ...

Every option can also be set by an environment variable (for Hugging Face Spaces): see ENVIRONMENT below, or
`python app.py --help`.
This file is also the Spaces `app_file`.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("sd-studio")

# option -> (environment variable, default, what it is: for --help)
ENVIRONMENT = {
    "model": ("SD_MODEL", "stable-diffusion-v1-5/stable-diffusion-inpainting",
        "a Hub id, a local diffusers folder, a single-file .safetensors checkpoint (A1111 format), or demo"),
    "ckpt_dir": ("SD_CKPT_DIR", str(ROOT / "models" / "Stable-diffusion"),
        "the checkpoints the model dropdown and sd_model_checkpoint may switch to"),
    "upscaler_dir": ("SD_UPSCALER_DIR", str(ROOT / "models" / "upscale_models"),
        "upscaler models (ESRGAN and the others spandrel detects), .safetensors"),
    "vae_dir": ("SD_VAE_DIR", str(ROOT / "models" / "VAE"),
        "VAEs a request may use instead of the model's own (A1111's SD VAE)"),
    "host": ("SD_HOST", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        "address to listen on (0.0.0.0 to serve your network)"),
    "port": ("SD_PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"),
        "port"),
    "device": ("SD_DEVICE", "auto",
        "auto (CUDA with fp16, then MPS, else CPU), cuda, mps or cpu"),
    "offload": ("SD_OFFLOAD", "none",
        "for 4-8 GB cards: model (each part visits the GPU while it runs) or sequential (layer by layer); none"),
    "lora_dir": ("SD_LORA_DIR", str(ROOT / "models" / "Lora"),
        "LoRA library (subfolders allowed)"),
    "lora_cap": ("SD_LORA_CAP", "16",
        "LoRA adapters kept loaded; the least recently used one goes first"),
    "lora_fuse": ("SD_LORA_FUSE", "off",
        "on: fuse the active LoRA set into the weights when the same set comes again"),
    "lora_rank": ("SD_LORA_RANK", "64",
        "with --compile: the most LoRA rank used at once (the hot-swapped slot's rank)"),
    "compile": ("SD_COMPILE", "off",
        "on: torch.compile the U-Net (worth it on CUDA), warmed up at start, so the start waits for the compile"),
    "controlnet_dir": ("SD_CONTROLNET_DIR", str(ROOT / "models" / "ControlNet"),
        "ControlNet library (diffusers folders and single .safetensors files)"),
    "controlnet_cap": ("SD_CONTROLNET_CAP", "3",
        "ControlNets kept loaded; the least recently used one goes first"),
    "controlnet_units": ("SD_CONTROLNET_UNITS", "3",
        "ControlNet units per request (and per tab in the UI)"),
    "annotator_dir": ("SD_ANNOTATOR_DIR", str(ROOT / "models" / "annotators"),
        "preprocessor weights, in the file layout of the Hub repositories they come from"),
    "embeddings_dir": ("SD_EMBEDDINGS_DIR", str(ROOT / "models" / "embeddings"),
        "textual-inversion embeddings (.safetensors), named in prompts by their file stems"),
    "output_dir": ("SD_OUTPUT_DIR", str(ROOT / "outputs"),
        "where images are saved"),
    "queue_size": ("SD_QUEUE_SIZE", "16",
        "jobs that may wait; when full, new ones are refused at once"),
    "max_batch": ("SD_MAX_BATCH", "4",
        "the most images compatible jobs make in one diffusers call (1: no batching)"),
    "batch_wait_ms": ("SD_BATCH_WAIT_MS", "10",
        "how long a job that could take more waits for compatible ones"),
    "live_preview": ("SD_LIVE_PREVIEW", "approx",
        "approx (latents to RGB without the VAE), taesd (a tiny VAE) or off"),
    "preview_every": ("SD_PREVIEW_EVERY", "5",
        "steps between live previews"),
    "taesd": ("SD_TAESD", "madebyollin/taesd",
        "the tiny VAE for taesd previews: a diffusers folder or a Hub id"),
    "backend": ("SD_BACKEND", "local",
        "local (the model in this process) or ray (Ray Serve replicas, each with its own copy)"),
    "replicas": ("SD_REPLICAS", "1",
        "with --backend ray: how many replicas"),
    "ray_address": ("SD_RAY_ADDRESS", "",
        "with --backend ray: a running Ray cluster (ray://head:10001); empty: start a local one"),
    "api": ("SD_API", "off",
        "on: serve AUTOMATIC1111's REST API (/sdapi/v1) beside the UI"),
    "api_auth": ("SD_API_AUTH", "",
        "user:password, HTTP basic credentials for the REST API (default: --auth's)"),
    "auth": ("SD_AUTH", "",
        "user:password, a login for the UI, gradio_client and (without --api-auth) the REST API"),
}


SWITCHES = ("lora_fuse", "compile", "api")  # the on/off options
BACKENDS = ("local", "ray")
PREVIEW_MODES = ("approx", "taesd", "off")  # as models.previews.PREVIEW_MODES (not imported here: it loads torch)
OFFLOAD_MODES = ("none", "model", "sequential")  # as models.device.OFFLOAD_MODES
SHUTDOWN_SECONDS = 3  # what open requests get on Ctrl+C before they are cancelled


@dataclass(frozen=True)
class AppConfig:
    model: str
    ckpt_dir: Path  # the checkpoints sd_model_checkpoint may switch to (besides demo and Hub ids)
    upscaler_dir: Path  # upscaler models (ESRGAN and the others spandrel detects), .safetensors
    vae_dir: Path  # VAEs a request may choose instead of the model's own (A1111's SD VAE)
    host: str
    port: int
    device: str
    offload: str  # "model" or "sequential": the weights live on the CPU and visit the GPU (cards of 4-8 GB)
    lora_dir: Path
    lora_cap: int  # LoRA adapters kept loaded; the least recently used one goes first
    lora_fuse: bool  # fuse the active LoRA set into the weights when the same set comes again
    lora_rank: int  # with --compile: the most LoRA rank used at once (the hot-swapped slot's rank)
    compile: bool  # torch.compile the U-Net (worth it on CUDA), warmed up at start: the start waits for the compile
    controlnet_dir: Path
    controlnet_cap: int  # ControlNets kept loaded; the least recently used one goes first
    controlnet_units: int  # ControlNet units per request (and per tab in the UI)
    annotator_dir: Path  # preprocessor weights, in the file layout of the Hub repositories they come from
    embeddings_dir: Path  # textual-inversion embeddings (.safetensors), named in prompts by their file stems
    output_dir: Path
    queue_size: int  # jobs that may wait
    max_batch: int  # the most images compatible jobs make in one diffusers call (1: no batching)
    batch_wait_ms: int  # how long a job that could take more waits for compatible ones
    live_preview: str  # "approx" (latents to RGB without the VAE), "taesd" (a tiny VAE) or "off"
    preview_every: int  # steps between live previews
    taesd: str  # the tiny VAE for taesd previews: a diffusers folder or a Hub id
    backend: str  # "local" (the in-process model) or "ray" (Ray Serve replicas, each with its own copy)
    replicas: int  # with --backend ray
    ray_address: str  # with --backend ray: a running Ray cluster (default: start a local one)
    api: bool  # serve AUTOMATIC1111's REST API (/sdapi/v1) beside the UI
    api_auth: tuple[str, str] | None  # HTTP basic credentials for the REST API (default: --auth's)
    auth: tuple[str, str] | None  # credentials for the UI, gradio_client and (without --api-auth) the REST API

    @property
    def rest_auth(self) -> tuple[str, str] | None:
        return self.api_auth or self.auth


def parse_config(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> AppConfig:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        description="SD Studio: txt2img, img2img and inpaint over one shared Stable Diffusion 1.x model. Every "
                    "option can also be set by its environment variable, shown in brackets.")
    for option, (variable, default, what) in ENVIRONMENT.items():
        # an on/off option given alone means on, as A1111's bare flags do (`--api` is `--api on`)
        bare = {"nargs": "?", "const": "on"} if option in SWITCHES else {}
        shown = f"{what} [{variable}" + (f"; default {default}]" if default else "]")
        parser.add_argument(f"--{option.replace('_', '-')}", default=environ.get(variable, default),
                            help=shown.replace("%", "%%"), **bare)  # argparse %-formats help
    args = parser.parse_args(argv)
    numbers = {}
    for option in ("port", "queue_size", "max_batch", "batch_wait_ms", "replicas", "preview_every", "lora_cap",
                   "lora_rank", "controlnet_cap", "controlnet_units"):
        value, least = getattr(args, option), 0 if option == "batch_wait_ms" else 1
        if not str(value).isdigit() or int(value) < least:
            parser.error(f"--{option.replace('_', '-')} must be a whole number of at least {least}, got {value!r}")
        numbers[option] = int(value)
    switches = {}
    for option in SWITCHES:
        value = str(getattr(args, option)).lower()
        if value not in ("on", "off", "1", "0", "true", "false"):
            parser.error(f"--{option.replace('_', '-')} must be on or off, got {getattr(args, option)!r}")
        switches[option] = value in ("on", "1", "true")
    if switches["lora_fuse"] and switches["compile"]:
        parser.error("--lora-fuse cannot be combined with --compile: the compiled U-Net's LoRA slot is hot-swapped")
    if args.offload not in OFFLOAD_MODES:
        parser.error(f"--offload must be one of {', '.join(OFFLOAD_MODES)}, got {args.offload!r}")
    if args.offload != "none" and switches["compile"]:
        parser.error("--offload cannot be combined with --compile: the hooks that move the weights break the graph")
    if args.backend not in BACKENDS:
        parser.error(f"--backend must be one of {', '.join(BACKENDS)}, got {args.backend!r}")
    if args.live_preview not in PREVIEW_MODES:
        parser.error(f"--live-preview must be one of {', '.join(PREVIEW_MODES)}, got {args.live_preview!r}")
    credentials = {}
    for option in ("api_auth", "auth"):
        value = str(getattr(args, option))
        if value and (":" not in value or not value.split(":", 1)[0] or not value.split(":", 1)[1]):
            parser.error(f"--{option.replace('_', '-')} must be user:password, got {value!r}")
        credentials[option] = tuple(value.split(":", 1)) if value else None
    return AppConfig(
        model=args.model, ckpt_dir=Path(args.ckpt_dir), upscaler_dir=Path(args.upscaler_dir),
        vae_dir=Path(args.vae_dir), host=args.host, device=args.device, offload=args.offload,
        lora_dir=Path(args.lora_dir), controlnet_dir=Path(args.controlnet_dir), annotator_dir=Path(args.annotator_dir),
        embeddings_dir=Path(args.embeddings_dir), output_dir=Path(args.output_dir), backend=args.backend,
        live_preview=args.live_preview, taesd=args.taesd,
        ray_address=args.ray_address, **numbers, **switches, **credentials,
    )


def build_app(config: AppConfig):
    """Load the model (or the demo model when offline) and build the UI; returns (blocks, service)."""
    # diffusers imports xformers whenever it is installed, and xformers then warns when its kernels were built for
    # another torch; whether it works is models.device's probe, and the system line says why it is not in use
    logging.getLogger("xformers").setLevel(logging.ERROR)
    from PIL import Image

    from extensions import create
    from models.checkpoints import checkpoint_names, resolve_checkpoint
    from models.limits import MAX_IMAGE_PIXELS
    from models.loading import identify
    from models.manager import PipelineManager, load_or_demo
    from models.zerogpu import on_zerogpu
    from service.studio import StudioService, with_settings
    from ui.layout import build_ui

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # Pillow's own bomb check, also for what Gradio decodes
    ray = config.backend == "ray"
    # With Ray the replicas generate; this copy, on the CPU, serves token counts, previews and the model's facts.
    manager, notice = load_or_demo(config.model, "cpu" if ray else config.device, "none" if ray else config.offload)
    service = StudioService(manager, config.output_dir, create(config), notice=notice,
                            after_install=lambda manager: with_settings(manager, config, compile_unet=not ray),
                            queue_size=config.queue_size, direct=on_zerogpu(), max_batch=config.max_batch,
                            batch_wait=config.batch_wait_ms / 1000, backend=backend_for(config))

    def switch(name: str):
        spec, local = resolve_checkpoint(name, config.ckpt_dir, config.model)
        if identify(spec, local).location == service.manager.source.location:  # in use already (clients send
            return service.manager  # override_settings with every request)
        if config.backend == "ray":
            raise ValueError(f"sd_model_checkpoint: the Ray replicas keep the model they started with "
                             f"({config.model!r}); start the app with --model {name} to use {name!r}")
        try:
            return PipelineManager.load(spec, config.device, local=local, offload=config.offload)
        except ValueError:
            raise
        except Exception as error:  # a truncated or hostile file, the Hub unreachable, ...: not a server fault
            log.warning("sd_model_checkpoint %r could not be loaded: %s", name, error)
            raise ValueError(f"sd_model_checkpoint: could not load {name!r} ({type(error).__name__})") from None

    service.model_loader = switch
    service.checkpoints = lambda: checkpoint_names(config.ckpt_dir)
    service.startup_model = config.model
    service.model_name = "demo" if notice else config.model
    log.info(service.system_line())
    if warning := exposure_warning(config):
        log.warning(warning)
    return build_ui(service, queue_size=config.queue_size), service


def backend_for(config: AppConfig):
    """What runs the queue's calls: the in-process model, or Ray Serve replicas."""
    from service.studio import LocalBackend

    if config.backend == "local":
        return LocalBackend

    def ray_backend(service):
        from service.ray_backend import RayBackend

        return RayBackend(config, config.replicas, service.extensions, config.ray_address)

    return ray_backend


def build_server(config: AppConfig, blocks, service):
    """One FastAPI app on one port: the REST API (with --api) beside the Gradio UI. Every request body is bounded;
    the API docs exist only with the REST API, behind its credentials."""
    import gradio as gr
    from fastapi import FastAPI

    from api.edge import BodyLimit
    from models.limits import MAX_IMAGE_BYTES
    from ui.layout import CSS

    server = FastAPI(title="SD Studio", docs_url=None, redoc_url=None, openapi_url=None)
    if config.api:
        from api.docs import build_docs_router
        from api.sdapi import build_router

        server.include_router(build_router(service, config.rest_auth))
        server.include_router(build_docs_router(server, config.rest_auth))
    server = gr.mount_gradio_app(server, blocks, path="", auth=config.auth, show_error=True, css=CSS,
                                 max_file_size=MAX_IMAGE_BYTES)
    # Gradio checks that every file an input names was uploaded (is in its upload folder) only once `has_launched`
    # is set, and only `launch()` sets it (gradio 6.31, processing_utils._check_allowed): mounted, any client could
    # name any file on the server as an input image and get it back (upscaled by 1, say).
    blocks.has_launched = True
    server.add_middleware(BodyLimit)
    server.router.on_shutdown.append(service.close)  # Ctrl+C: the waiting jobs go, the running one stops
    return server


def exposure_warning(config: AppConfig) -> str | None:
    """What the log says at start when the app listens beyond this machine without a login."""
    import ipaddress

    try:
        loopback = ipaddress.ip_address(config.host).is_loopback
    except ValueError:
        loopback = config.host == "localhost"
    if loopback or config.auth is not None:
        return None
    rest = " and the REST API" if config.api and config.rest_auth is None else ""
    return (f"listening on {config.host} without --auth: anyone who can reach it can use the UI, gradio_client{rest} "
            "and generate; set --auth user:password")


def start_in_background(config: AppConfig):
    """The app as `main` serves it, in a background thread (tests, benchmarks); returns (server, service)."""
    import threading
    import time

    import uvicorn

    blocks, service = build_app(config)
    server = uvicorn.Server(uvicorn.Config(build_server(config, blocks, service), host=config.host, port=config.port,
                                           log_level="warning"))
    server.thread = threading.Thread(target=server.run, daemon=True)
    server.thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, service


def stop_in_background(server) -> None:
    server.should_exit = True
    server.force_exit = True  # without it, clients' open event streams hold the exit until the join times out
    server.thread.join(timeout=30)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from models.zerogpu import on_zerogpu

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own client calls log every request
    config = parse_config(argv)
    if on_zerogpu():  # imports `spaces` before torch touches CUDA, as ZeroGPU needs
        log.info("running on ZeroGPU: each generation holds a GPU while it runs")
    blocks, service = build_app(config)
    # Ctrl+C: open requests get 3 s, then they are cancelled (a REST job with them) and the queue is closed
    uvicorn.run(build_server(config, blocks, service), host=config.host, port=config.port,
                timeout_graceful_shutdown=SHUTDOWN_SECONDS)


if __name__ == "__main__":
    main()
