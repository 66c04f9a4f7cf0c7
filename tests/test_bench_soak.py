"""The soak benchmark, briefly: a dozen mixed requests against the real app, a passing report of the right shape."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.server  # starts the app in a subprocess
def test_a_short_soak_passes_and_reports_every_figure(tmp_path):
    report = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, "-m", "bench.soak", "--requests", "12", "--minutes", "2", "--seeds", "1",
                          "--json", str(report)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "PASSED" in run.stdout and "solo-pixel checks:" in run.stdout
    figures = json.loads(report.read_text())
    assert figures["passed"] is True
    assert figures["solo"]["runs"] == 22  # 5 generation kinds x 1 seed x LoRA on/off x ControlNet on/off, 2 detects
    served = figures["served"]
    assert 0 < sum(served.values()) <= 12
    assert set(figures["latency_ms"]) == set(served)
    assert all(0 <= latency["p50"] <= latency["p99"] for latency in figures["latency_ms"].values())
    checks = figures["pixel_checks"]
    assert checks["failed"] == 0 and checks["failures"] == []
    assert checks["passed"] + sum(figures["interrupted"].values()) + figures["cancelled"] > 0, "some generations ran"
    assert figures["errors"]["unexplained"] == {}
    assert set(figures["rss_mib"]) == {"start", "middle", "end"}
    assert all(value > 0 for value in figures["rss_mib"].values())
