"""One access model, checked route by route in every auth mode: --auth covers the UI, gradio_client and the REST
API (unless --api-auth gives REST its own credentials); the API docs exist only beside the REST API and behind its
credentials; saved images are not served by name; no response holds an absolute server path; the start warns
when the app listens beyond this machine without a login."""

from __future__ import annotations

import json
import re

import pytest
import requests
from gradio_client import Client

import app
from testing.ports import free_port
from tests.conftest import ROOT

UI, BOT = ("me", "pw"), ("bot", "s3cret")
MODES = {  # name -> (extra options, UI credentials, REST credentials)
    "auth": (["--auth", "me:pw"], UI, UI),
    "auth and api-auth": (["--auth", "me:pw", "--api-auth", "bot:s3cret"], UI, BOT),
    "api-auth only": (["--api-auth", "bot:s3cret"], None, BOT),
}
REST_ROUTES = ["/sdapi/v1/options", "/sdapi/v1/sd-models", "/sdapi/v1/loras", "/controlnet/model_list"]
DOCS = ["/docs", "/redoc", "/openapi.json"]


@pytest.fixture(scope="module", params=list(MODES))
def server(request, tmp_path_factory):
    options, ui, rest = MODES[request.param]
    outputs = tmp_path_factory.mktemp("outputs")
    config = app.parse_config(
        ["--model", "demo", "--device", "cpu", "--port", str(free_port()), "--api", "--output-dir", str(outputs),
         "--lora-dir", str(tmp_path_factory.mktemp("Lora")), "--controlnet-dir", str(tmp_path_factory.mktemp("CN")),
         *options], environ={})
    started, _ = app.start_in_background(config)
    yield f"http://{config.host}:{config.port}", ui, rest, outputs
    app.stop_in_background(started)


def test_every_route_under_each_auth_mode(server):
    url, ui, rest, outputs = server
    wrong = ("intruder", "guess")
    for route in REST_ROUTES + DOCS:
        assert requests.get(url + route, timeout=10).status_code == 401, route
        assert requests.get(url + route, auth=wrong, timeout=10).status_code == 401, route
        assert requests.get(url + route, auth=rest, timeout=10).status_code == 200, route
    body = {"prompt": "x", "steps": 1, "width": 64, "height": 64}
    assert requests.post(url + "/sdapi/v1/txt2img", json=body, timeout=60).status_code == 401
    generated = requests.post(url + "/sdapi/v1/txt2img", json=body, auth=rest, timeout=120)
    assert generated.status_code == 200, generated.text
    saved = next(outputs.rglob("*.png"))
    if ui is None:  # no --auth: the UI and gradio_client are open to whoever reaches the address, by design
        client = Client(url, verbose=False)
    else:
        for route in ("/config", "/gradio_api/info"):
            assert requests.get(url + route, timeout=10).status_code == 401, route
        with pytest.raises(ValueError):  # gradio_client: AuthenticationError, or ValueError for a refused login
            Client(url, verbose=False)
        with pytest.raises(ValueError):  # gradio_client: AuthenticationError, or ValueError for a refused login
            Client(url, auth=wrong, verbose=False)
        client = Client(url, auth=ui, verbose=False)
    gallery, infotext, _ = client.predict(prompt="x", steps=1, width=64, height=64, api_name="/txt2img")
    assert infotext.startswith("x\nSteps: 1")
    session = requests.Session()
    if ui is not None:
        session.post(url + "/login", data={"username": ui[0], "password": ui[1]}, timeout=10)
    # the saved file is not served by its name, even to a logged-in user: only Gradio's hashed copies are
    assert session.get(f"{url}/gradio_api/file={saved}", timeout=10).status_code in (403, 404)


def test_the_open_app_serves_its_docs_and_no_response_holds_a_server_path(app_server, client, tmp_path_factory):
    url = app_server[0]
    for route in DOCS:
        assert requests.get(url + route, timeout=10).status_code == 200, route
    answers = [requests.get(url + route, timeout=10).text for route in ["/config", "/gradio_api/info", *REST_ROUTES,
                                                                       "/controlnet/module_list", "/openapi.json"]]
    bad = {"prompt": "x <lora:nowhere:1>", "steps": 1, "width": 64, "height": 64,
           "alwayson_scripts": {"controlnet": {"args": [{"model": "nowhere", "module": "none"}]}}}
    answers.append(requests.post(url + "/sdapi/v1/txt2img", json=bad, timeout=60).text)
    answers.append(requests.post(url + "/sdapi/v1/txt2img", json={**bad, "prompt": "x"}, timeout=60).text)
    answers.append(requests.post(url + "/sdapi/v1/options", json={"sd_model_checkpoint": "nowhere"}, timeout=60).text)
    with pytest.raises(Exception) as refused:
        client.predict(prompt="x <lora:nowhere:1>", steps=1, api_name="/txt2img")
    answers.append(str(refused.value))
    places = [str(ROOT), str(tmp_path_factory.getbasetemp()), "/tmp/", "/root/", "/home/"]
    for text in answers:
        assert not [place for place in places if place in text], text[:300]
    assert re.search(r"LoRA 'nowhere' is not in the LoRA folder Lora\d+ ", answers[-1]), "named by the folder's name"
    assert json.loads(answers[3])  # the routes answered (the scan read real bodies)


@pytest.mark.parametrize("options, warned", [
    (["--host", "0.0.0.0"], "listening on 0.0.0.0 without --auth: anyone who can reach it can use the UI, "
                            "gradio_client and generate; set --auth user:password"),
    (["--host", "0.0.0.0", "--api"], "gradio_client and the REST API and generate"),
    (["--host", "0.0.0.0", "--auth", "me:pw"], None),
    (["--host", "127.0.0.1"], None),
    (["--host", "localhost"], None),
])
def test_a_warning_at_start_when_listening_beyond_this_machine_without_auth(options, warned):
    warning = app.exposure_warning(app.parse_config(options, environ={}))
    assert warning == warned if warned is None or warned.startswith("listening") else warned in warning


def test_the_docs_document_the_access_model():
    page = (ROOT / "docs" / "access.md").read_text()
    section = re.search(r"## Access and limits\n(.*?)\n## ", page, re.S)
    assert section, "docs/access.md has an 'Access and limits' section"
    for fact in ("--auth", "--api-auth", "/docs", "--ckpt-dir", "413"):
        assert fact in section.group(1), fact


def test_results_from_an_output_folder_elsewhere_are_handed_to_gradio_as_temp_copies(tmp_path):
    """Gradio takes results from the working directory or the temp folder only; the output folder is not an
    allowed path (it would serve every saved image by its name), so results from elsewhere are copied."""
    import shutil
    import tempfile
    from pathlib import Path

    from models.files import servable

    assert servable(tmp_path / "00001-7.png") == tmp_path / "00001-7.png"  # in the temp folder: as it is
    elsewhere = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        saved = elsewhere / "00001-7.png"
        saved.write_bytes(b"\x89PNG result")
        copy = servable(saved)
        assert copy.is_relative_to(tempfile.gettempdir()) and copy.name == saved.name
        assert copy.read_bytes() == saved.read_bytes() and servable(saved) == copy
    finally:
        shutil.rmtree(elsewhere)
