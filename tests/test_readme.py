"""The README's promises: its examples run as written against the app as `make run` starts it, its commands exist."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory):
    """The app as `make run ARGS=--api` starts it: `python app.py --api`, every other option its default (port
    7860, the default model, which offline falls back to the shapes demo model with its LoRA and ControlNet).
    Only its outputs go to a temporary folder."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 7860)) == 0:
            pytest.fail("port 7860 is taken: the README's examples need the app there; stop what listens on it")
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "SD_OUTPUT_DIR": str(tmp_path_factory.mktemp("outputs"))}
    log = (tmp_path_factory.mktemp("log") / "app.log").open("w")
    server = subprocess.Popen([sys.executable, "app.py", "--api"], cwd=ROOT, env=environment, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if requests.get("http://127.0.0.1:7860/sdapi/v1/options", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the app did not start: {Path(log.name).read_text()[-2000:]}")
        yield Path(log.name)
    finally:
        server.terminate()  # uvicorn waits for open connections (the clients' event streams) on SIGTERM
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def examples(language: str = "python") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_gradio_client_example_runs_as_written(fresh_app, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes mask.png
    namespace: dict = {}
    exec(examples()[0], namespace)
    assert namespace["infotext"].startswith("a large red circle on a blue background\nSteps: 20")
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in capsys.readouterr().out
    assert Image.open(namespace["edges"]).size == (64, 64)
    assert Image.open(namespace["hires_images"][0]["image"]).size == (128, 128)
    assert "Hires steps: 10, Hires upscaler: Latent" in namespace["hires_infotext"]


def test_the_app_starts_without_xformers_warning(fresh_app):
    """diffusers imports xformers when it is installed (built for another torch here); the app keeps xformers'
    mismatch warning out of its log, and says in its system line why xformers is not in use."""
    log = fresh_app.read_text()
    assert "WARNING[XFORMERS]" not in log and "xFormers can't load" not in log, log[-2000:]
    assert "attention: sdpa (xformers" in log, log[-2000:]


def test_webuiapi_example_runs_as_written(fresh_app, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes circle.png
    exec(examples()[1], {})
    printed = capsys.readouterr().out
    assert printed.startswith("a large red circle on a blue background <lora:shapes-pastel:0.7>\nSteps: 20")
    assert 'Lora hashes: "shapes-pastel: ' in printed
    assert Image.open(tmp_path / "circle.png").size == (64, 64)


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one():
    assert "make run " in README and "make test " in README
    targets = subprocess.run(["make", "-pn"], cwd=ROOT, capture_output=True, text=True).stdout
    assert re.search(r"^run: setup$", targets, re.M) and re.search(r"^test: setup-dev$", targets, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
