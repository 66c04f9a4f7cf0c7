"""House rules that keep the layers apart, checked on the source itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", ["models", "service", "extensions"])
def test_model_and_service_code_never_import_the_ui(layer):
    for path in (ROOT / layer).rglob("*.py"):
        assert not imported_modules(path) & {"gradio", "ui", "app"}, path


def test_importing_the_app_does_nothing():
    """No model load, argv parsing or device probing at import time (house habit 1)."""
    code = "import sys, app; assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
