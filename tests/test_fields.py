"""Every field declared once: the schema (models/fields.py, the core's and each extension's declarations) is walked
and compared with what each interface shows and does: the tabs' controls, gradio_client's parameters, the REST
bodies' OpenAPI document and their enforcement, and the infotext written and read back."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image

from api.payloads import body_fields
from extensions.controlnet.extension import UNITS
from extensions.inpaint.options import FIELDS as INPAINT_FIELDS
from extensions.soft_inpainting.fields import FIELDS as SOFT_FIELDS
from models.fields import KINDS, Field
from models.infotext import parse_infotext
from models.request import CORE_FIELDS
from service.pnginfo import fields_from_infotext

NUMBERS = ("int", "whole", "number", "fraction", "size")
# infotext entries that are facts about the run, not fields: written, never read back into a field
FACTS = {"Model", "Model hash", "Schedule type", "Lora hashes", "TI hashes", "VAE hash"}


def every_field(service) -> list[Field]:
    """The core fields, each extension's, its REST-only ones and ControlNet's unit fields."""
    fields = list(CORE_FIELDS)
    for extension in service.extensions:
        fields += [*extension.fields, *extension.rest_body]
        fields += [item for field in extension.fields for item in field.items]
    return fields


def test_every_declaration_is_consistent(app_server):
    for field in every_field(app_server[1]):
        assert field.kind in KINDS, field
        if field.ui_range is not None:
            assert field.minimum <= field.ui_range[0] <= field.ui_range[1] <= field.maximum, field
        if field.choices and field.default is not None and field.kind == "choice":
            assert field.default in field.choices, field
        if field.kind in NUMBERS and field.default is not None and field.name not in ("width", "height"):
            assert field.check(field.default) == field.default, field  # a default passes its own check
        assert field.rest or field.setting or field.label or field.name in ("image", "mask"), \
            f"{field.name}: a field reaches people somewhere (a UI label, an A1111 name)"


def controls(url: str) -> list[dict]:
    return [component["props"] for component in requests.get(f"{url}/config", timeout=10).json()["components"]]


def test_each_tabs_controls_are_their_fields(app_server):
    """Some control labelled as each field is has that field's range and step (a slider), or its static choices:
    the core's, inpaint's, hires fix's, clip skip's, outpaint's and ControlNet's units'."""
    url, service = app_server
    shown = controls(url)
    checked = set()
    for field in every_field(service):
        labelled = [props for props in shown if field.label and props.get("label") == field.label]
        if field.kind in NUMBERS and field.control_range is not None and field.step is not None:  # a slider
            sliders = [props for props in labelled if "step" in props and "minimum" in props]
            assert any((props["minimum"], props["maximum"], props["step"]) == (*field.control_range, field.step)
                       for props in sliders), (field.name, sliders)
            checked.add(field.name)
        elif field.kind == "choice" and field.choices and labelled:
            assert any([value for _, value in props.get("choices", [])] == list(field.choices)
                       for props in labelled), (field.name, labelled)
            checked.add(field.name)
    assert {"steps", "guidance_scale", "width", "height", "batch_size", "strength", "sampler", "mask_blur", "padding",
            "inpaint_area", "masked_content", "clip_skip", "hr_scale", "hr_second_pass_steps", "hr_denoising_strength",
            "hr_sampler_name", "weight", "guidance_start", "processor_res", "control_mode", "left", "overlap",
            "fill"} <= checked


def test_gradio_client_parameters_are_the_endpoints_fields(client, app_server):
    service = app_server[1]
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for endpoint, fields in service.requests.endpoints().items():
        parameters = endpoints[f"/{endpoint}"]["parameters"]
        assert [parameter["parameter_name"] for parameter in parameters] == [field.name for field in fields]
        for parameter, field in zip(parameters, fields):
            assert parameter["python_type"]["description"] == field.describe(), field.name
            if parameter["parameter_has_default"] and field.name not in ("width", "height"):
                assert parameter["parameter_default"] == field.default, (endpoint, field.name)


def openapi_body(url: str, path: str) -> dict:
    document = requests.get(f"{url}/openapi.json", timeout=10).json()
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]


@pytest.mark.parametrize("route", ["txt2img", "img2img"])
def test_the_openapi_document_types_and_bounds_every_body_field(app_server, route):
    url, service = app_server
    schema = openapi_body(url, f"/sdapi/v1/{route}")
    properties = schema["properties"]
    for field in body_fields(route, service.extensions):
        if field.setting:
            documented = properties["override_settings"]["properties"][field.setting]
        elif "." in field.rest:
            continue  # nested: below
        else:
            documented = properties[field.rest]
        assert documented["description"] == field.describe(), field.name
        if field.minimum is not None:
            assert documented.get("minimum", documented.get("exclusiveMinimum")) == field.minimum, field.name
        if field.maximum is not None:
            assert documented["maximum"] == field.maximum, field.name
        if field.default is not None:
            assert documented["default"] == field.default, field.name
    for name in ("steps", "cfg_scale", "width", "height", "batch_size", "denoising_strength"):
        assert {"minimum", "maximum"} <= set(properties[name]) or "exclusiveMinimum" in properties[name], name
    assert properties["width"]["multipleOf"] == 8 and properties["steps"]["type"] == "integer"
    unit = properties["alwayson_scripts"]["properties"]["controlnet"]["properties"]["args"]["items"]["properties"]
    assert {item.name for item in UNITS.items} == set(unit)
    assert (unit["weight"]["minimum"], unit["weight"]["maximum"]) == (0.0, 2.0)
    if route == "txt2img":
        assert (properties["hr_scale"]["minimum"], properties["hr_scale"]["maximum"]) == (1.0, 4.0)
        settings = properties["override_settings"]["properties"]
        assert settings["CLIP_stopping_at_last_layers"]["maximum"] == 12
    else:
        assert (properties["mask_blur"]["minimum"], properties["mask_blur"]["maximum"]) == (0, 64)


def test_the_extensions_routes_document_their_bodies(app_server):
    url = app_server[0]
    assert openapi_body(url, "/controlnet/detect")["properties"]["controlnet_processor_res"]["maximum"] == 2048
    assert openapi_body(url, "/sdapi/v1/extra-single-image")["properties"]["upscaling_resize"]["maximum"] == 4.0


def small_png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("route", ["txt2img", "img2img"])
def test_a_body_past_any_documented_bound_is_a_422_naming_the_field(app_server, route):
    """For every bounded field of the body (by its A1111 name, or in override_settings), the value just past its
    maximum is refused by name, before any job runs."""
    url, service = app_server
    base = {"prompt": "x", "steps": 2, "width": 64, "height": 64}
    if route == "img2img":
        base |= {"init_images": [small_png()], "mask": small_png()}  # a mask: the inpaint fields are read too
    else:
        base |= {"enable_hr": True}  # hires fix's fields are read only when it is on
    tried = []
    for field in body_fields(route, service.extensions):
        name = field.setting or field.rest
        if field.maximum is None or field.kind not in NUMBERS or name in ("enable_hr", "n_iter"):
            continue
        past = field.maximum + (8 if field.kind == "size" else 1)
        body = {**base, "override_settings": {name: past}} if field.setting else {**base, name: past}
        response = requests.post(f"{url}/sdapi/v1/{route}", json=body, timeout=60)
        assert response.status_code == 422, (name, response.status_code, response.text[:300])
        assert name in response.json()["detail"], (name, response.json()["detail"])
        tried.append(name)
    assert {"steps", "cfg_scale", "width", "batch_size", "seed"} <= set(tried)
    assert ({"hr_scale", "hr_second_pass_steps", "CLIP_stopping_at_last_layers"} if route == "txt2img"
            else {"mask_blur", "inpaint_full_res_padding", "inpainting_fill"}) <= set(tried)


def test_infotext_entries_are_declared_and_read_back_as_sent(app_server, tmp_path):
    """Two generations that set every field with an infotext entry away from its default: each entry written is a
    declared field's key (or a fact about the run), and PNG Info reads back the value sent."""
    service = app_server[1]
    txt2img = dict(prompt="a red circle", negative_prompt="blue", seed=3, steps=3, guidance_scale=5.5, width=64,
                   height=64, sampler="DPM++ 2M Karras", clip_skip=2, enable_hr=True, hr_scale=1.5,
                   hr_upscaler="Latent (bicubic)", hr_second_pass_steps=2, hr_denoising_strength=0.6,
                   hr_prompt="a green circle", hr_negative_prompt="red", hr_sampler_name="Euler",
                   detailer_units=[{"ad_model": "face_haar", "ad_prompt": "a smiling face, detailed",
                                    "ad_confidence": 0.5, "ad_dilate_erode": 8, "ad_mask_blur": 6,
                                    "ad_denoising_strength": 0.5, "ad_inpaint_only_masked": False,
                                    "ad_inpaint_only_masked_padding": 16, "ad_use_steps": True, "ad_steps": 12}])
    picture = Image.new("RGB", (64, 64), "white")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    inpaint = dict(prompt="a square", image=picture, mask=mask, seed=4, steps=4, strength=0.6, mask_blur=8,
                   inpaint_area="Only masked", padding=16, masked_content="fill", invert_mask=True,
                   soft_inpainting=True, soft_schedule_bias=2.0, soft_preservation_strength=1.5,
                   soft_transition_contrast_boost=6.0, soft_mask_influence=0.5, soft_difference_threshold=1.25,
                   soft_difference_contrast=3.0)
    declared = {field.infotext for field in every_field(service) if field.infotext}
    for endpoint, sent in (("txt2img", txt2img), ("inpaint", inpaint)):
        infotext = service.run(endpoint, sent).infotexts[0]
        _, _, written = parse_infotext(infotext)
        assert set(written) <= declared | FACTS, set(written) - declared - FACTS
        read = fields_from_infotext(infotext, service.extensions)
        assert not read["warnings"], read["warnings"]
        for name, value in sent.items():
            if name in ("image", "mask"):
                continue
            assert read[name] == value, (name, read.get(name), value)
    fields = {field.name for field in (*INPAINT_FIELDS, *SOFT_FIELDS)}
    assert fields <= set(inpaint), "every inpaint field was set"
