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


def install_lines() -> list[str]:
    """The README's `pip install ...` lines, one before each client example, in order."""
    return re.findall(r"```bash\n(pip install [^\n]*)\n```", README)


@pytest.mark.slow  # a fresh virtual environment per example, installed from PyPI
@pytest.mark.parametrize("index, shows", [(0, "a large red circle on a blue background\nNegative prompt: blurry\n"
                                              "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras"),
                                          (1, "a large red circle on a blue background <lora:shapes-pastel:0.7>")])
def test_each_client_example_runs_in_a_fresh_venv_with_only_its_install_line(fresh_app, tmp_path, index, shows):
    """What a user does: a new environment, the line the README gives before the example, then the example."""
    assert len(install_lines()) == 2 and len(examples()) >= 2
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    command = install_lines()[index].split()
    assert command[:2] == ["pip", "install"]
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", *command, "--quiet", "--disable-pip-version-check"],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    (tmp_path / "example.py").write_text(examples()[index])
    run = subprocess.run([str(venv / "bin" / "python"), "example.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert shows in run.stdout, run.stdout[:500]


def test_the_training_example_runs_as_written(fresh_app, tmp_path, monkeypatch, capsys):
    """docs/training.md's /train_lora example, against the app as `make run` starts it (its LoRA folder is the
    repository's, so the LoRA it trains is taken away after)."""
    code = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "training.md").read_text(), re.S)[0]
    monkeypatch.chdir(tmp_path)  # the example writes its pictures
    trained = ROOT / "models" / "Lora" / "sks-circle.safetensors"
    try:
        exec(code, {})
        name, loss = capsys.readouterr().out.splitlines()[-1].split()  # after gradio_client's "Loaded as API"
        assert name == "sks-circle" and float(loss) > 0 and trained.is_file()
    finally:
        trained.unlink(missing_ok=True)
