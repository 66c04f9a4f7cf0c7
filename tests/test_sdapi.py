"""AUTOMATIC1111's REST API against the launched app, through the real `webuiapi` client and plain HTTP: generation,
listings, options, progress and interrupt, PNG Info, ControlNet, errors, the shared queue, --api and auth."""

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
import webuiapi
from PIL import Image, ImageDraw

from app import start_in_background, stop_in_background
from models.sampler_names import BATCH_TOLERANCE
from testing.ports import free_port
from tests.conftest import checkpoint_dir


@pytest.fixture(scope="module")
def api(app_server):
    host, port = app_server[0].removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a", steps=3)


def ring(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(image).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], outline="white", width=3)
    return image


def test_txt2img_through_webuiapi(api):
    result = api.txt2img(prompt="a red circle", negative_prompt="blurry", seed=21, steps=3, width=64, height=72,
                         batch_size=2, n_iter=2, cfg_scale=6, sampler_name="DPM++ 2M", scheduler="karras")
    assert len(result.images) == 4 and result.images[0].size == (64, 72)
    assert result.info["all_seeds"] == [21, 22, 23, 24]
    text = result.info["infotexts"][0]
    assert text.startswith("a red circle\nNegative prompt: blurry\nSteps: 3, Sampler: DPM++ 2M, Schedule type: Karras")
    assert result.images[0].info["parameters"] == text, "the PNG carries the infotext"
    assert "s_churn" in result.info["ignored_fields"] and "eta" in result.info["ignored_fields"]
    assert "restore_faces" not in result.info["ignored_fields"] and result.info["warnings"] == [], "read, and off"
    assert "enable_hr" not in result.info["ignored_fields"], "read (hires fix is off here)"


def test_img2img_with_a_mask_through_webuiapi(api):
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8))
    mask = Image.new("L", (128, 96), 0)
    mask.paste(255, (40, 30, 90, 70))
    result = api.img2img(images=[picture], mask_image=mask, prompt="green", seed=3, steps=4, width=64, height=64,
                         denoising_strength=0.9, inpaint_full_res=1, inpaint_full_res_padding=8, mask_blur=0)
    image = np.asarray(result.images[0].convert("RGB"))
    assert image.shape == (96, 128, 3)
    outside = np.asarray(mask) == 0
    assert np.array_equal(image[outside], np.asarray(picture)[outside]), "pixels outside the mask are kept"
    assert "Inpaint area: Only masked" in result.info["infotexts"][0]
    plain = api.img2img(images=[picture], prompt="x", seed=1, steps=4, width=64, height=64, denoising_strength=0.5,
                        resize_mode=1)
    assert plain.images[0].size == (64, 64) and "Denoising strength: 0.5" in plain.info["infotexts"][0]


def test_controlnet_unit_through_alwayson_scripts(api):
    unit = webuiapi.ControlNetUnit(image=ring(), module="canny", model="edges", weight=0.9)
    # a fresh alwayson_scripts each call: webuiapi writes the units into its mutable default otherwise, and
    # every later call would carry them
    result = api.txt2img(prompt="a ring", seed=5, steps=3, width=64, height=64, controlnet_units=[unit],
                         alwayson_scripts={})
    assert 'ControlNet 0: "Module: canny, Model: edges [' in result.info["infotexts"][0]
    plain = api.txt2img(prompt="a ring", seed=5, steps=3, width=64, height=64, alwayson_scripts={})
    assert np.abs(np.asarray(result.image).astype(int) - np.asarray(plain.image)).max() > 10
    assert api.controlnet_model_list()[0].startswith("edges [")
    assert {"none", "canny"} <= set(api.controlnet_module_list())
    detected = api.controlnet_detect([ring()], module="canny", threshold_a=100, threshold_b=200)
    edges = np.asarray(detected.images[0].convert("L"))
    assert edges.max() > 0 and edges[28:36, 28:36].max() == 0


def test_controlnet_detect_is_pixel_perfect_unless_turned_off(app_server):
    """A1111 clients send controlnet_processor_res 512 by default; detected at 512, a 64 px image's canny edges fade
    to faint traces. Pixel perfect (the default) detects at the image's own resolution, and says it did."""
    from training.shapes import Scene, Shape, render

    buffer = io.BytesIO()
    render(Scene((Shape("circle", "red", "large"),), "blue"), 64).save(buffer, format="PNG")
    payload = {"controlnet_module": "canny", "controlnet_input_images": [base64.b64encode(buffer.getvalue()).decode()],
               "controlnet_processor_res": 512}
    strong = {}
    for pixel_perfect in (None, False):
        body = payload if pixel_perfect is None else {**payload, "controlnet_pixel_perfect": pixel_perfect}
        response = requests.post(f"{app_server[0]}/controlnet/detect", json=body, timeout=30)
        assert response.status_code == 200, response.text
        detected = Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0]))).convert("L")
        assert detected.size == (64, 64)
        strong[pixel_perfect] = int((np.asarray(detected) > 128).sum())
        assert ("not at controlnet_processor_res" in response.json()["info"]) is (pixel_perfect is None)
    assert strong[None] > 100 and strong[False] < 10, strong
    response = requests.post(f"{app_server[0]}/controlnet/detect", json={**payload, "controlnet_pixel_perfect": "yes"},
                             timeout=30)
    assert response.status_code == 422 and "controlnet_pixel_perfect must be true or false" in response.text


def test_listings_and_options(api, app_server):
    assert {"Euler a", "DPM++ 2M", "DDIM"} <= {sampler["name"] for sampler in api.get_samplers()}
    assert {"automatic", "karras"} == {scheduler["name"] for scheduler in api.get_schedulers()}
    assert [lora["name"] for lora in api.get_loras()] == ["ink"]
    models = api.get_sd_models()
    assert models[0]["model_name"] == "sd-shapes-inpainting" and models[0]["title"].startswith("sd-shapes-inpainting [")
    assert api.get_options()["sd_model_checkpoint"] == models[0]["title"]
    response = requests.post(f"{app_server[0]}/sdapi/v1/refresh-loras", timeout=10)
    assert response.status_code == 200


def test_switching_the_base_model_through_options(api, app_server, txt2img_folder, tmp_path_factory):
    service = app_server[1]
    demo_title = api.get_options()["sd_model_checkpoint"]
    shutil.copytree(txt2img_folder, checkpoint_dir(tmp_path_factory) / "tiny" / "sd-txt2img")
    assert "tiny/sd-txt2img" in [model["model_name"] for model in api.get_sd_models()]
    try:
        api.set_options({"sd_model_checkpoint": "tiny/sd-txt2img"})
        assert api.get_options()["sd_model_checkpoint"].startswith("sd-txt2img [")
        switched = service.manager
        api.set_options({"sd_model_checkpoint": "tiny/sd-txt2img"})  # the same name again: nothing reloads
        assert service.manager is switched
        assert not service.manager.is_inpainting_model
        assert api.txt2img(prompt="x", seed=1, steps=2, width=64, height=64).image.size == (64, 64)
    finally:
        api.set_options({"sd_model_checkpoint": "demo"})
    assert api.get_options()["sd_model_checkpoint"] == demo_title
    demo = service.manager
    api.set_options({"sd_model_checkpoint": "demo"})
    assert service.manager is demo, "the model in use is not loaded again"
    bad = requests.post(f"{app_server[0]}/sdapi/v1/options", json={"sd_model_checkpoint": str(txt2img_folder)},
                        timeout=30)  # a model folder on the server, but outside the checkpoint folder
    assert bad.status_code == 422 and bad.json()["detail"].startswith(
        f"sd_model_checkpoint: no model named {str(txt2img_folder)!r}; name a checkpoint in Stable-diffusion/ "
        "(tiny/sd-txt2img)")


def test_switching_family_through_options_and_sd_models_naming_each(api, app_server, family_folder,
                                                                     tmp_path_factory):
    service = app_server[1]
    copy = checkpoint_dir(tmp_path_factory) / "families"
    shutil.copytree(family_folder("sdxl-inpainting"), copy / "tiny-sdxl-inpainting")
    shutil.copytree(family_folder("sd2-v"), copy / "tiny-sd2-v")
    shutil.copytree(family_folder("sdxl-refiner"), copy / "tiny-refiner")
    try:
        listed = {model["model_name"]: model["family"] for model in api.get_sd_models()}
        assert listed["sd-shapes-inpainting"] == "SD 1.x"
        assert listed["families/tiny-sdxl-inpainting"] == "SDXL"
        assert listed["families/tiny-sd2-v"] == "SD 2.x v-prediction"
        for name, family in (("families/tiny-sdxl-inpainting", "SDXL"), ("families/tiny-sd2-v", "SD 2.x")):
            api.set_options({"sd_model_checkpoint": name})
            assert api.get_sd_models()[0]["family"].startswith(family)
            result = api.txt2img(prompt="a (red:1.2) circle BREAK blue", negative_prompt="", seed=3, steps=2,
                                 width=64, height=64)
            assert result.image.size == (64, 64) and f"Model: {name.rsplit('/')[-1]}" in result.info["infotexts"][0]
            if family == "SDXL":  # A1111's refiner fields, in the body as A1111 takes them
                response = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", timeout=60, json={
                    "prompt": "a red circle", "steps": 4, "width": 64, "height": 64, "seed": 3,
                    "refiner_checkpoint": "families/tiny-refiner", "refiner_switch_at": 0.5})
                assert response.status_code == 200, response.text
                info = json.loads(response.json()["info"])
                assert "Refiner: tiny-refiner [" in info["infotexts"][0] and "Refiner switch at: 0.5" in \
                    info["infotexts"][0]
    finally:
        api.set_options({"sd_model_checkpoint": "demo"})
        shutil.rmtree(copy)
    assert service.manager.family.name == "SD 1.x"


def test_progress_during_a_run_and_interrupt(api):
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=api.txt2img(prompt="slow", seed=1, steps=150,
                                                                             width=256, height=256)))
    worker.start()
    deadline = time.monotonic() + 60
    progress = api.get_progress()
    while (progress["progress"] == 0 or progress["state"]["sampling_step"] < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
        progress = api.get_progress()
    assert 0 < progress["progress"] < 1 and progress["state"]["sampling_steps"] == 150 and progress["eta_relative"] > 0
    api.interrupt()
    worker.join(timeout=60)
    assert len(result["r"].images) == 1 and any("interrupted" in w for w in result["r"].info["warnings"])
    assert api.get_progress()["progress"] == 0


def test_png_info_of_our_image(api):
    image = api.txt2img(prompt="a blue square <lora:ink:0.5>", seed=9, steps=2, width=64, height=64).image
    info = api.png_info(image)
    assert info.info.startswith("a blue square <lora:ink:0.5>\nSteps: 2")
    assert info.parameters["Prompt"] == "a blue square <lora:ink:0.5>" and info.parameters["Seed"] == "9"


@pytest.mark.parametrize("payload, field", [
    ({"prompt": "x", "steps": 0}, "steps must be from 1 to 150, got 0"),
    ({"prompt": "x", "width": 100}, "width must be a multiple of 8"),
    ({"prompt": "x", "sampler_name": "Nope"}, "sampler_name 'Nope' is unknown"),  # A1111's field name
    ({"prompt": "x", "n_iter": 0}, "n_iter must be a whole number from 1 to 100, got 0"),
])
def test_bad_values_get_422_naming_the_field_and_the_server_keeps_serving(app_server, payload, field):
    response = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json=payload, timeout=60)
    assert response.status_code == 422 and field in response.json()["detail"]
    ok = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, "width": 64,
                                                                  "height": 64}, timeout=60)
    assert ok.status_code == 200


def test_whole_numbers_may_come_as_json_floats():
    from api.payloads import rest_call

    assert rest_call({"prompt": "x", "n_iter": 2.0}, "txt2img").n_iter == 2
    with pytest.raises(ValueError, match=r"n_iter must be a whole number from 1 to 100, got 2\.5"):
        rest_call({"prompt": "x", "n_iter": 2.5}, "txt2img")


def test_an_empty_body_generates_with_the_defaults(app_server):
    response = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json={"steps": 1}, timeout=60)
    info = json.loads(response.json()["info"])
    assert response.status_code == 200 and info["infotexts"][0].startswith("\nSteps: 1")
    # A1111's 512 px default is 8x the demo model's side: said, with what the job costs here, not refused
    [warning] = info["warnings"]
    assert re.fullmatch(r"512x512 is far beyond this model's native 64x64: each step takes at least 64x as long \(this "
                        r"job: about \d+ s here\), and the model may repeat or stretch what it draws", warning), warning


def test_img2img_without_a_size_keeps_the_image_size(app_server):
    buffer = io.BytesIO()
    Image.new("RGB", (128, 96), "navy").save(buffer, format="PNG")
    response = requests.post(f"{app_server[0]}/sdapi/v1/img2img", json={
        "prompt": "x", "steps": 2, "init_images": [base64.b64encode(buffer.getvalue()).decode()]}, timeout=60)
    assert response.status_code == 200
    assert Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0]))).size == (128, 96)


def test_bad_images_get_422(app_server):
    response = requests.post(f"{app_server[0]}/sdapi/v1/img2img", json={"prompt": "x", "init_images": ["bm90"]},
                             timeout=30)
    assert response.status_code == 422 and "init_images[0] is not a readable base64-encoded image" in response.text


def single(url: str, seed: int) -> np.ndarray:
    body = {"prompt": "interleaved", "seed": seed, "steps": 3, "width": 64, "height": 64}
    encoded = requests.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=120).json()["images"][0]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


def test_ui_api_and_rest_interleaved_each_get_their_own_image(app_server, client):
    url = app_server[0]
    alone = {seed: single(url, seed) for seed in (1, 2, 3, 4)}
    results, errors = {}, []

    def rest(seed):
        try:
            results[("rest", seed)] = single(url, seed)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def gradio(seed):
        try:
            gallery, _, _ = client.predict(prompt="interleaved", seed=seed, steps=3, width=64, height=64,
                                           api_name="/txt2img")
            results[("gradio", seed)] = np.asarray(Image.open(gallery[0]["image"]))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=fn, args=(seed,)) for seed in (1, 2, 3, 4) for fn in (rest, gradio)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    for (route, seed), image in results.items():  # compatible requests may have run batched (test_batching.py)
        assert np.abs(image.astype(int) - alone[seed]).max() <= BATCH_TOLERANCE, (route, seed)


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory):
    """A second app: REST API behind --api-auth, UI behind --auth, a queue of one."""
    import app

    config = app.parse_config(
        ["--model", "demo", "--device", "cpu", "--port", str(free_port()), "--api", "on", "--api-auth", "bot:s3cret",
         "--auth", "me:pw", "--queue-size", "1", "--lora-dir", str(tmp_path_factory.mktemp("Lora")),
         "--controlnet-dir", str(tmp_path_factory.mktemp("ControlNet")),
         "--output-dir", str(tmp_path_factory.mktemp("outputs"))],
        environ={},
    )
    server, _ = start_in_background(config)
    yield f"http://{config.host}:{config.port}"
    stop_in_background(server)


def test_ui_login(locked_server):
    from gradio_client import Client

    with pytest.raises(ValueError):  # gradio_client: AuthenticationError, or ValueError for a refused login
        Client(locked_server, verbose=False)  # the UI's config is behind the login
    with pytest.raises(ValueError):  # gradio_client: AuthenticationError, or ValueError for a refused login
        Client(locked_server, auth=("me", "nope"), verbose=False)
    assert "/txt2img" in Client(locked_server, auth=("me", "pw"), verbose=False).view_api(
        print_info=False, return_format="dict")["named_endpoints"]


def test_api_auth_and_a_full_queue(locked_server):
    assert requests.get(f"{locked_server}/sdapi/v1/options", timeout=10).status_code == 401
    assert requests.get(f"{locked_server}/sdapi/v1/options", auth=("bot", "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{locked_server}/sdapi/v1/options", auth=("bot", "s3cret"), timeout=10).status_code == 200
    auth = ("bot", "s3cret")
    codes: dict[str, int] = {}

    def post(name: str, body: dict) -> None:
        codes[name] = requests.post(f"{locked_server}/sdapi/v1/txt2img", json=body, auth=auth, timeout=300).status_code

    def running() -> bool:
        return requests.get(f"{locked_server}/sdapi/v1/progress", auth=auth, timeout=10).json()["state"]["job"] != ""

    # A holds the one generation slot (150 steps: it runs until interrupted) ...
    busy = threading.Thread(target=post, args=("busy", {"prompt": "busy", "steps": 150, "width": 256, "height": 256}))
    busy.start()
    deadline = time.monotonic() + 120
    while not running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(), "the first job started"
    # ... so of two more, the queue (size 1) takes at most one, whichever comes first: the other is refused
    small = {"prompt": "queued", "steps": 1, "width": 64, "height": 64}
    waiting = [threading.Thread(target=post, args=(name, small)) for name in ("b", "c")]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 60
    while 503 not in codes.values() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(), "the first job still held the slot while the others came"
    requests.post(f"{locked_server}/sdapi/v1/interrupt", auth=auth, timeout=10)
    for thread in (busy, *waiting):
        thread.join(timeout=300)
    assert codes["busy"] == 200 and sorted(codes[name] for name in "bc")[-1] == 503, codes


@pytest.mark.server  # starts an app of its own
def test_without_api_the_routes_are_absent(tmp_path_factory):
    import app

    config = app.parse_config(
        ["--model", "demo", "--device", "cpu", "--port", str(free_port()),
         "--lora-dir", str(tmp_path_factory.mktemp("Lora")), "--controlnet-dir", str(tmp_path_factory.mktemp("CN")),
         "--output-dir", str(tmp_path_factory.mktemp("outputs"))],
        environ={},
    )
    server, _ = start_in_background(config)
    try:
        url = f"http://{config.host}:{config.port}"
        assert requests.get(f"{url}/sdapi/v1/options", timeout=10).status_code == 404
        assert requests.post(f"{url}/sdapi/v1/txt2img", json={"prompt": "x"}, timeout=10).status_code in (404, 405)
        assert requests.get(url, timeout=10).status_code == 200, "the UI is there"
    finally:
        stop_in_background(server)
