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
    assert (config.lora_cap, config.lora_fuse, config.lora_rank, config.compile) == (16, False, 64, False)
    assert (config.max_batch, config.batch_wait_ms, config.backend, config.replicas) == (4, 10, "local", 1)
    assert config.upscaler_dir == app.ROOT / "models" / "upscale_models"
    assert config.vae_dir == app.ROOT / "models" / "VAE"


def test_environment_then_flags():
    environ = {"SD_MODEL": "demo", "SD_PORT": "9000", "SD_OUTPUT_DIR": "/tmp/out", "SD_DEVICE": "cpu",
               "SD_LORA_DIR": "/l", "SD_CONTROLNET_DIR": "/c", "SD_HOST": "0.0.0.0"}
    config = app.parse_config([], environ=environ)
    assert (config.model, config.port, config.output_dir, config.device) == ("demo", 9000, Path("/tmp/out"), "cpu")
    assert (config.lora_dir, config.controlnet_dir, config.host) == (Path("/l"), Path("/c"), "0.0.0.0")
    config = app.parse_config(["--model", "x/y", "--port", "9001", "--lora-dir", "/l2"], environ=environ)
    assert (config.model, config.port, config.lora_dir) == ("x/y", 9001, Path("/l2"))
    config = app.parse_config(["--lora-cap", "4"], environ={"SD_LORA_CAP": "8", "SD_LORA_FUSE": "on"})
    assert (config.lora_cap, config.lora_fuse) == (4, True)
    config = app.parse_config(["--compile", "on"], environ={"SD_LORA_RANK": "128"})
    assert (config.compile, config.lora_rank) == (True, 128)
    config = app.parse_config(["--replicas", "3", "--batch-wait-ms", "0"],
                              environ={"SD_BACKEND": "ray", "SD_RAY_ADDRESS": "ray://head:10001", "SD_MAX_BATCH": "8"})
    assert (config.backend, config.replicas, config.ray_address) == ("ray", 3, "ray://head:10001")
    assert (config.max_batch, config.batch_wait_ms) == (8, 0)
    config = app.parse_config(["--live-preview", "taesd"], environ={"SD_TAESD": "/models/taesd"})
    assert (config.live_preview, config.taesd, config.preview_every) == ("taesd", "/models/taesd", 5)


@pytest.mark.parametrize("argv, named", [
    (["--port", "http"], "--port must be a whole number of at least 1, got 'http'"),
    (["--lora-cap", "0"], "--lora-cap must be a whole number of at least 1, got '0'"),
    (["--lora-fuse", "maybe"], "--lora-fuse must be on or off, got 'maybe'"),
    (["--backend", "k8s"], "--backend must be one of local, ray, got 'k8s'"),
    (["--max-batch", "0"], "--max-batch must be a whole number of at least 1, got '0'"),
    (["--batch-wait-ms", "-1"], "--batch-wait-ms must be a whole number of at least 0, got '-1'"),
    (["--compile", "fast"], "--compile must be on or off, got 'fast'"),
    (["--lora-rank", "-8"], "--lora-rank must be a whole number of at least 1, got '-8'"),
    (["--compile", "on", "--lora-fuse", "on"], "--lora-fuse cannot be combined with --compile"),
    (["--live-preview", "vae"], "--live-preview must be one of approx, taesd, off, got 'vae'"),
    (["--offload", "layers"], "--offload must be one of none, model, sequential, got 'layers'"),
    (["--offload", "model", "--compile"], "--offload cannot be combined with --compile"),
])
def test_bad_values_are_named(capsys, argv, named):
    with pytest.raises(SystemExit):
        app.parse_config(argv, environ={})
    assert named in capsys.readouterr().err


def test_on_off_options_work_as_bare_flags_as_in_a1111():
    config = app.parse_config(["--api", "--compile"], environ={})
    assert (config.api, config.compile, config.lora_fuse) == (True, True, False)
    config = app.parse_config(["--api", "--port", "9002"], environ={})  # a bare flag before another option
    assert (config.api, config.port) == (True, 9002)
    assert app.parse_config(["--api", "off"], environ={"SD_API": "on"}).api is False
    assert app.parse_config([], environ={"SD_API": "on"}).api is True


def test_annotator_dir_from_flag_or_environment():
    assert app.parse_config([], environ={}).annotator_dir == app.ROOT / "models" / "annotators"
    assert app.parse_config([], environ={"SD_ANNOTATOR_DIR": "/a"}).annotator_dir == Path("/a")
    assert app.parse_config(["--annotator-dir", "/b"], environ={"SD_ANNOTATOR_DIR": "/a"}).annotator_dir == Path("/b")


def test_help_says_what_each_option_is(capsys):
    with pytest.raises(SystemExit):
        app.parse_config(["--help"], environ={})
    squeezed = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at spaces and hyphens
    for option in app.OPTIONS:
        variable, what = option.metadata["variable"], option.metadata["what"]
        assert app.flag(option) in squeezed, option.name
        assert "".join(f"{what} [{variable}".split()) in squeezed, option.name
    assert "[SD_LORA_CAP;default16]" in squeezed and "[SD_AUTH]" in squeezed


def test_the_configuration_page_has_every_option():
    page = (app.ROOT / "docs" / "configuration.md").read_text()
    assert app.options_table() in page, "the table is app.options_table()'s: paste its output into the page"
    for option in app.OPTIONS:
        assert f"| `{app.flag(option)}` | `{option.metadata['variable']}`" in page, option.name
