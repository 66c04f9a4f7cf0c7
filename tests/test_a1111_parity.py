"""AUTOMATIC1111 parity over REST: the request bodies of its own API tests (txt2img, img2img, extras, utils) answer
200 with the right images; its sampler aliases and PLMS; hires fix with a denoising strength of 0; restore_faces;
every route its clients call; settings written, read back and applied."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

TXT2IMG = {  # the body of A1111's own txt2img API test
    "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0, "enable_hr": False, "eta": 0, "firstphase_height": 0,
    "firstphase_width": 0, "height": 64, "n_iter": 1, "negative_prompt": "", "prompt": "example prompt",
    "restore_faces": False, "s_churn": 0, "s_noise": 1, "s_tmax": 0, "s_tmin": 0, "sampler_index": "Euler a",
    "seed": -1, "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3, "styles": [], "subseed": -1,
    "subseed_strength": 0, "tiling": False, "width": 64,
}


def png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def picture(encoded: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")


def post(url: str, route: str, body: dict) -> requests.Response:
    return requests.post(f"{url}{route}", json=body, timeout=120)


@pytest.mark.parametrize("change, images, size", [
    ({}, 1, (64, 64)),
    ({"negative_prompt": "example negative prompt"}, 1, (64, 64)),
    ({"prompt": "((emphasis)), (emphasis1:1.1), [to:1], [from::2], [from:to:0.3], [alt|alt1]"}, 1, (64, 64)),
    ({"height": 128}, 1, (64, 128)),
    ({"enable_hr": True}, 1, (96, 96)),  # the demo model's hires default: 1.5x
    ({"restore_faces": True}, 1, (64, 64)),
    ({"sampler_index": "PLMS"}, 1, (64, 64)),
    ({"sampler_index": "DDIM"}, 1, (64, 64)),
    ({"sampler_index": "UniPC"}, 1, (64, 64)),
    ({"n_iter": 2}, 2, (64, 64)),
    ({"batch_size": 2}, 2, (64, 64)),
])
def test_a1111s_own_txt2img_test_requests_answer_200_with_their_images(app_server, change, images, size):
    response = post(app_server[0], "/sdapi/v1/txt2img", {**TXT2IMG, **change})
    assert response.status_code == 200, response.text[:500]
    result = response.json()
    assert [picture(encoded).size for encoded in result["images"]] == [size] * images
    if change.get("restore_faces"):
        assert "restore_faces: no face restorer is installed here" in json.loads(result["info"])["warnings"][0]


def test_hires_fix_with_denoising_0_is_the_upscaled_first_pass(app_server):
    """As A1111 takes it: the picture upscaled, no second pass."""
    body = {**TXT2IMG, "seed": 5, "width": 64, "height": 64}
    first = picture(post(app_server[0], "/sdapi/v1/txt2img", body).json()["images"][0])
    upscale_only = {**body, "enable_hr": True, "hr_upscaler": "Lanczos", "hr_scale": 2, "denoising_strength": 0}
    hires = picture(post(app_server[0], "/sdapi/v1/txt2img", upscale_only).json()["images"][0])
    assert np.array_equal(np.asarray(hires), np.asarray(first.resize((128, 128), Image.Resampling.LANCZOS)))


@pytest.mark.parametrize("alias, infotext", [("k_dpmpp_2m_ka", "Sampler: DPM++ 2M, Schedule type: Karras"),
                                             ("k_euler_a", "Sampler: Euler a,"), ("plms", "Sampler: PLMS,")])
def test_a1111s_sampler_aliases_are_its_samplers(app_server, alias, infotext):
    response = post(app_server[0], "/sdapi/v1/txt2img", {**TXT2IMG, "sampler_name": alias})
    assert response.status_code == 200 and infotext in json.loads(response.json()["info"])["infotexts"][0]
    listed = requests.get(f"{app_server[0]}/sdapi/v1/samplers", timeout=10).json()
    assert "k_euler_a" in next(sampler for sampler in listed if sampler["name"] == "Euler a")["aliases"]
    assert "PLMS" in [sampler["name"] for sampler in listed]


def test_a1111s_own_img2img_test_requests_answer_200(app_server):
    source = Image.new("RGB", (64, 64), "navy")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    body = {"batch_size": 1, "cfg_scale": 7, "denoising_strength": 0.75, "eta": 0, "height": 64,
            "include_init_images": False, "init_images": [png(source)], "inpaint_full_res": False,
            "inpaint_full_res_padding": 0, "inpainting_fill": 0, "inpainting_mask_invert": False, "mask": None,
            "mask_blur": 4, "n_iter": 1, "negative_prompt": "", "override_settings": {}, "prompt": "example prompt",
            "resize_mode": 0, "restore_faces": False, "s_churn": 0, "s_noise": 1, "s_tmax": 0, "s_tmin": 0,
            "sampler_index": "Euler a", "seed": -1, "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3,
            "styles": [], "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64}
    for change in ({}, {"mask": png(mask)}, {"mask": png(mask), "inpainting_mask_invert": True}):
        response = post(app_server[0], "/sdapi/v1/img2img", {**body, **change})
        assert response.status_code == 200, response.text[:500]
        assert picture(response.json()["images"][0]).size == (64, 64)


def test_a1111s_own_extras_and_utils_requests_answer_200(app_server):
    url, image = app_server[0], png(Image.new("RGB", (32, 32), "red"))
    extras = {"resize_mode": 0, "show_extras_results": True, "gfpgan_visibility": 0, "codeformer_visibility": 0,
              "codeformer_weight": 0, "upscaling_resize": 2, "upscaling_resize_w": 128, "upscaling_resize_h": 128,
              "upscaling_crop": True, "upscaler_1": "Lanczos", "upscaler_2": "None",
              "extras_upscaler_2_visibility": 0, "image": image}
    for body in (extras, {"image": image}, {"image": image, "model": "clip"}):
        response = post(url, "/sdapi/v1/extra-single-image", body)
        assert response.status_code == 200 and picture(response.json()["image"]).size == (64, 64)
    for route in ("cmd-flags", "samplers", "upscalers", "sd-models", "hypernetworks", "face-restorers",
                  "realesrgan-models", "prompt-styles", "embeddings", "latent-upscale-modes", "memory", "script-info",
                  "schedulers", "loras", "sd-vae"):
        assert requests.get(f"{url}/sdapi/v1/{route}", timeout=10).status_code == 200, route
    options = requests.get(f"{url}/sdapi/v1/options", timeout=10).json()
    before = options["send_seed"]
    assert post(url, "/sdapi/v1/options", {"send_seed": not before}).status_code == 200
    assert requests.get(f"{url}/sdapi/v1/options", timeout=10).json()["send_seed"] is (not before)
    post(url, "/sdapi/v1/options", {"send_seed": before})


def test_a_written_setting_applies_to_the_next_requests_and_bad_ones_are_named(app_server):
    url = app_server[0]
    assert post(url, "/sdapi/v1/options", {"CLIP_stopping_at_last_layers": 2}).status_code == 200
    try:
        assert requests.get(f"{url}/sdapi/v1/options", timeout=10).json()["CLIP_stopping_at_last_layers"] == 2
        written = post(url, "/sdapi/v1/txt2img", {"prompt": "x", "steps": 1, "width": 64, "height": 64}).json()
        assert "Clip skip: 2" in json.loads(written["info"])["infotexts"][0]
        own = post(url, "/sdapi/v1/txt2img", {"prompt": "x", "steps": 1, "width": 64, "height": 64,
                                               "override_settings": {"CLIP_stopping_at_last_layers": 1}}).json()
        assert "Clip skip" not in json.loads(own["info"])["infotexts"][0], "a request's own setting wins"
    finally:
        post(url, "/sdapi/v1/options", {"CLIP_stopping_at_last_layers": 1})
    unknown = post(url, "/sdapi/v1/options", {"no_such_setting": 1})
    assert unknown.status_code == 422 and "no setting 'no_such_setting' here" in unknown.json()["detail"]
    bad = post(url, "/sdapi/v1/options", {"CLIP_stopping_at_last_layers": 40})
    assert bad.status_code == 422
    assert bad.json()["detail"] == "CLIP_stopping_at_last_layers must be a whole number from 1 to 12, got 40"
    assert post(url, "/sdapi/v1/options", {"samples_format": "jpg"}).json()["detail"] == \
        "samples_format is read-only here"


def test_the_other_routes_a1111_clients_call(app_server):
    url, service = app_server
    flags = requests.get(f"{url}/sdapi/v1/cmd-flags", timeout=10).json()
    assert flags["api"] is True and flags["api_auth"] is None and "lora_dir" not in flags, "no secret, no path"
    assert requests.get(f"{url}/sdapi/v1/hypernetworks", timeout=10).json() == []
    assert requests.get(f"{url}/sdapi/v1/memory", timeout=10).json()["ram"]["total"] > 0
    modes = [mode["name"] for mode in requests.get(f"{url}/sdapi/v1/latent-upscale-modes", timeout=10).json()]
    assert modes[0] == "Latent" and "Latent (nearest-exact)" in modes
    assert [model["name"] for model in requests.get(f"{url}/sdapi/v1/realesrgan-models", timeout=10).json()] == \
        ["tiny-x2"]
    info = requests.get(f"{url}/sdapi/v1/script-info", timeout=10).json()
    controlnet = next(script for script in info if script["name"] == "controlnet" and not script["is_img2img"])
    weight = next(argument for argument in controlnet["args"] if argument["label"] == "Control Weight")
    assert (weight["minimum"], weight["maximum"]) == (0.0, 2.0)
    assert requests.get(f"{url}/controlnet/version", timeout=10).json() == {"version": 2}
    assert requests.get(f"{url}/controlnet/settings", timeout=10).json() == {"control_net_unit_count": 3}
    types = requests.get(f"{url}/controlnet/control_types", timeout=10).json()["control_types"]
    models = requests.get(f"{url}/controlnet/model_list", timeout=10).json()["model_list"]
    assert "canny" in types["Canny"]["module_list"] and types["All"]["model_list"] == ["None", *models]
    assert re.fullmatch(r"edges \[[0-9a-f]{8}\]", models[0]), "as sd-webui-controlnet names them: name [hash]"
    batch = post(url, "/sdapi/v1/extra-batch-images", {"imageList": [
        {"data": png(Image.new("RGB", (20, 10), "red")), "name": "a"},
        {"data": png(Image.new("RGB", (10, 20), "blue")), "name": "b"}], "upscaler_1": "Lanczos",
        "upscaling_resize": 2})
    assert [picture(image).size for image in batch.json()["images"]] == [(40, 20), (20, 40)]
    assert post(url, "/sdapi/v1/refresh-checkpoints", {}).status_code == 200


def test_refresh_loras_lists_a_lora_added_since(app_server):
    url, service = app_server
    library = service.extension("lora").library
    added = library.folder / "added-since.safetensors"
    shutil.copy(library.folder / "ink.safetensors", added)
    try:
        assert post(url, "/sdapi/v1/refresh-loras", {}).status_code == 200
        assert "added-since" in [lora["name"] for lora in requests.get(f"{url}/sdapi/v1/loras", timeout=10).json()]
    finally:
        added.unlink()
        post(url, "/sdapi/v1/refresh-loras", {})


def test_skip_stops_the_running_job_as_interrupt_does(app_server):
    url, service = app_server
    answers = {}
    slow = threading.Thread(target=lambda: answers.update(r=post(url, "/sdapi/v1/txt2img", {
        "prompt": "slow", "steps": 150, "width": 256, "height": 256})))
    slow.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (service.state.running and service.state.steps == 150 and
                                                 service.state.step):  # this job's own first step
        time.sleep(0.05)
    assert post(url, "/sdapi/v1/skip", {}).status_code == 200
    slow.join(60)
    assert any("interrupted" in warning for warning in json.loads(answers["r"].json()["info"])["warnings"])


def test_unload_and_reload_checkpoint_and_a_job_after_an_unload(app_server):
    url, service = app_server
    body = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 4}
    before = post(url, "/sdapi/v1/txt2img", body).json()["images"][0]
    assert post(url, "/sdapi/v1/unload-checkpoint", {}).status_code == 200
    assert service.manager.unloaded
    after = post(url, "/sdapi/v1/txt2img", body)
    assert after.status_code == 200 and not service.manager.unloaded, "the next job brings the model back"
    assert np.array_equal(np.asarray(picture(after.json()["images"][0])), np.asarray(picture(before)))
    assert post(url, "/sdapi/v1/unload-checkpoint", {}).status_code == 200
    assert post(url, "/sdapi/v1/reload-checkpoint", {}).status_code == 200 and not service.manager.unloaded
