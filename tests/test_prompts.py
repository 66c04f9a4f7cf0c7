"""Prompts as AUTOMATIC1111 reads them: emphasis, BREAK, 75-token chunks, textual inversion, clip skip;
checked against tests/a1111_reference.py (A1111's algorithm, written independently) and end to end."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from extensions.controlnet.extension import ControlNet
from extensions.inpaint import Inpaint
from extensions.lora import Lora
from extensions.prompts import Prompts
from extensions.prompts.embeddings import EmbeddingLibrary
from extensions.prompts.encoder import PromptEncoder, pad_chunks
from extensions.prompts.syntax import parse
from models.infotext import parse_infotext
from models.manager import PipelineManager
from service.pnginfo import fields_from_infotext
from service.studio import StudioService
from testing.embedding_files import make_embedding
from testing.text_encoders import sd15_text_encoder
from tests import a1111_reference as a1111
from tests.conftest import DEMO

SMALL = {"steps": 2, "width": 64, "height": 64, "seed": 5}
LONG = ", ".join(f"a {colour} {shape}" for colour in ("red", "green", "blue", "yellow", "white") * 6
                 for shape in ("circle", "square"))  # 239 tokens in 4 chunks: commas near every chunk's edge
PROMPTS = [
    "", "a red circle", "a (red:1.3) circle", "((a)) [[b]] (c:0.5) [d:2] (e (f) [g])", "\\(literal\\) \\[x\\] a\\b",
    "(unbalanced [square", "a ) closes nothing ] here :1.5) too", "one BREAK two BREAK", "(inside BREAK brackets)",
    "x " * 76, "word, " * 37 + "edge", "red " * 150, "a red circle " * 100, LONG,
    f"({LONG[:400]}:1.2), [{LONG[400:]}]",
]


@pytest.fixture(scope="module")
def embeddings_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("embeddings")
    width = CLIPTextConfig.from_pretrained(DEMO / "text_encoder").hidden_size
    make_embedding(folder / "shiny.safetensors", width, vectors=3, seed=1)  # A1111's emb_params
    make_embedding(folder / "dots.safetensors", width, vectors=1, seed=2, style="diffusers")
    make_embedding(folder / "stripes.safetensors", width, vectors=2, seed=3, style="string_to_param")
    make_embedding(folder / "sd15only.safetensors", 768, seed=4)  # another text encoder's width
    (folder / "old.pt").write_bytes(b"never unpickled")
    return folder


@pytest.fixture(scope="module")
def service(embeddings_dir, tmp_path_factory):
    manager = PipelineManager.load("demo", device="cpu")
    extensions = [Inpaint(), Lora(tmp_path_factory.mktemp("Lora")), Prompts(embeddings_dir),
                  ControlNet(tmp_path_factory.mktemp("ControlNet"))]
    return StudioService(manager, tmp_path_factory.mktemp("outputs"), extensions)


def pixels(service, prompt: str, **fields) -> np.ndarray:
    generation = service.run(fields.pop("mode", "txt2img"), {"prompt": prompt, **SMALL, **fields})
    return np.asarray(Image.open(generation.files[0]).convert("RGB")).astype(int)


# -- the grammar -------------------------------------------------------------------------------------------------


def test_the_parser_reads_as_a1111s_own_examples_say():
    assert parse("normal text") == [("normal text", 1.0)]
    assert parse("an (important) word") == [("an ", 1.0), ("important", 1.1), (" word", 1.0)]
    assert parse("(unbalanced") == [("unbalanced", 1.1)]
    assert parse("\\(literal\\]") == [("(literal]", 1.0)]
    assert parse("(unnecessary)(parens)") == [("unnecessaryparens", 1.1)]
    assert parse("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).") == [
        ("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
        (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]


@pytest.mark.parametrize("prompt", PROMPTS + ["a\\", "\\", "((", "])", "(x:1e2)", "(x: 2 )", "(x:-1)", "BREAK"])
def test_the_parser_agrees_with_the_reference(prompt):
    assert [list(piece) for piece in parse(prompt)] == a1111.parse_attention(prompt)


def test_hostile_nesting_is_refused_at_once_and_the_worst_within_the_bound_parses_quickly(service):
    started = time.perf_counter()
    with pytest.raises(ValueError, match="prompt: brackets nested more than 100 deep, at character 200"):
        service.build("txt2img", {"prompt": "(a" * 16_000})
    deep = "(" * 99 + "(a)[b]" * 5_000 + ")" * 99  # 10,000 pieces, each then rescaled 99 times
    assert len(parse(deep)) == 10_000
    assert time.perf_counter() - started < 2.0


def test_a_weight_that_is_not_a_number_is_named(service):
    with pytest.raises(ValueError, match=r"prompt: the weight in ':1\.2\.3\)' is not a number"):
        service.build("txt2img", {"prompt": "(x:1.2.3)"})


# -- the conditioning, tensor for tensor -------------------------------------------------------------------------


@functools.cache
def text_encoder(name: str) -> tuple:
    tokenizer = CLIPTokenizer.from_pretrained(DEMO / "tokenizer")
    if name == "demo":
        return tokenizer, CLIPTextModel.from_pretrained(DEMO / "text_encoder", dtype=torch.float32)
    return tokenizer, sd15_text_encoder()


def vectors_by_name(folder, width) -> dict:
    return {name: embedding.vectors for name, embedding in EmbeddingLibrary(folder).loaded(width).items()}


# SD 1.5's shape at clip skip 2 only (it is slow on 2 cores): that passes through every piece clip skip 1 does
@pytest.mark.parametrize("encoder, clip_skip", [("demo", 1), pytest.param("demo", 2, marks=pytest.mark.slow),
                                                pytest.param("sd15", 2, marks=pytest.mark.slow)])
def test_conditioning_equals_a1111s(encoder, clip_skip, tmp_path):
    tokenizer, model = text_encoder(encoder)
    width = model.config.hidden_size
    make_embedding(tmp_path / "shiny.safetensors", width, vectors=3, seed=1)
    make_embedding(tmp_path / "dots.safetensors", width, vectors=1, seed=2, style="diffusers")
    library = EmbeddingLibrary(tmp_path)
    encoder = PromptEncoder(tokenizer, model, library.loaded(width))
    with_embeddings = ["shiny dots", "a (shiny:1.4) circle, dots", "word, " * 36 + "shiny edge", "x " * 74 + "shiny"]
    for prompt in PROMPTS + with_embeddings:
        tokenized = encoder.tokenize(prompt)
        ours = encoder.encode(tokenized, clip_skip)
        theirs = a1111.conditioning(tokenizer, model, prompt, clip_skip, vectors_by_name(tmp_path, width))
        chunks, count = a1111.chunks(tokenizer, prompt, vectors_by_name(tmp_path, width))
        assert ours.shape == theirs.shape and len(tokenized.chunks) == len(chunks), prompt
        assert [chunk.tokens for chunk in tokenized.chunks] == [tokens for tokens, _, _ in chunks], prompt
        assert tokenized.count == count, prompt
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=1e-5), (prompt, (ours - theirs).abs().max())
    cond, uncond = pad_chunks(encoder.encode(encoder.tokenize(LONG), clip_skip),
                              encoder.encode(encoder.tokenize("blurry"), clip_skip),
                              encoder.encode(encoder.tokenize(""), clip_skip))
    ref_cond, ref_uncond = a1111.pad_to_same_chunks(
        a1111.conditioning(tokenizer, model, LONG, clip_skip),
        a1111.conditioning(tokenizer, model, "blurry", clip_skip),
        a1111.conditioning(tokenizer, model, "", clip_skip))
    assert torch.allclose(cond, ref_cond, atol=1e-6) and torch.allclose(uncond, ref_uncond, atol=1e-6)


# -- pixels ------------------------------------------------------------------------------------------------------


def test_emphasis_pairs_give_identical_pixels(service):
    assert np.array_equal(pixels(service, "a (red:1.0) circle"), pixels(service, "a red circle"))
    assert np.array_equal(pixels(service, "a (red) circle"), pixels(service, "a (red:1.1) circle"))
    assert np.array_equal(pixels(service, "a ((red)) circle"), pixels(service, "a (red:1.21) circle"))
    assert np.array_equal(pixels(service, "a [red] circle"), pixels(service, "a (red:0.9090909090909091) circle"))
    plain = pixels(service, "a red circle")
    assert np.abs(pixels(service, "a (red:1.5) circle") - plain).max() > 0
    assert np.abs(pixels(service, "a \\(red\\) circle") - plain).max() > 0


def recorded_arguments(service) -> list[dict]:
    """The arguments of each pipeline call from now on (a last hook that only looks)."""
    seen = []
    service.manager.pipeline_hooks.append(lambda pipe, request, arguments, parameters: (
        seen.append(arguments) or (pipe, arguments)))
    return seen


def test_a_plain_prompt_reaches_the_pipeline_as_text_and_the_rest_as_embeddings(service):
    seen = recorded_arguments(service)
    try:
        service.run("txt2img", {"prompt": "a red circle", "negative_prompt": "blue", **SMALL})
        service.run("txt2img", {"prompt": "a (red) circle", **SMALL, "batch_size": 2})
    finally:
        service.manager.pipeline_hooks.pop()
    assert seen[0]["prompt"] == ["a red circle"] and "prompt_embeds" not in seen[0]
    assert "prompt" not in seen[1] and seen[1]["prompt_embeds"].shape[:2] == (2, 77)
    assert seen[1]["negative_prompt_embeds"].shape == seen[1]["prompt_embeds"].shape


def test_the_quick_plain_check_never_passes_what_needs_encoding(service):
    encoder = service.extension("prompts").encoder
    encoder.use_embeddings(service.extension("prompts").library.loaded(encoder.text_encoder.config.hidden_size))
    rng = np.random.default_rng(0)
    alphabet = list("abc ,:()[]\\1.") + ["BREAK", "shiny", "Dots", "x" * 30]
    samples = PROMPTS + ["".join(rng.choice(alphabet, rng.integers(1, 12))) for _ in range(500)]
    quick = [text for text in samples if encoder.surely_plain(text)]
    assert len(quick) > 20 and all(encoder.tokenize(text).plain for text in quick)


def test_long_prompts_and_negative_prompts_of_other_lengths_run(service):
    seen = recorded_arguments(service)
    try:
        generation = service.run("txt2img", {"prompt": LONG, "negative_prompt": "blurry, " * 50, **SMALL})
    finally:
        service.manager.pipeline_hooks.pop()
    chunks = len(service.extension("prompts").encoder.tokenize(LONG).chunks)
    assert chunks == 4 and seen[0]["prompt_embeds"].shape[1] == seen[0]["negative_prompt_embeds"].shape[1] == 77 * 4
    assert generation.warnings == [] and parse_infotext(generation.infotexts[0])[0] == LONG


def test_a_batch_of_weighted_prompts_is_each_seed_alone(service):
    batch = service.run("txt2img", {"prompt": "a (red:1.3) circle BREAK blue", **SMALL, "seed": 9, "batch_size": 2})
    for seed, path in zip((9, 10), batch.files):
        alone = pixels(service, "a (red:1.3) circle BREAK blue", seed=seed)
        # batched convolutions may round differently (as for plain prompts: test_manager.py)
        assert np.abs(np.asarray(Image.open(path).convert("RGB")).astype(int) - alone).max() <= 1


def test_lora_tags_weights_and_inpaint_together(service):
    image = Image.new("RGB", (64, 64), "white")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    generation = service.run("inpaint", {"prompt": "a (green:1.3) square, " * 20, "image": image, "mask": mask,
                                         **SMALL, "mask_blur": 0})
    result = np.asarray(Image.open(generation.files[0]).convert("RGB"))
    assert np.array_equal(result[:16], np.asarray(image)[:16]), "kept pixels stay"


# -- textual inversion --------------------------------------------------------------------------------------------


def test_an_embedding_works_in_either_prompt_and_its_hash_is_written(service, embeddings_dir):
    plain = pixels(service, "a circle", negative_prompt="blurry")
    for fields in ({"prompt": "a shiny circle", "negative_prompt": "blurry"},
                   {"prompt": "a circle", "negative_prompt": "dots, stripes"}):
        generation = service.run("txt2img", {**SMALL, **fields})
        assert np.abs(np.asarray(Image.open(generation.files[0]).convert("RGB")).astype(int) - plain).max() > 0
        names = [name for name in ("shiny", "dots", "stripes") if name in str(fields)]
        hashes = parse_infotext(generation.infotexts[0])[2]["TI hashes"]
        assert hashes == ", ".join(
            f"{name}: {hashlib.sha256((embeddings_dir / f'{name}.safetensors').read_bytes()).hexdigest()[:12]}"
            for name in names)


def test_embeddings_that_cannot_be_used_are_named_with_why(service):
    generation = service.run("txt2img", {"prompt": "sd15only and old", **SMALL})
    assert any("embedding 'sd15only' is not used: sd15only.safetensors: made for a 768-wide text encoder" in warning
               for warning in generation.warnings), generation.warnings
    assert any("embedding 'old' is not used: old.pt: pickled files are never loaded" in warning
               for warning in generation.warnings), generation.warnings
    assert "TI hashes" not in generation.infotexts[0]
    assert service.run("txt2img", {"prompt": "a bold golden circle", **SMALL}).warnings == [], "whole words only"


# -- clip skip ------------------------------------------------------------------------------------------------------


def test_clip_skip_changes_the_image_and_round_trips_through_the_infotext(service):
    one, two = pixels(service, "a red circle"), pixels(service, "a red circle", clip_skip=2)
    assert np.abs(one - two).max() > 0
    generation = service.run("txt2img", {"prompt": "a red circle", **SMALL, "clip_skip": 2})
    assert "Clip skip: 2" in generation.infotexts[0]
    assert fields_from_infotext(generation.infotexts[0], service.extensions)["clip_skip"] == 2
    assert "Clip skip" not in service.run("txt2img", {"prompt": "a red circle", **SMALL}).infotexts[0]
    with pytest.raises(ValueError, match="clip_skip must be from 1 to 2 for this model's 2-layer text encoder, got 3"):
        service.build("txt2img", {"prompt": "x", "clip_skip": 3})
    with pytest.raises(ValueError, match="clip_skip must be a whole number from 1 to 12, got 0"):
        service.build("txt2img", {"prompt": "x", "clip_skip": 0})


def test_the_token_counter_counts_as_a1111(service):
    prompts = service.extension("prompts")
    tokenizer = service.manager.pipelines["txt2img"].tokenizer
    assert prompts.token_count("") == "0/75"
    assert prompts.token_count("a red circle") == "3/75"
    for prompt in ("x " * 75, "x " * 76, LONG):
        count = a1111.chunks(tokenizer, prompt)[1]
        assert prompts.token_count(prompt) == f"{count}/{max(1, -(-count // 75)) * 75}"
    assert prompts.token_count("x " * 76) == "76/150"
    started = time.perf_counter()
    assert prompts.token_count("x" * 10_000_000) == "over 32,768 characters"  # never tokenized
    assert time.perf_counter() - started < 0.1


def test_an_infotext_regenerates_its_pixels(service):
    """Everything at once, read back from the infotext as PNG Info's Send to reads it."""
    fields = {"prompt": "(a shiny red circle:1.2), " * 15 + "BREAK [blue background]", "negative_prompt": "dots",
              "clip_skip": 2, **SMALL}
    first = service.run("txt2img", fields)
    read = fields_from_infotext(first.infotexts[0], service.extensions)
    again = service.run("txt2img", {name: read[name] for name in (*fields, "guidance_scale", "sampler")})
    assert again.infotexts == first.infotexts
    assert np.array_equal(np.asarray(Image.open(again.files[0])), np.asarray(Image.open(first.files[0])))


# -- through every interface of the launched app -----------------------------------------------------------------


def test_rest_clip_skip_override_equals_the_endpoints_keyword(app_server, client):
    import webuiapi

    url = app_server[0]
    api = webuiapi.WebUIApi(baseurl=f"{url}/sdapi/v1")
    fields = {"prompt": "a red circle", "seed": 4, "steps": 2, "width": 64, "height": 64}
    rest = api.txt2img(**fields, override_settings={"CLIP_stopping_at_last_layers": 2})
    assert "CLIP_stopping_at_last_layers" not in rest.info["ignored_fields"]
    assert "Clip skip: 2" in rest.info["infotexts"][0]
    gallery, _, _ = client.predict(**fields, clip_skip=2, api_name="/txt2img")
    keyword = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    assert np.array_equal(np.asarray(rest.image.convert("RGB")), keyword)
    one, _, _ = client.predict(**fields, api_name="/txt2img")
    assert not np.array_equal(np.asarray(Image.open(one[0]["image"]).convert("RGB")), keyword)


def test_rest_lists_the_embeddings_as_a1111_does(app_server):
    import requests

    listing = requests.get(f"{app_server[0]}/sdapi/v1/embeddings", timeout=30).json()
    assert listing["loaded"] == {"shiny-style": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                                 "shape": 64, "vectors": 2}}
    assert set(listing["skipped"]) == {"evil"}
    assert requests.post(f"{app_server[0]}/sdapi/v1/refresh-embeddings", timeout=30).status_code == 200


def test_a_word_close_to_an_embeddings_name_gets_did_you_mean_and_ordinary_words_pass(app_server):
    service = app_server[1]
    _, warnings = service.build("txt2img", {"prompt": "a (shiny-styl:1.1) red circle",
                                            "negative_prompt": "Shiny_Style"})
    assert [warning for warning in warnings if "embedding" in warning] == [
        "'shiny-styl' is no embedding's name; did you mean 'shiny-style'?",
        "'Shiny_Style' is no embedding's name; did you mean 'shiny-style'?"]
    _, warnings = service.build("txt2img", {"prompt": "a shiny red circle in style, shiny-style, evils, stylish"})
    assert [warning for warning in warnings if "embedding's name" in warning] == []


def test_a_weighted_long_prompt_with_an_embedding_through_gradio_client(client):
    prompt = "(a shiny-style red circle:1.2), [blue background], " * 12  # 200 tokens and more
    gallery, infotext, warnings = client.predict(prompt=prompt, negative_prompt="evil", seed=2, steps=2, width=64,
                                                 height=64, api_name="/txt2img")
    assert infotext.startswith(prompt + "\n") and 'TI hashes: "shiny-style: ' in infotext
    assert "embedding 'evil' is not used: evil.pt: pickled files are never loaded" in warnings
    assert len(gallery) == 1


def test_the_browser_counts_tokens_and_generates_a_weighted_long_prompt(app_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_server[0])
        counter = page.locator("#txt2img-prompt-tokens textarea, #txt2img-prompt-tokens input").first
        expect(counter).to_have_value("0/75")
        page.locator("#txt2img-prompt textarea").fill("a red circle <lora:ink:0.5>")
        expect(counter).to_have_value("3/75")  # LoRA tags are not counted, as in A1111
        prompt = "(a red circle:1.3), " * 20
        page.locator("#txt2img-prompt textarea").fill(prompt)
        expected = app_server[1].extension("prompts").token_count(prompt)  # checked against A1111's above
        assert expected.endswith("/150")
        expect(counter).to_have_value(expected)
        page.locator("#txt2img-negative textarea").fill("blue")
        expect(page.locator("#txt2img-negative-tokens textarea, #txt2img-negative-tokens input").first).to_have_value(
            "1/75")
        page.locator("#txt2img-generate").click()
        expect(page.locator("#txt2img-infotext textarea")).to_have_value(
            re.compile(re.escape(prompt) + "\nNegative prompt: blue\nSteps: "), timeout=120_000)
        browser.close()


def test_rest_weighted_long_prompt_with_a_controlnet_unit(app_server):
    import base64
    import io

    import requests

    ring = Image.new("RGB", (64, 64), "black")
    ring.paste((255, 255, 255), (16, 16, 48, 48))
    buffer = io.BytesIO()
    ring.save(buffer, format="PNG")
    unit = {"module": "canny", "model": "edges", "image": base64.b64encode(buffer.getvalue()).decode()}
    prompt = "(a white square:1.3), [black background], " * 12
    response = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", timeout=300, json={
        "prompt": prompt, "seed": 1, "steps": 2, "width": 64, "height": 64,
        "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert response.status_code == 200, response.text
    infotext = json.loads(response.json()["info"])["infotexts"][0]
    assert infotext.startswith(prompt + "\n") and 'ControlNet 0: "Module: canny, Model: edges [' in infotext

