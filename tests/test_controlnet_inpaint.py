"""sd-webui-controlnet's inpaint preprocessors (inpaint_global_harmonious, inpaint_only, inpaint_only+lama): the map
with its hole, -1 in the hole for the ControlNet, the mask travelling with the unit (or the inpaint tab's), on the
9-channel and the 4-channel base, txt2img and img2img jobs that keep the rest, /controlnet/detect with masks, and
bad input named."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw, ImageFilter

from extensions.controlnet import extension as controlnet
from extensions.controlnet.inpaint_maps import control_tensor
from extensions.inpaint import Inpaint
from models import lama
from models.images import png_base64
from service.studio import StudioService
from testing.controlnet_files import controlnet_for

SIZE = 64


def picture() -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (40, 90, 200))
    ImageDraw.Draw(image).rectangle([8, 8, 30, 56], fill=(230, 200, 40))
    return image


def hole(box=(20, 16, 48, 48), size=(SIZE, SIZE)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def studio(manager, folder, outputs, annotators) -> StudioService:
    unet, scale = manager.pipelines["txt2img"].unet, manager.pipelines["txt2img"].vae_scale_factor
    controlnet_for(unet, seed=5, vae_scale_factor=scale).save_pretrained(folder / "inpaint_cn")
    return StudioService(manager, outputs, [Inpaint(annotators),
                                            controlnet.ControlNet(folder, annotator_dir=annotators)])


@pytest.fixture(scope="module", params=["9-channel", "4-channel"])
def service(request, demo_manager, txt2img_manager, annotator_weights, tmp_path_factory):
    manager = demo_manager if request.param == "9-channel" else txt2img_manager
    return studio(manager, tmp_path_factory.mktemp("ControlNet"), tmp_path_factory.mktemp("outputs"),
                  annotator_weights)


def unit(module: str, **settings) -> dict:
    return {"enabled": True, "module": module, "model": "inpaint_cn", **settings}


def generate(service, mode, units, **fields) -> tuple[np.ndarray, str]:
    inputs = {"prompt": "a cat", "steps": 3, "seed": 4, "width": SIZE, "height": SIZE, "controlnet_units": units,
              **fields}
    generation = service.generate(*service.build(mode, inputs))
    return np.asarray(Image.open(generation.files[0]).convert("RGB")).astype(int), generation.infotexts[0]


def test_the_maps_mark_the_hole_and_lama_fills_it(service, annotator_weights):
    extension = service.extension("controlnet")
    for module in ("inpaint_global_harmonious", "inpaint_only"):
        mapped = extension.control_map(picture(), module, mask=hole())
        assert mapped.mode == "RGBA"
        alpha = np.asarray(mapped.getchannel("A"))
        assert (alpha[np.asarray(hole()) == 255] == 0).all() and (alpha[np.asarray(hole()) == 0] == 255).all()
        assert np.array_equal(np.asarray(mapped.convert("RGB")), np.asarray(picture()))
    filled = extension.control_map(picture(), "inpaint_only+lama", mask=hole())
    expected = lama.fill(picture(), hole(), annotator_weights)
    assert np.array_equal(np.asarray(filled.convert("RGB")), np.asarray(expected))
    tensor = control_tensor(filled)
    assert tensor.shape == (1, 3, SIZE, SIZE)
    assert (tensor[0, :, 20, 20] == -1).all() and tensor[0, :, 4, 4].min() >= 0


def test_inpaint_tab_units_take_the_tabs_picture_and_mask_and_reach_the_controlnet_as_minus_one(service,
                                                                                               monkeypatch):
    from extensions.controlnet import pipeline

    seen = []
    real_forward = pipeline.UnitControlNets.forward

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, *args, **kwargs):
        seen.append(float(controlnet_cond[0].min()))
        return real_forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, *args, **kwargs)

    monkeypatch.setattr(pipeline.UnitControlNets, "forward", forward)
    for module in ("inpaint_only", "inpaint_only+lama", "inpaint_global_harmonious"):
        result, infotext = generate(service, "inpaint", [unit(module)], image=picture(), mask=hole(), strength=0.9,
                                    mask_blur=0)
        outside = np.asarray(hole()) == 0
        assert np.array_equal(result[outside], np.asarray(picture()).astype(int)[outside]), module
        assert f'ControlNet 0: "Module: {module}, Model: inpaint_cn' in infotext
    assert seen and max(seen) == -1.0, "the hole reaches the ControlNet as -1"


def test_txt2img_inpaint_only_keeps_the_units_picture_outside_its_hole(service):
    mask = hole()
    result, _ = generate(service, "txt2img", [unit("inpaint_only", image=picture(), mask=mask)])
    assert result.shape == (SIZE, SIZE, 3)
    outside = np.asarray(mask.filter(ImageFilter.GaussianBlur(4))) == 0
    assert np.array_equal(result[outside], np.asarray(picture()).astype(int)[outside])
    assert np.abs(result[np.asarray(mask) == 255] - np.asarray(picture())[np.asarray(mask) == 255]).mean() > 5


def test_img2img_global_harmonious_repaints_the_whole_picture(service):
    result, infotext = generate(service, "img2img", [unit("inpaint_global_harmonious", mask=hole())],
                                image=picture(), strength=0.9)
    outside = np.asarray(hole()) == 0
    assert np.abs(result[outside] - np.asarray(picture()).astype(int)[outside]).mean() > 2, "not kept: harmonised"
    assert "Mask blur" not in infotext, "an img2img job, not an inpaint one"


@pytest.mark.parametrize(("mode", "settings", "message"), [
    ("txt2img", {"image": picture()}, "controlnet unit 0: inpaint_only needs a mask"),
    ("txt2img", {}, "controlnet unit 0: inpaint_only needs an image"),
    ("txt2img", {"image": picture(), "mask": hole(size=(32, 32))},
     "controlnet unit 0: mask is 32x32 but its picture is 64x64"),
    ("img2img", {"module": "inpaint_global_harmonious"}, "inpaint_global_harmonious needs a mask"),
])
def test_bad_inpaint_units_are_named(service, mode, settings, message):
    fields = {"image": picture(), "strength": 0.5} if mode == "img2img" else {}
    with pytest.raises(ValueError, match=message):
        generate(service, mode, [{**unit("inpaint_only"), **settings}], **fields)



def test_rest_detect_takes_masks_and_units_take_a_mask(app_server):
    url, _ = app_server
    body = {"controlnet_module": "inpaint_only+lama", "controlnet_input_images": [png_base64(picture())],
            "controlnet_masks": [png_base64(hole())]}
    answer = requests.post(f"{url}/controlnet/detect", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    detected = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert detected.mode == "RGBA" and detected.getchannel("A").getpixel((30, 30)) == 0
    modules = requests.get(f"{url}/controlnet/module_list", timeout=30).json()["module_list"]
    assert {"inpaint_global_harmonious", "inpaint_only", "inpaint_only+lama"} <= set(modules)
    bad = requests.post(f"{url}/controlnet/detect", json={**body, "controlnet_masks": [png_base64(hole(size=(8, 8)))]},
                        timeout=60)
    assert bad.status_code == 422 and "mask is 8x8 but its picture is 64x64" in bad.json()["detail"]
    txt2img = {"prompt": "a cat", "steps": 2, "seed": 1, "width": SIZE, "height": SIZE, "alwayson_scripts": {
        "controlnet": {"args": [{"module": "inpaint_only", "model": "edges", "image": png_base64(picture()),
                                 "mask_image": png_base64(hole())}]}}}
    answer = requests.post(f"{url}/sdapi/v1/txt2img", json=txt2img, timeout=120)
    assert answer.status_code == 200, answer.text
    result = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))).convert("RGB"))
    outside = np.asarray(hole().filter(ImageFilter.GaussianBlur(4))) == 0
    assert np.array_equal(result[outside], np.asarray(picture())[outside])


def test_preview_in_the_inpaint_tab_shows_the_painted_hole(service):
    from extensions.controlnet.panel import make_preview
    from ui.handlers import editor_image_and_mask, image_file

    preview = make_preview(service.extension("controlnet"), image_file,
                           lambda editor: editor_image_and_mask(editor)[0],
                           lambda editor: editor_image_and_mask(editor)[1])
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([20, 16, 48, 48], fill=(255, 255, 255, 255))
    editor = {"background": picture(), "layers": [layer], "composite": None}
    shown = Image.open(preview(None, "inpaint_only", 512, None, None, True, "Crop and Resize", SIZE, SIZE, editor))
    assert shown.mode == "RGBA" and shown.getchannel("A").getpixel((30, 30)) == 0
    assert shown.getchannel("A").getpixel((4, 4)) == 255
