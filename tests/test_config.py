"""Command line and environment: every option settable both ways, the flag winning."""

from __future__ import annotations

from pathlib import Path

import pytest

import app


def test_defaults():
    config = app.parse_config([], environ={})
    assert config.model == "stable-diffusion-v1-5/stable-diffusion-inpainting"
    assert (config.host, config.port, config.device, config.queue_size) == ("127.0.0.1", 7860, "auto", 16)
    assert config.lora_dir == app.ROOT / "models" / "Lora"


def test_environment_then_flags():
    environ = {"SD_MODEL": "demo", "SD_PORT": "9000", "SD_OUTPUT_DIR": "/tmp/out", "SD_DEVICE": "cpu",
               "SD_LORA_DIR": "/l", "SD_CONTROLNET_DIR": "/c", "SD_HOST": "0.0.0.0"}
    config = app.parse_config([], environ=environ)
    assert (config.model, config.port, config.output_dir, config.device) == ("demo", 9000, Path("/tmp/out"), "cpu")
    assert (config.lora_dir, config.controlnet_dir, config.host) == (Path("/l"), Path("/c"), "0.0.0.0")
    config = app.parse_config(["--model", "x/y", "--port", "9001", "--lora-dir", "/l2"], environ=environ)
    assert (config.model, config.port, config.lora_dir) == ("x/y", 9001, Path("/l2"))


def test_bad_port_is_named(capsys):
    with pytest.raises(SystemExit):
        app.parse_config(["--port", "http"], environ={})
    assert "--port" in capsys.readouterr().err
