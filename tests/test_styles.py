"""A1111's prompt styles: styles.csv read and written as A1111 does, a style merged into the prompts (at `{prompt}` or
appended), over REST, gradio_client and the tab's picker; a styled image equals the one made from its prompts written
out, and an unknown style is named."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from extensions.styles.library import MAX_FILE_BYTES, StyleLibrary, merged


def test_merged_places_the_prompt_or_appends_like_a1111():
    assert merged("ink drawing of {prompt}, lineart", "a cat") == "ink drawing of a cat, lineart"
    assert merged("lineart", " a cat ") == "a cat, lineart"
    assert merged("lineart", "") == "lineart"
    assert merged("", "a cat") == "a cat"


def test_the_library_reads_a1111s_file_saves_in_place_and_rereads_changes(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text('\ufeffname,prompt,negative_prompt\nfirst,"one, {prompt}",bad\nsecond,two,\n', encoding="utf-8")
    library = StyleLibrary(path)
    assert list(library.styles()) == ["first", "second"]
    assert library.apply(["first", "second"], "cat", "") == ("one, cat, two", "bad")
    library.save("first", "changed {prompt}", "")
    library.save("third", 'with "quotes", commas', "x")
    assert list(library.styles()) == ["first", "second", "third"], "a saved style keeps its place"
    assert StyleLibrary(path).styles()["third"].prompt == 'with "quotes", commas'
    assert library.apply(["first"], "cat", "") == ("changed cat", "")
    with pytest.raises(ValueError, match="style name: give the style a name"):
        library.save("  ", "x", "")
    assert StyleLibrary(tmp_path / "none.csv").styles() == {}


def test_an_oversized_styles_file_is_not_read(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_bytes(b"name,prompt,negative_prompt\n" + b"x" * MAX_FILE_BYTES)
    with pytest.raises(ValueError, match="the styles file is over 1 MB"):
        StyleLibrary(path).styles()


def generate(url: str, **body) -> dict:
    response = requests.post(f"{url}/sdapi/v1/txt2img", json={"steps": 2, "width": 64, "height": 64, "seed": 11,
                                                             **body}, timeout=120)
    assert response.status_code == 200, response.text[:300]
    return response.json()


def pixels(result: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(result["images"][0]))))


def test_a_styled_request_equals_its_prompts_written_out(app_server):
    url = app_server[0]
    styled = generate(url, prompt="a cat", negative_prompt="blurry", styles=["inked", "moody"])
    written = generate(url, prompt="ink drawing of a cat, lineart, dark and moody",
                       negative_prompt="blurry, bright, sunny")
    infotext = json.loads(styled["info"])["infotexts"][0]
    assert infotext.startswith("ink drawing of a cat, lineart, dark and moody\nNegative prompt: blurry, bright, sunny")
    assert np.array_equal(pixels(styled), pixels(written))
    assert requests.get(f"{url}/sdapi/v1/prompt-styles", timeout=10).json() == [
        {"name": "inked", "prompt": "ink drawing of {prompt}, lineart", "negative_prompt": ""},
        {"name": "moody", "prompt": "dark and moody", "negative_prompt": "bright, sunny"}]


@pytest.mark.parametrize("styles, message", [
    (["nope"], "styles: no style 'nope'; the styles: inked, moody"),
    ("inked", "styles must be a list of style names, got 'inked'"),
    (["inked"] * 17, "styles: at most 16 styles at once, got 17"),
])
def test_a_bad_style_is_named_and_the_server_keeps_serving(app_server, styles, message):
    response = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "styles": styles},
                             timeout=60)
    assert response.status_code == 422 and message in response.text
    assert generate(app_server[0], styles=[])["images"]


def test_gradio_client_takes_styles_by_name(client):
    gallery, infotext, _ = client.predict(prompt="a cat", styles=["inked"], steps=1, width=64, height=64, seed=3,
                                          api_name="/txt2img")
    assert infotext.startswith("ink drawing of a cat, lineart\n")
