"""ARCHITECTURE.md's worked example, run as written: its Sharpen extension's files in a folder of their own, added
to the extensions package, make a field that every interface takes."""

from __future__ import annotations

import re
import sys

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import extensions
from api.payloads import body_fields, rest_call
from service.pnginfo import fields_from_infotext
from service.studio import StudioService
from tests.conftest import ROOT

ARCHITECTURE = (ROOT / "ARCHITECTURE.md").read_text()


@pytest.fixture
def sharpen(tmp_path):
    """The example's extension module, importable as extensions.sharpen."""
    files = re.findall(r"`(extensions/sharpen/[\w.]+)`:\n\n```python\n(.*?)```", ARCHITECTURE, re.S)
    assert [path for path, _ in files] == ["extensions/sharpen/fields.py", "extensions/sharpen/extension.py",
                                           "extensions/sharpen/panel.py"]
    for path, code in files:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code)
    (tmp_path / "extensions" / "sharpen" / "__init__.py").write_text("")
    extensions.__path__.append(str(tmp_path / "extensions"))
    try:
        from extensions.sharpen.extension import Sharpen

        yield Sharpen()
    finally:
        extensions.__path__.remove(str(tmp_path / "extensions"))
        for name in [name for name in sys.modules if name.startswith("extensions.sharpen")]:
            del sys.modules[name]


def test_the_worked_example_makes_a_field_every_interface_takes(sharpen, demo_manager, tmp_path):
    service = StudioService(demo_manager, tmp_path / "outputs", [sharpen])
    asked = {"prompt": "a red circle", "seed": 1, "steps": 2, "width": 64, "height": 64}
    plain, sharp = (service.run("txt2img", {**asked, "sharpen": amount}) for amount in (0, 1.5))
    assert "Sharpen" not in plain.infotexts[0] and "Sharpen: 1.5" in sharp.infotexts[0]
    pixels = [np.asarray(Image.open(path)) for path in (plain.files[0], sharp.files[0])]
    assert (pixels[0] != pixels[1]).any(), "the result is sharpened"
    assert fields_from_infotext(sharp.infotexts[0], [sharpen])["sharpen"] == 1.5
    with pytest.raises(ValueError, match=r"sharpen must be from 0.0 to 2.0, got 3"):
        service.build("txt2img", {**asked, "sharpen": 3})
    assert "sharpen" in [field.name for field in service.requests.endpoints()["inpaint"]]
    assert "sharpen" in [field.rest for field in body_fields("img2img", [sharpen])]
    assert rest_call({"prompt": "x", "sharpen": 0.5}, "txt2img", [sharpen]).fields["sharpen"] == 0.5
    with gr.Blocks():
        panel = sharpen.panel(None)
    slider = panel.inputs[0]
    assert (slider.minimum, slider.maximum, slider.step, slider.label) == (0.0, 2.0, 0.1, "Sharpen")
