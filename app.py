"""SD Studio: txt2img, img2img and inpaint over one shared Stable Diffusion 1.x model.

    python app.py [--model ID_OR_PATH] [--host HOST] [--port PORT] [--device auto|cuda|mps|cpu] ...

Every option can also be set by an environment variable (for Hugging Face Spaces): see ENVIRONMENT below.
This file is also the Spaces `app_file`.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# option -> (environment variable, default)
ENVIRONMENT = {
    "model": ("SD_MODEL", "stable-diffusion-v1-5/stable-diffusion-inpainting"),
    "host": ("SD_HOST", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")),
    "port": ("SD_PORT", os.environ.get("GRADIO_SERVER_PORT", "7860")),
    "device": ("SD_DEVICE", "auto"),
    "lora_dir": ("SD_LORA_DIR", str(ROOT / "models" / "Lora")),
    "lora_cap": ("SD_LORA_CAP", "16"),
    "lora_fuse": ("SD_LORA_FUSE", "off"),
    "lora_rank": ("SD_LORA_RANK", "64"),
    "compile": ("SD_COMPILE", "off"),
    "controlnet_dir": ("SD_CONTROLNET_DIR", str(ROOT / "models" / "ControlNet")),
    "controlnet_cap": ("SD_CONTROLNET_CAP", "3"),
    "controlnet_units": ("SD_CONTROLNET_UNITS", "3"),
    "output_dir": ("SD_OUTPUT_DIR", str(ROOT / "outputs")),
    "queue_size": ("SD_QUEUE_SIZE", "16"),
}


@dataclass(frozen=True)
class AppConfig:
    model: str
    host: str
    port: int
    device: str
    lora_dir: Path
    lora_cap: int  # LoRA adapters kept loaded; the least recently used one goes first
    lora_fuse: bool  # fuse the active LoRA set into the weights when the same set comes again
    lora_rank: int  # with --compile: the most LoRA rank used at once (the hot-swapped slot's rank)
    compile: bool  # torch.compile the U-Net (worth it on CUDA; the first image then waits for the compile)
    controlnet_dir: Path
    controlnet_cap: int  # ControlNets kept loaded; the least recently used one goes first
    controlnet_units: int  # ControlNet units per request (and per tab in the UI)
    output_dir: Path
    queue_size: int


def parse_config(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> AppConfig:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description="SD Studio", epilog="Environment: " + ", ".join(
        f"{variable} (--{option.replace('_', '-')})" for option, (variable, _) in ENVIRONMENT.items()))
    for option, (variable, default) in ENVIRONMENT.items():
        parser.add_argument(f"--{option.replace('_', '-')}", default=environ.get(variable, default))
    args = parser.parse_args(argv)
    numbers = {}
    for option in ("port", "queue_size", "lora_cap", "lora_rank", "controlnet_cap", "controlnet_units"):
        value = getattr(args, option)
        if not str(value).isdigit() or int(value) < 1:
            parser.error(f"--{option.replace('_', '-')} must be a whole number of at least 1, got {value!r}")
        numbers[option] = int(value)
    switches = {}
    for option in ("lora_fuse", "compile"):
        value = str(getattr(args, option)).lower()
        if value not in ("on", "off", "1", "0", "true", "false"):
            parser.error(f"--{option.replace('_', '-')} must be on or off, got {getattr(args, option)!r}")
        switches[option] = value in ("on", "1", "true")
    if switches["lora_fuse"] and switches["compile"]:
        parser.error("--lora-fuse cannot be combined with --compile: the compiled U-Net's LoRA slot is hot-swapped")
    return AppConfig(
        model=args.model, host=args.host, device=args.device, lora_dir=Path(args.lora_dir),
        controlnet_dir=Path(args.controlnet_dir), output_dir=Path(args.output_dir), **numbers, **switches,
    )


def build_app(config: AppConfig):
    """Load the model (or the demo model when offline) and build the UI; returns (blocks, service)."""
    from extensions import lora
    from extensions.controlnet import pipeline as controlnet
    from models.manager import load_or_demo
    from service.studio import StudioService
    from ui.layout import build_ui

    manager, notice = load_or_demo(config.model, config.device)
    config.lora_dir.mkdir(parents=True, exist_ok=True)  # so users see where to drop their LoRA files
    loras = lora.install(manager, config.lora_dir, cap=config.lora_cap, fuse=config.lora_fuse,
                         compiled_rank=config.lora_rank if config.compile else None)
    if config.compile:  # after the extensions that add layers to the U-Net
        manager.compile_unet()
    config.controlnet_dir.mkdir(parents=True, exist_ok=True)
    controlnets = controlnet.install(manager, config.controlnet_dir, cap=config.controlnet_cap,
                                     max_units=config.controlnet_units)
    service = StudioService(manager, config.output_dir, notice=notice, loras=loras, controlnets=controlnets)
    logging.getLogger("sd-studio").info(service.system_line())
    return build_ui(service, queue_size=config.queue_size), service


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_config(argv)
    blocks, service = build_app(config)
    blocks.launch(server_name=config.host, server_port=config.port, allowed_paths=[str(config.output_dir)], show_error=True)


if __name__ == "__main__":
    main()
