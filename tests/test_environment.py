"""The dependency set requirements.txt installs: the standard torch with its torchvision, controlnet-aux and
xformers all import side by side, and xformers stays quiet and unused where it has no kernels."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from models.device import resolve_runtime, xformers_unusable
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # fresh interpreters importing torch, controlnet-aux and xformers


def pinned(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert match, f"{name} is not pinned in requirements.txt"
    return match.group(1)


def test_torch_and_torchvision_are_the_pinned_pair_and_torchvision_operators_load():
    import torchvision
    from torchvision.ops import nms

    assert torch.__version__.split("+")[0] == pinned("torch")
    assert torchvision.__version__.split("+")[0] == pinned("torchvision")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    # the operator a CPU-only torch beside PyPI's torchvision lacks ("torchvision::nms does not exist")
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5).tolist() == [0, 2]


def test_controlnet_aux_and_xformers_import_in_a_fresh_interpreter():
    code = ("import controlnet_aux, xformers, timm; from controlnet_aux import CannyDetector, OpenposeDetector; "
            "print(controlnet_aux.__name__, xformers.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[1] == pinned("xformers")


def test_xformers_import_warning_is_silenced():
    # xformers logs "WARNING[XFORMERS]: ... built for PyTorch 2.10" on import where its kernels don't match torch
    code = "from models.device import import_xformers_ops; import_xformers_ops(); print('imported')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-2000:]
    assert "WARNING[XFORMERS]" not in done.stderr


def test_system_line_says_why_xformers_is_not_used_on_cpu():
    runtime = resolve_runtime("cpu")
    assert runtime.attention == "sdpa"
    assert xformers_unusable(torch.device("cpu"), torch.float32) == "xformers has no cpu kernels"
    assert runtime.describe() == "cpu · float32 · attention: sdpa (xformers has no cpu kernels)"
