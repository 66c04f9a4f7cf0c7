"""SD Studio: txt2img, img2img and inpaint over one shared Stable Diffusion 1.x model.

    python app.py [--model ID_OR_PATH] [--host HOST] [--port PORT] [--device auto|cuda|mps|cpu] ...

Every option can also be set by an environment variable (for Hugging Face Spaces): see AppConfig below, or
`python app.py --help`.
This file is also the Spaces `app_file`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("sd-studio")

BACKENDS = ("local", "ray")
PREVIEW_MODES = ("approx", "taesd", "off")  # as models.previews.PREVIEW_MODES (not imported here: it loads torch)
OFFLOAD_MODES = ("none", "model", "sequential")  # as models.device.OFFLOAD_MODES
SHUTDOWN_SECONDS = 3  # what open requests get on Ctrl+C before they are cancelled
SWITCH_WORDS = {"on": True, "1": True, "true": True, "off": False, "0": False, "false": False}


def option(variable: str, default, what: str, kind: str = "text", choices: tuple[str, ...] = (), least: int = 1,
           fallback: str = ""):
    """An option, declared once: its environment variable, default and help (--help, the docs' table), and its
    kind: text, path, whole (at least `least`), switch (on/off; alone, as A1111's bare flags, it means on), choice
    or credentials (user:password). `fallback`: another variable read when the option's own is not set."""
    return dataclasses.field(metadata={"variable": variable, "default": default, "what": what, "kind": kind,
                                       "choices": choices, "least": least, "fallback": fallback})


@dataclass(frozen=True)
class AppConfig:
    model: str = option("SD_MODEL", "stable-diffusion-v1-5/stable-diffusion-inpainting",
                        "a Hub id, a local diffusers folder, a single-file .safetensors checkpoint (A1111 format), or "
                        "demo")
    ckpt_dir: Path = option("SD_CKPT_DIR", "models/Stable-diffusion",
                            "the checkpoints the model dropdown and sd_model_checkpoint may switch to", "path")
    upscaler_dir: Path = option("SD_UPSCALER_DIR", "models/upscale_models",
                                "upscaler models (ESRGAN and the others spandrel detects), .safetensors", "path")
    vae_dir: Path = option("SD_VAE_DIR", "models/VAE",
                           "VAEs a request may use instead of the model's own (A1111's SD VAE)", "path")
    host: str = option("SD_HOST", "127.0.0.1", "address to listen on (0.0.0.0 to serve your network)",
                       fallback="GRADIO_SERVER_NAME")
    port: int = option("SD_PORT", 7860, "port", "whole", fallback="GRADIO_SERVER_PORT")
    device: str = option("SD_DEVICE", "auto", "auto (CUDA with fp16, then MPS, else CPU), cuda, mps or cpu")
    offload: str = option("SD_OFFLOAD", "none", "for 4-8 GB cards: model (each part visits the GPU while it runs) or "
                          "sequential (layer by layer); none", "choice", OFFLOAD_MODES)
    lora_dir: Path = option("SD_LORA_DIR", "models/Lora", "LoRA library (subfolders allowed)", "path")
    lora_cap: int = option("SD_LORA_CAP", 16, "LoRA adapters kept loaded; the least recently used one goes first",
                           "whole")
    lora_fuse: bool = option("SD_LORA_FUSE", False,
                             "on: fuse the active LoRA set into the weights when the same set comes again", "switch")
    lora_rank: int = option("SD_LORA_RANK", 64,
                            "with --compile: the most LoRA rank used at once (the hot-swapped slot's rank)", "whole")
    compile: bool = option("SD_COMPILE", False, "on: torch.compile the U-Net (worth it on CUDA), warmed up at start, "
                           "so the start waits for the compile", "switch")
    controlnet_dir: Path = option("SD_CONTROLNET_DIR", "models/ControlNet",
                                  "ControlNet library (diffusers folders and single .safetensors files)", "path")
    controlnet_cap: int = option("SD_CONTROLNET_CAP", 3,
                                 "ControlNets kept loaded; the least recently used one goes first", "whole")
    controlnet_units: int = option("SD_CONTROLNET_UNITS", 3, "ControlNet units per request (and per tab in the UI)",
                                   "whole")
    annotator_dir: Path = option("SD_ANNOTATOR_DIR", "models/annotators",
                                 "preprocessor weights, in the file layout of the Hub repositories they come from",
                                 "path")
    embeddings_dir: Path = option("SD_EMBEDDINGS_DIR", "models/embeddings",
                                  "textual-inversion embeddings (.safetensors), named in prompts by their file stems",
                                  "path")
    output_dir: Path = option("SD_OUTPUT_DIR", "outputs", "where images are saved", "path")
    styles_file: Path = option("SD_STYLES_FILE", "styles.csv",
                               "A1111's prompt styles (name,prompt,negative_prompt); saving a style writes it", "path")
    queue_size: int = option("SD_QUEUE_SIZE", 16, "jobs that may wait; when full, new ones are refused at once",
                             "whole")
    max_script_jobs: int = option("SD_MAX_SCRIPT_JOBS", 64, "the most jobs one script runs: an X/Y/Z plot's cells, "
                                  "a prompt matrix's prompts, a file's lines, SD upscale's tiles", "whole")
    max_job_seconds: int | None = option("SD_MAX_JOB_SECONDS", "auto", "a job estimated to take longer is refused "
                                         "at once, saying what to lower; auto: 600 on a CPU, 1800 on a GPU; 0: no "
                                         "limit", "limit")
    max_batch: int = option("SD_MAX_BATCH", 4,
                            "the most images compatible jobs make in one diffusers call (1: no batching)", "whole")
    batch_wait_ms: int = option("SD_BATCH_WAIT_MS", 10, "how long a job that could take more waits for compatible "
                                "ones", "whole", least=0)
    live_preview: str = option("SD_LIVE_PREVIEW", "approx",
                               "approx (latents to RGB without the VAE), taesd (a tiny VAE) or off", "choice",
                               PREVIEW_MODES)
    preview_every: int = option("SD_PREVIEW_EVERY", 5, "steps between live previews", "whole")
    taesd: str = option("SD_TAESD", "",
                        "the tiny VAE for taesd previews: a diffusers folder or a Hub id (empty: the model family's, "
                        "madebyollin/taesd or madebyollin/taesdxl)")
    backend: str = option("SD_BACKEND", "local",
                          "local (the model in this process) or ray (Ray Serve replicas, each with its own copy)",
                          "choice", BACKENDS)
    replicas: int = option("SD_REPLICAS", 1, "with --backend ray: how many replicas", "whole")
    ray_address: str = option("SD_RAY_ADDRESS", "",
                              "with --backend ray: a running Ray cluster (ray://head:10001); empty: start a local one")
    api: bool = option("SD_API", False, "on: serve AUTOMATIC1111's REST API (/sdapi/v1) beside the UI", "switch")
    api_auth: tuple[str, str] | None = option("SD_API_AUTH", "", "user:password, HTTP basic credentials for the "
                                              "REST API (default: --auth's)", "credentials")
    auth: tuple[str, str] | None = option("SD_AUTH", "", "user:password, a login for the UI, gradio_client and "
                                          "(without --api-auth) the REST API", "credentials")

    @property
    def rest_auth(self) -> tuple[str, str] | None:
        return self.api_auth or self.auth

    def public_flags(self) -> dict:
        """The options as A1111's /cmd-flags shows them: no credentials, no server paths."""
        shown = {option.name: getattr(self, option.name) for option in OPTIONS
                 if option.metadata["kind"] not in ("path", "credentials")}
        return {**shown, "listen": self.host not in ("127.0.0.1", "localhost"), "nowebui": False,
                "api_auth": None, "gradio_auth": None}

    def extension_settings(self):
        """What the extensions take of the config."""
        from extensions.base import Settings

        return Settings(lora_dir=self.lora_dir, controlnet_dir=self.controlnet_dir, annotator_dir=self.annotator_dir,
                        embeddings_dir=self.embeddings_dir, upscaler_dir=self.upscaler_dir, vae_dir=self.vae_dir,
                        output_dir=self.output_dir, styles_file=self.styles_file, lora_cap=self.lora_cap,
                        lora_fuse=self.lora_fuse, lora_rank=self.lora_rank if self.compile else None,
                        controlnet_cap=self.controlnet_cap, controlnet_units=self.controlnet_units,
                        max_script_jobs=self.max_script_jobs, checkpoint_dir=self.ckpt_dir)


OPTIONS = dataclasses.fields(AppConfig)


def flag(option) -> str:
    return f"--{option.name.replace('_', '-')}"


def shown_default(option) -> str:
    """An option's default as --help and the docs say it ("" when it has none)."""
    default, kind = option.metadata["default"], option.metadata["kind"]
    if kind == "switch":
        return "on" if default else "off"
    return str(default)


def parse_config(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> AppConfig:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        description="SD Studio: txt2img, img2img and inpaint over one shared Stable Diffusion 1.x model. Every "
                    "option can also be set by its environment variable, shown in brackets.")
    for option in OPTIONS:
        meta = option.metadata
        bare = {"nargs": "?", "const": "on"} if meta["kind"] == "switch" else {}
        default = shown_default(option)
        shown = f"{meta['what']} [{meta['variable']}" + (f"; default {default}]" if default else "]")
        given = environ.get(meta["variable"], environ.get(meta["fallback"], default) if meta["fallback"] else default)
        parser.add_argument(flag(option), default=given, help=shown.replace("%", "%%"), **bare)  # argparse %-formats
    args = parser.parse_args(argv)
    values = {option.name: _value(parser, option, str(getattr(args, option.name))) for option in OPTIONS}
    if values["lora_fuse"] and values["compile"]:
        parser.error("--lora-fuse cannot be combined with --compile: the compiled U-Net's LoRA slot is hot-swapped")
    if values["offload"] != "none" and values["compile"]:
        parser.error("--offload cannot be combined with --compile: the hooks that move the weights break the graph")
    return AppConfig(**values)


def _value(parser: argparse.ArgumentParser, option, value: str):
    """An option's value in its kind, or argparse's error naming the option and the value."""
    meta = option.metadata
    kind, name = meta["kind"], flag(option)
    if kind == "whole":
        if not value.isdigit() or int(value) < meta["least"]:
            parser.error(f"{name} must be a whole number of at least {meta['least']}, got {value!r}")
        return int(value)
    if kind == "switch":
        if value.lower() not in SWITCH_WORDS:
            parser.error(f"{name} must be on or off, got {value!r}")
        return SWITCH_WORDS[value.lower()]
    if kind == "limit":  # auto (None: the device decides), or a whole number
        if value != "auto" and not value.isdigit():
            parser.error(f"{name} must be auto or a whole number of seconds (0: no limit), got {value!r}")
        return None if value == "auto" else int(value)
    if kind == "choice" and value not in meta["choices"]:
        parser.error(f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if kind == "path":
        return ROOT / value if not Path(value).is_absolute() and value == meta["default"] else Path(value)
    if kind == "credentials":
        user, _, password = value.partition(":")
        if value and not (user and password):
            parser.error(f"{name} must be user:password, got {value!r}")
        return (user, password) if value else None
    return value


def options_table() -> str:
    """The options as the docs' configuration page shows them (a test keeps the page in step)."""
    rows = ["| option | environment | default | what it is |", "|---|---|---|---|"]
    for option in OPTIONS:
        meta = option.metadata
        variable = f"`{meta['variable']}`" + (f" (or `{meta['fallback']}`)" if meta["fallback"] else "")
        default = f"`{shown_default(option)}`" if shown_default(option) else ""
        rows.append(f"| `{flag(option)}` | {variable} | {default} | {meta['what']} |")
    return "\n".join(rows) + "\n"


def build_app(config: AppConfig):
    """Load the model (or the demo model when offline) and build the UI; returns (blocks, service)."""
    # diffusers imports xformers whenever it is installed, and xformers then warns when its kernels were built for
    # another torch; whether it works is models.device's probe, and the system line says why it is not in use
    logging.getLogger("xformers").setLevel(logging.ERROR)
    from PIL import Image

    from extensions import create
    from models.checkpoints import checkpoint_families, checkpoint_names, resolve_checkpoint
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
    service = StudioService(manager, config.output_dir, create(config.extension_settings()), notice=notice,
                            after_install=lambda manager: with_settings(manager, config, compile_unet=not ray,
                                                                        calibrate=not ray and not on_zerogpu()),
                            queue_size=config.queue_size, direct=on_zerogpu(), max_batch=config.max_batch,
                            batch_wait=config.batch_wait_ms / 1000, backend=backend_for(config),
                            max_job_seconds=job_limit(config, manager))

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
            raise ValueError(f"sd_model_checkpoint: could not load {name!r}: {why_not_loaded(spec, local, error)}") \
                from None

    service.model_loader = switch
    service.checkpoints = lambda: checkpoint_names(config.ckpt_dir)
    service.checkpoint_families = lambda: checkpoint_families(config.ckpt_dir)
    service.startup_model = config.model
    service.model_name = "demo" if notice else config.model
    log.info(service.system_line())
    if warning := exposure_warning(config):
        log.warning(warning)
    return build_ui(service, queue_size=config.queue_size), service


def why_not_loaded(spec: str, local: bool, error: Exception) -> str:
    """Why a model did not load, in words a user can act on (the error's own message may hold server paths)."""
    from models.files import hub_unreachable
    from models.loading import identify

    if identify(spec, local).kind == "hub":
        if hub_unreachable():
            return "the Hugging Face Hub cannot be reached from this server and the model is not in its cache"
        if type(error).__name__ in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"):
            return "the Hugging Face Hub has no such model (or it is gated)"
        return f"the Hub's files did not load as a diffusers model ({type(error).__name__})"
    return f"its files did not load as a model ({type(error).__name__})"


JOB_LIMITS = {"cpu": 600, "gpu": 1800}  # --max-job-seconds auto: a CPU is slow for everyone behind the job


def job_limit(config: AppConfig, manager) -> int:
    """--max-job-seconds, or by the device: a job the CPU would take 10 minutes for is refused at once."""
    if config.max_job_seconds is not None:
        return config.max_job_seconds
    return JOB_LIMITS["cpu" if manager.runtime.device.type == "cpu" else "gpu"]


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

        server.include_router(build_router(service, config.rest_auth, config.public_flags()))
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
    try:
        closing_server(uvicorn.Config(build_server(config, blocks, service), host=config.host, port=config.port,
                                      timeout_graceful_shutdown=SHUTDOWN_SECONDS), service).run()
    except KeyboardInterrupt:  # uvicorn raises the Ctrl+C it handled again once it has shut down
        pass
    service.close(wait=SHUTDOWN_SECONDS)  # the running job's thread ends before the interpreter does
    log.info("stopped")


def closing_server(config, service):
    """uvicorn's server, closing the job queue first on Ctrl+C (or SIGTERM): the running job stops inside its step
    and answers with what it made, waiting ones are answered 503 (the server is shutting down), so open requests end
    within uvicorn's grace period instead of being cancelled mid-answer."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            if not self.should_exit:
                log.info("shutting down: the running job stops, the waiting ones are answered")
                service.close()
            super().handle_exit(sig, frame)

    return Server(config)


if __name__ == "__main__":
    main()
