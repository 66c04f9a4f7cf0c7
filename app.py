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
    "controlnet_dir": ("SD_CONTROLNET_DIR", str(ROOT / "models" / "ControlNet")),
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
    controlnet_dir: Path
    output_dir: Path
    queue_size: int


def parse_config(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> AppConfig:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description="SD Studio", epilog="Environment: " + ", ".join(
        f"{variable} (--{option.replace('_', '-')})" for option, (variable, _) in ENVIRONMENT.items()))
    for option, (variable, default) in ENVIRONMENT.items():
        parser.add_argument(f"--{option.replace('_', '-')}", default=environ.get(variable, default))
    args = parser.parse_args(argv)
    try:
        port, queue_size = int(args.port), int(args.queue_size)
    except ValueError:
        parser.error(f"--port and --queue-size must be whole numbers, got {args.port!r} and {args.queue_size!r}")
    return AppConfig(
        model=args.model, host=args.host, port=port, device=args.device, lora_dir=Path(args.lora_dir),
        controlnet_dir=Path(args.controlnet_dir), output_dir=Path(args.output_dir), queue_size=queue_size,
    )


def build_app(config: AppConfig):
    """Load the model (or the demo model when offline) and build the UI; returns (blocks, service)."""
    from models.manager import load_or_demo
    from service.studio import StudioService
    from ui.layout import build_ui

    manager, notice = load_or_demo(config.model, config.device)
    service = StudioService(manager, config.output_dir, notice=notice)
    logging.getLogger("sd-studio").info(service.system_line())
    return build_ui(service, queue_size=config.queue_size), service


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_config(argv)
    blocks, service = build_app(config)
    blocks.launch(server_name=config.host, server_port=config.port, allowed_paths=[str(config.output_dir)], show_error=True)


if __name__ == "__main__":
    main()
