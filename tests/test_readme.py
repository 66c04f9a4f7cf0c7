"""The README's promises: its gradio_client example runs against the app, its commands exist."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_gradio_client_example_runs_against_the_app(app_server, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes mask.png
    example = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    assert 'Client("http://127.0.0.1:7860/")' in example
    namespace: dict = {}
    # the test app's ControlNet folder holds a tiny "edges" model where a user would have SD 1.5's canny one
    exec(example.replace("http://127.0.0.1:7860/", app_server[0]).replace("control_v11p_sd15_canny", "edges"),
         namespace)
    assert namespace["infotext"].startswith("a red door\nSteps: 20")
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in capsys.readouterr().out


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one():
    assert "make run " in README and "make test " in README
    targets = subprocess.run(["make", "-pn"], cwd=ROOT, capture_output=True, text=True).stdout
    assert re.search(r"^run: setup$", targets, re.M) and re.search(r"^test: setup-dev$", targets, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
