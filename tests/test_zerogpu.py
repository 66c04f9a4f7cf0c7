"""ZeroGPU: nothing changes off ZeroGPU; on it, functions go through spaces.GPU with a duration per call."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types

import pytest

from models.zerogpu import DURATION_RANGE, duration_from_call, estimate_seconds, gpu, on_zerogpu
from tests.conftest import ROOT


def txt2img(prompt, negative_prompt, seed, steps, guidance_scale, width, height, sampler, batch_size,
            controlnet_units=None, progress=None):
    """Shaped like ui.handlers.Handlers.txt2img."""
    return f"ran {prompt}"


@pytest.fixture
def fake_spaces(monkeypatch):
    """A stand-in for the spaces package on ZeroGPU hardware: GPU(duration=...) records each booked duration."""
    module = types.ModuleType("spaces")
    module.booked = []
    module.config = types.SimpleNamespace(Config=types.SimpleNamespace(zero_gpu=True))

    def GPU(task=None, *, duration=None):  # noqa: N802 - the real name
        def decorate(fn):
            def gradio_handler(*args, **kwargs):
                module.booked.append(duration(*args, **kwargs) if callable(duration) else duration)
                return fn(*args, **kwargs)

            return gradio_handler

        return decorate if task is None else decorate(task)

    module.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", module)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    return module


def test_off_zerogpu_fn_is_returned_itself(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert on_zerogpu() is False
    assert gpu(txt2img, duration_from_call(txt2img, "txt2img")) is txt2img


def test_env_without_the_spaces_package_is_not_zerogpu(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", None)  # makes `import spaces` raise ImportError
    assert on_zerogpu() is False
    assert gpu(txt2img, lambda *a, **k: 60) is txt2img


def test_spaces_config_has_the_last_word(fake_spaces):
    assert on_zerogpu() is True
    fake_spaces.config.Config.zero_gpu = False  # spaces read the environment when it was imported
    assert on_zerogpu() is False


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_env_values_that_are_not_true(fake_spaces, monkeypatch, value):
    monkeypatch.setenv("SPACES_ZERO_GPU", value)
    assert on_zerogpu() is False


def test_importing_the_module_does_not_import_spaces():
    code = "import sys, models.zerogpu; assert 'spaces' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_estimate_grows_with_the_work_and_stays_in_bounds():
    base = estimate_seconds(50, 512, 512, 1)
    assert estimate_seconds(100, 512, 512, 1) > base
    assert estimate_seconds(50, 768, 768, 1) > base
    assert estimate_seconds(50, 512, 512, 2) > base
    assert estimate_seconds(50, 512, 512, 1, controlnet_units=1) > base
    assert estimate_seconds(50, 512, 512, 1, controlnet_units=2) > estimate_seconds(50, 512, 512, 1, controlnet_units=1)
    assert estimate_seconds(50, 512, 512, 1, mode="img2img") >= base
    assert estimate_seconds(1, 64, 64, 1) == DURATION_RANGE[0]
    assert estimate_seconds(150, 2048, 2048, 8, controlnet_units=3) == DURATION_RANGE[1]
    # SDXL: longer to start and more per pixel; SD 2.x as SD 1.x
    assert estimate_seconds(30, 1024, 1024, 1, family="sdxl") > estimate_seconds(30, 1024, 1024, 1) + 6
    assert estimate_seconds(30, 768, 768, 1, family="sd2-v") == estimate_seconds(30, 768, 768, 1)
    assert isinstance(base, int)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"steps": 0}, "steps must be a whole number of at least 1, got 0"),
    ({"width": 512.5}, "width must be"),
    ({"batch_size": True}, "batch_size must be"),
    ({"controlnet_units": -1}, "controlnet_units must be"),
    ({"mode": "upscale"}, "mode must be one of"),
])
def test_estimate_refuses_bad_input(arguments, message):
    with pytest.raises(ValueError, match=message):
        estimate_seconds(**{"steps": 20, "width": 512, "height": 512, "batch_size": 1, **arguments})


def test_on_zerogpu_gpu_wraps_and_books_from_the_call(fake_spaces):
    wrapped = gpu(txt2img, duration_from_call(txt2img, "txt2img"))
    assert wrapped is not txt2img
    assert inspect.signature(wrapped) == inspect.signature(txt2img)  # Gradio's API names and gr.Progress
    assert wrapped.__name__ == "txt2img" and wrapped.__doc__ == txt2img.__doc__
    # positional values as a UI event sends them (sliders give 768.0), units by keyword as with_units does
    assert wrapped("cat", "", 1, 30, 7.0, 768.0, 512, "Euler a", 2,
                   controlnet_units=[{"module": "canny", "model": "m"}]) == "ran cat"
    assert wrapped(prompt="dog", negative_prompt="", seed=1, steps=10, guidance_scale=7.0, width=512, height=512,
                   sampler="Euler a", batch_size=1) == "ran dog"
    assert fake_spaces.booked == [estimate_seconds(30, 768, 512, 2, 1, "txt2img"),
                                  estimate_seconds(10, 512, 512, 1, 0, "txt2img")]


def test_duration_of_receives_the_calls_arguments(fake_spaces):
    calls = []

    def duration_of(*args, **kwargs):
        calls.append((args, kwargs))
        return 42

    wrapped = gpu(txt2img, duration_of)
    wrapped("cat", "", 1, 20, 7.0, 512, 512, "Euler", 1, progress="p")
    assert calls == [(("cat", "", 1, 20, 7.0, 512, 512, "Euler", 1), {"progress": "p"})]
    assert fake_spaces.booked == [42]


def test_unreadable_values_book_the_longest_duration():
    duration_of = duration_from_call(txt2img, "txt2img")
    assert duration_of("cat", "", 1, "many", 7.0, 512, 512, "Euler", 1) == DURATION_RANGE[1]
    disabled = [{"enabled": False}, {"module": "canny"}]
    assert duration_of("cat", "", 1, 20, 7.0, 512, 512, "Euler", 1, controlnet_units=disabled) == estimate_seconds(
        20, 512, 512, 1, 1)


def test_the_apps_endpoints_book_from_their_own_arguments(fake_spaces, demo_manager, tmp_path):
    """The UI's endpoint functions (their signatures built from the request fields) under ZeroGPU: each call books
    the duration its own steps, size and units ask for, and runs."""
    import inspect

    from extensions.controlnet.extension import ControlNet
    from service.studio import StudioService
    from ui.handlers import Handlers

    # as app.py builds it on ZeroGPU: jobs run in the calling (GPU worker) thread
    service = StudioService(demo_manager, tmp_path / "outputs", [ControlNet(tmp_path / "ControlNet")], direct=True)
    handlers = Handlers(service)
    assert service.batch_key(service.build("txt2img", {"prompt": "x"})[0]) is None, "no batching on ZeroGPU"
    assert list(inspect.signature(handlers.api["txt2img"]).parameters)[:3] == ["prompt", "negative_prompt", "seed"]
    gallery, infotext, _, _ = handlers.api["txt2img"](prompt="x", negative_prompt="", seed=1, steps=2,
                                                      guidance_scale=7.0, width=64, height=64, sampler="Euler",
                                                      batch_size=1, controlnet_units=[])
    assert len(gallery) == 1 and infotext.startswith("x\nSteps: 2")
    assert fake_spaces.booked == [estimate_seconds(2, 64, 64, 1, 0, "txt2img")]
    import gradio as gr

    with pytest.raises(gr.Error, match="sampler 'Euler b' is unknown"):  # booked first, then refused at once
        handlers.api["txt2img"]("x", "", 1, 40, 7.0, 1024, 1024, "Euler b", 2, [{"enabled": False}], None)
    assert fake_spaces.booked[-1] == estimate_seconds(40, 1024, 1024, 2, 0, "txt2img") > DURATION_RANGE[0]
