"""Hostile input through REST and gradio_client, as an attacker or a careless client sends it: decompression bombs
in every image field, huge and malformed PNG text, oversize and deeply nested JSON, huge prompts, NaN and
strings in number fields, path-like model, LoRA and ControlNet names. Each gets a 4xx naming the field (and the
limit), within a time bound, and the next good request works."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import numpy as np
import pytest
import requests
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from models.limits import MAX_BODY_BYTES, MAX_INFOTEXT_CHARS, MAX_PROMPT_CHARS


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 2 KB PNG that claims width x height gray pixels (30000x30000: 900 megapixels)."""
    compressor = zlib.compressobj(9)
    rows = b"".join(compressor.compress(b"\0" * (width + 1)) for _ in range(64)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def png_with_text(text: str) -> bytes:
    metadata = PngInfo()
    metadata.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "navy").save(buffer, format="PNG", pnginfo=metadata)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


SMALL = b64(png_with_text("a red circle\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64"))
GOOD = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 3}


def post(url: str, route: str, timeout: float = 60, **kwargs) -> requests.Response:
    return requests.post(f"{url}{route}", timeout=timeout, **kwargs)


def assert_next_request_works(url: str) -> None:
    response = post(url, "/sdapi/v1/txt2img", json=GOOD, timeout=120)
    assert response.status_code == 200, response.text


# -- images ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route, body, field", [
    ("/sdapi/v1/img2img", {**GOOD, "init_images": [b64(bomb())]}, "init_images[0]"),
    ("/sdapi/v1/img2img", {**GOOD, "init_images": [SMALL], "mask": b64(bomb(13_000, 13_000))}, "mask"),
    ("/sdapi/v1/png-info", {"image": b64(bomb())}, "image"),
    ("/controlnet/detect", {"controlnet_module": "canny", "controlnet_input_images": [b64(bomb())]},
     "controlnet_input_images[0]"),
    ("/sdapi/v1/txt2img", {**GOOD, "alwayson_scripts": {"controlnet": {"args": [
        {"module": "canny", "model": "edges", "image": b64(bomb())}]}}}, "alwayson_scripts.controlnet.args[0]: image"),
])
def test_decompression_bombs_in_every_rest_image_field_get_413_naming_it(app_server, route, body, field):
    started = time.monotonic()
    response = post(app_server[0], route, json=body)
    assert time.monotonic() - started < 10
    assert response.status_code == 413, response.text
    assert response.json()["detail"].startswith(f"{field} is ") and "at most 40,000,000" in response.json()["detail"]
    assert_next_request_works(app_server[0])


@pytest.mark.parametrize("endpoint, field", [("/img2img", "image"), ("/inpaint", "mask"),
                                             ("/controlnet_detect", "image")])
def test_decompression_bombs_through_gradio_client_name_the_field(client, tmp_path, endpoint, field):
    (tmp_path / "bomb.png").write_bytes(bomb())
    Image.new("RGB", (64, 64), "gray").save(tmp_path / "gray.png")
    inputs = {"image": handle_file(tmp_path / "gray.png"), field: handle_file(tmp_path / "bomb.png")}
    if endpoint != "/controlnet_detect":
        inputs.update(prompt="x", steps=2)
    with pytest.raises(AppError, match=rf"{field} is 900,000,000 pixels; at most 40,000,000 are accepted"):
        client.predict(**inputs, api_name=endpoint)
    gallery, _, _ = client.predict(prompt="x", steps=2, width=64, height=64, api_name="/txt2img")
    assert Image.open(gallery[0]["image"]).size == (64, 64)


def test_an_unexpected_failure_tells_gradio_clients_its_kind_not_its_message(app_server, client, monkeypatch):
    """The message of an error nobody foresaw may hold server paths: it goes to the log only."""
    manager = app_server[1].manager

    def failing(*args, **kwargs):
        raise OSError(f"[Errno 36] File name too long: '{manager.source.location}/models/Lora/x.ckpt'")

    monkeypatch.setattr(manager, "generate_together", failing)
    with pytest.raises(AppError) as error:
        client.predict(prompt="x", steps=1, width=64, height=64, api_name="/txt2img")
    assert str(error.value) == "txt2img failed (OSError); the server's log has the details"
    monkeypatch.undo()
    gallery, _, _ = client.predict(prompt="x", steps=1, width=64, height=64, api_name="/txt2img")
    assert Image.open(gallery[0]["image"]).size == (64, 64)


def test_an_extensions_endpoint_tells_an_unexpected_failure_by_its_kind_too(app_server, client, tmp_path,
                                                                            monkeypatch):
    upscale = next(extension for extension in app_server[1].extensions if extension.name == "upscale")
    monkeypatch.setattr(upscale, "upscale", lambda *args: open("/nonexistent/models/x.safetensors", "rb"))
    Image.new("RGB", (64, 64), "gray").save(tmp_path / "gray.png")
    with pytest.raises(AppError) as error:
        client.predict(handle_file(tmp_path / "gray.png"), "None", 1, api_name="/upscale")
    assert str(error.value) == "upscale failed (FileNotFoundError); the server's log has the details"


def test_an_accepted_photo_larger_than_an_upload_still_generates(app_server):
    """A 20 MP noisy JPEG is within the limits (under 32 MB) but over 32 MB as a PNG. REST used to carry it to the
    queue as an uploaded PNG and had to refuse it (413); REST jobs now reach the service's queue as they are, so it
    inpaints like any photo: the answer has the photo's size and no server path."""
    noise = np.random.default_rng(0).integers(0, 256, (4_000, 5_000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    mask_image = Image.new("L", (5_000, 4_000), 0)
    mask_image.paste(255, (2_000, 1_500, 2_100, 1_600))  # only masked: a 64 px job, however large the photo
    mask = io.BytesIO()
    mask_image.save(mask, format="PNG")
    response = post(app_server[0], "/sdapi/v1/img2img", timeout=300, json={
        **GOOD, "init_images": [b64(buffer.getvalue())], "mask": b64(mask.getvalue()), "inpaint_full_res": True})
    assert response.status_code == 200, response.text
    result = Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))
    answer = {**response.json(), "images": None}  # base64 may hold "/tmp" by chance
    assert result.size == (5_000, 4_000) and "/tmp" not in str(answer)


def test_bytes_that_are_not_an_image_get_422(app_server):
    truncated = bomb(64, 64)[:60]
    for data in (truncated, b"GIF89a" + b"\xff" * 100, b"\x89PNG\r\n\x1a\n" + b"\0" * 50):
        response = post(app_server[0], "/sdapi/v1/png-info", json={"image": b64(data)})
        assert response.status_code == 422
        assert response.json()["detail"].startswith("image is not a readable base64-encoded image")


# -- PNG text -------------------------------------------------------------------------------------------------


def test_png_info_text_over_the_limit_is_refused_quickly(app_server):
    """A 1 MB parameters text used to take minutes of CPU in A1111's pattern, with every route stalled."""
    started = time.monotonic()
    response = post(app_server[0], "/sdapi/v1/png-info", json={"image": b64(png_with_text("a" * 1_000_000))})
    assert time.monotonic() - started < 5
    assert response.status_code == 413
    assert response.json()["detail"] == (f"image's parameters text is 1,000,000 characters long; at most "
                                         f"{MAX_INFOTEXT_CHARS:,} are accepted")


@pytest.mark.parametrize("text", [
    "a" * MAX_INFOTEXT_CHARS,  # the largest accepted: one run of a key character, A1111's pattern's worst case
    "x\n" + "Steps: " * 9_000,
    'x\nSteps: "' + "\\\"" * 30_000,
    "x\n" + "a: b, " * 10_000,
])
def test_the_largest_accepted_png_text_parses_in_bounded_time(app_server, text):
    started = time.monotonic()
    response = post(app_server[0], "/sdapi/v1/png-info", json={"image": b64(png_with_text(text))})
    assert response.status_code == 200 and time.monotonic() - started < 3
    assert response.json()["info"] == text.strip()


# -- bodies, prompts, numbers -----------------------------------------------------------------------------------


def test_an_oversize_body_gets_413_before_it_is_read(app_server):
    started = time.monotonic()
    response = post(app_server[0], "/sdapi/v1/txt2img", data=b" " * (MAX_BODY_BYTES + 1),
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "over 64 MB" in response.json()["detail"]
    chunked = post(app_server[0], "/sdapi/v1/txt2img", data=iter([b" " * 2**20] * 65),
                   headers={"Content-Type": "application/json"})  # no Content-Length: chunked
    assert chunked.status_code == 413
    assert time.monotonic() - started < 30
    assert_next_request_works(app_server[0])


@pytest.mark.parametrize("body, detail", [
    (b"[" * 200_000, "the request body is nested too deeply to read"),
    (b'{"prompt": "x", "cfg_scale": NaN}', "cfg_scale must be a finite number, got NaN"),
    (b'{"prompt": "x", "alwayson_scripts": {"controlnet": {"args": [{"weight": -Infinity}]}}}',
     "alwayson_scripts.controlnet.args[0].weight must be a finite number, got -Infinity"),
    (b'{"prompt": "x", "steps": Infinity}', "steps must be a finite number, got Infinity"),
    (b'["a list"]', "the request body must be a JSON object, got list"),
    (b'{"prompt": ', "the request body is not valid JSON"),
])
def test_malformed_json_bodies_get_422_naming_the_field(app_server, body, detail):
    response = post(app_server[0], "/sdapi/v1/txt2img", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"].startswith(detail), response.text
    assert_next_request_works(app_server[0])


@pytest.mark.parametrize("change, detail", [
    ({"steps": "many"}, "steps must be a whole number, got 'many'"),
    ({"cfg_scale": "high"}, "cfg_scale must be from 1.0 to 30.0, got 'high'"),
    ({"denoising_strength": "0.5", "init_images": [SMALL]}, "denoising_strength must be in (0, 1], got '0.5'"),
    ({"scheduler": "bogus"}, "scheduler must be one of automatic, karras, got 'bogus'"),
    ({"sampler_name": "Euler b"}, "sampler_name 'Euler b' is unknown"),
    ({"width": 1e400}, "width must be a finite number"),
    ({"override_settings": {"CLIP_stopping_at_last_layers": "two"}},
     "override_settings.CLIP_stopping_at_last_layers must be a whole number from 1 to 12, got 'two'"),
    ({"prompt": "(x:1.2.3)"}, "prompt: the weight in ':1.2.3)' is not a number"),
    ({"prompt": "[(" * 10_000}, "prompt: brackets nested more than 100 deep"),
])
def test_bad_numbers_and_unknown_values_get_422_in_a1111s_words(app_server, change, detail):
    route = "/sdapi/v1/img2img" if "init_images" in change else "/sdapi/v1/txt2img"
    response = post(app_server[0], route, json={**GOOD, **change}) if "width" not in change else post(
        app_server[0], route, data=b'{"prompt": "x", "width": 1e400}', headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"].startswith(detail), response.text


def test_a_huge_prompt_is_refused_before_the_queue(app_server, client):
    prompt = "a red circle, " * 800_000  # 11 MB: it held the only generation slot for a minute
    started = time.monotonic()
    response = post(app_server[0], "/sdapi/v1/txt2img", json={**GOOD, "prompt": prompt})
    assert response.status_code == 413 and response.json()["detail"] == (
        f"prompt is {len(prompt):,} characters long; at most {MAX_PROMPT_CHARS:,} are accepted")
    negative = post(app_server[0], "/sdapi/v1/txt2img", json={**GOOD, "negative_prompt": "x" * (MAX_PROMPT_CHARS + 1)})
    assert negative.status_code == 413 and negative.json()["detail"].startswith("negative_prompt is 32,769 characters")
    with pytest.raises(AppError, match="prompt is 40,000 characters long; at most 32,768 are accepted"):
        client.predict(prompt="x" * 40_000, steps=2, api_name="/txt2img")
    assert time.monotonic() - started < 30
    assert_next_request_works(app_server[0])


# -- names that look like paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc", "/etc/passwd", "/no/such/model", "../../etc/passwd", "./models/Lora",
                                  "models/demo/sd-shapes-inpainting", "C:\\Windows"])
def test_path_like_model_names_are_refused_alike_and_nothing_loads(app_server, name):
    """Only checkpoints in --ckpt-dir, demo and Hub ids: whether a path exists on the server makes no difference."""
    service = app_server[1]
    before = service.manager
    response = post(app_server[0], "/sdapi/v1/options", json={"sd_model_checkpoint": name})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"sd_model_checkpoint: no model named {name!r}; name a checkpoint in ")
    assert service.manager is before


def test_hub_shaped_names_go_to_the_hub_only_whether_or_not_they_exist_here(app_server):
    service = app_server[1]
    before = service.manager
    answers = [post(app_server[0], "/sdapi/v1/options", json={"sd_model_checkpoint": name}).json()["detail"]
               for name in ("models/demo", "models/nowhere")]  # the first is a folder on the server, the second not
    assert answers == [f"sd_model_checkpoint: could not load {name!r}: the Hugging Face Hub cannot be reached from "
                       "this server and the model is not in its cache" for name in ("models/demo", "models/nowhere")]
    assert service.manager is before


def test_a_pickle_named_safetensors_in_the_checkpoint_folder_gets_422_not_500(app_server, tmp_path_factory):
    import pickle

    from tests.conftest import checkpoint_dir

    evil = checkpoint_dir(tmp_path_factory) / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"weights": list(range(1000))}))
    service = app_server[1]
    before = service.manager
    try:
        response = post(app_server[0], "/sdapi/v1/options", json={"sd_model_checkpoint": "evil"})
    finally:
        evil.unlink()  # the folder is the session app's: leave it as it was
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("sd_model_checkpoint: could not load 'evil': its files did not load "
                                                "as a model (")
    assert service.manager is before
    assert_next_request_works(app_server[0])


@pytest.mark.parametrize("prompt, detail", [
    ("x <lora:../../etc/passwd:1>", "LoRA '../../etc/passwd' is not in the LoRA folder Lora"),
    ("x <lora:/etc/passwd:1>", "LoRA '/etc/passwd' is not in the LoRA folder Lora"),
])
def test_path_like_lora_names_are_refused(app_server, prompt, detail):
    response = post(app_server[0], "/sdapi/v1/txt2img", json={**GOOD, "prompt": prompt})
    assert response.status_code == 422 and response.json()["detail"].startswith(detail), response.text


@pytest.mark.parametrize("model", ["../edges", "/etc/passwd", "..", "a/../../b"])
def test_path_like_controlnet_names_are_refused(app_server, model):
    unit = {"module": "none", "model": model, "image": SMALL}
    response = post(app_server[0], "/sdapi/v1/txt2img",
                    json={**GOOD, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"alwayson_scripts.controlnet.args[0]: ControlNet name {model!r} "
                                                "is not "
                                                "a path inside the ControlNet folder")


@pytest.mark.parametrize("route, change, detail", [
    # a lone surrogate passes JSON but fails in the tokenizer mid-job (and failed the jobs batched with it)
    ("txt2img", {"prompt": "a\ud800b"}, "prompt is not valid Unicode: a lone surrogate '\\ud800' at character 1"),
    ("txt2img", {"negative_prompt": "a\x00b"}, "negative_prompt contains a NUL character"),
    ("txt2img", {"enable_hr": True, "hr_sampler_name": ["x"]}, "hr_sampler_name ['x'] is unknown"),
    ("txt2img", {"prompt": "<lora:" + "a" * 5000 + ":1>"}, "LoRA 'aaaa"),
    ("txt2img", {"prompt": "a BREAK " * 100}, "prompt makes 100 chunks of 75 tokens (BREAK starts a new one); at "
                                               "most 64 are encoded"),
    ("txt2img", {"sampler_name": "x" * 100_000}, "sampler_name 'xxxx"),
    ("txt2img", {"override_settings": "sd_model_checkpoint"}, "override_settings must be an object of settings"),
    ("txt2img", {"alwayson_scripts": "x"}, "alwayson_scripts must be an object of scripts by name, got 'x'"),
    ("txt2img", {"alwayson_scripts": {"controlnet": {"args": [1]}}},
     "alwayson_scripts.controlnet.args[0] must be a unit (an object), got 1"),
    ("img2img", {"init_images": [SMALL], "mask": SMALL, "inpaint_full_res": "yes"},
     "inpaint_full_res must be true or false (or 0 or 1), got 'yes'"),
    ("img2img", {"init_images": [SMALL], "mask": "data:image/png;base64"},
     "mask is a data URL without its data (no comma)"),
    ("png-info", {"image": "data:"}, "image is a data URL without its data (no comma)"),
    ("png-info", {"image": "é" * 8}, "image is not base64: it holds characters beyond ASCII"),
    ("txt2img", {"script_name": "x" * 30_000}, "script_name: no script 'xxxx"),
    ("txt2img", {"script_name": "X/Y/Z plot", "script_args": {"x": 1}}, "script_args must be a list of at most 32"),
    ("txt2img", {"script_name": "X/Y/Z plot", "script_args": [[[[]]]] * 40}, "script_args must be a list of at most"),
    ("txt2img", {"script_name": "X/Y/Z plot", "script_args": ["Steps", "1-100000000", [], 0, "", [], 0, "", []]},
     "script_args[1] (Steps): more than 64 values"),
    ("txt2img", {"script_name": "X/Y/Z plot", "script_args": ["Seed", "1-9 [100000000]", [], 0, "", [], 0, "", []]},
     "script_args[1] (Seed): more than 64 values"),
    ("txt2img", {"script_name": "X/Y/Z plot", "script_args": ["Prompt order", "a,b,c,d,e,f,g", [], 0, "", [], 0, "",
                                                              []]}, "script_args[1] (Prompt order): at most 4 words"),
    ("txt2img", {"prompt": "a|b|c|d|e|f|g|h", "script_name": "Prompt matrix"},
     "prompt: 7 parts make 128 prompts; at most 64"),
    ("txt2img", {"script_name": "prompts from file or textbox", "script_args": [False, False, "start", "x\n" * 65]},
     "script_args[3]: 65 lines; at most 64"),
])
def test_hostile_text_and_shapes_get_422_naming_the_field(app_server, route, change, detail):
    """Each once answered 500 (or was taken silently); the message stays short whatever was sent."""
    body = change if route == "png-info" else {**GOOD, **change}
    response = post(app_server[0], f"/sdapi/v1/{route}", json=body)
    assert response.status_code == 422, response.text[:300]
    message = response.json()["detail"]
    assert message.startswith(detail) and len(message) < 1000, message[:300]


def gradio_call(url: str, api_name: str, data: list, timeout: float = 120) -> tuple[str, str]:
    """A gradio endpoint called over plain HTTP, as any client may: (the last event's name, its data)."""
    event = requests.post(f"{url}/gradio_api/call/{api_name}", json={"data": data}, timeout=timeout).json()["event_id"]
    stream = requests.get(f"{url}/gradio_api/call/{api_name}/{event}", timeout=timeout).text
    events = [line.removeprefix("event: ") for line in stream.splitlines() if line.startswith("event: ")]
    payloads = [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")]
    return events[-1], payloads[-1]


def file_data(path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


@pytest.fixture
def server_files(tmp_path):
    """Files on the server that no client uploaded: an image (another user's output, say) and a text file."""
    image = tmp_path / "00001-42.png"
    Image.new("RGB", (64, 64), "crimson").save(image)
    text = tmp_path / "secret.txt"
    text.write_text("the server's own words")
    return image, text


@pytest.mark.parametrize("api_name, inputs", [
    ("upscale", lambda image: [file_data(image), "None", 1]),
    ("controlnet_detect", lambda image: [file_data(image), "none", 64, None, None, True]),
    ("segment", lambda image: [file_data(image), [[1, 1]], None]),
])
def test_a_server_file_named_as_an_input_image_is_refused(app_server, server_files, api_name, inputs):
    """Gradio accepts as an input only what a client uploaded; named by its server path, a file is refused (it
    would come back upscaled by 1, or as its own control map)."""
    url = app_server[0]
    event, payload = gradio_call(url, api_name, inputs(server_files[0]))
    assert event == "error" and "not uploaded by a user" in payload, payload
    uploaded = requests.post(f"{url}/gradio_api/upload", files=[("files", ("mine.png", png_with_text("x")))],
                             timeout=30).json()[0]
    event, payload = gradio_call(url, api_name, inputs(uploaded))  # the same call on an uploaded file works
    assert event == "complete", payload


def test_a_server_text_file_cannot_become_a_training_caption(app_server, server_files):
    """/train_lora reads captions from .txt files beside the images and writes them into the LoRA's metadata."""
    from extensions.train.extension import DEFAULTS

    url = app_server[0]
    uploaded = requests.post(f"{url}/gradio_api/upload", files=[("files", ("secret.png", png_with_text("x")))],
                             timeout=30).json()[0]
    settings = {**DEFAULTS, "steps": 1, "resolution": 64}
    event, payload = gradio_call(url, "train_lora", [[file_data(uploaded), file_data(server_files[1])], "x",
                                                     "exfiltrated", *settings.values()])
    assert event == "error" and "not uploaded by a user" in payload, payload
    assert "the server's own words" not in payload


def test_images_still_match_their_solo_pixels_after_the_abuse(app_server):
    first = post(app_server[0], "/sdapi/v1/txt2img", json=GOOD, timeout=120).json()["images"][0]
    again = post(app_server[0], "/sdapi/v1/txt2img", json=GOOD, timeout=120).json()["images"][0]
    pixels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(image)))) for image in (first, again)]
    assert np.array_equal(*pixels)
