"""One rule for Hugging Face Hub ids (models.files.is_hub_id, the Hub's own: owner/name), used by the base model, the
LoRA library and the ControlNet library alike; a path never passes for one."""

from __future__ import annotations

import pytest

from extensions.controlnet.library import ControlNetLibrary
from extensions.lora.library import LoraLibrary, _is_hub_name
from models.files import HUB_REPO_ID, is_hub_id
from models.loading import identify

ACCEPTED = [
    "stable-diffusion-v1-5/stable-diffusion-inpainting",
    "lllyasviel/control_v11p_sd15_canny",
    "depth-anything/Depth-Anything-V2-Small-hf",
    "a/b",
    "_owner/_name_",
    "Owner.Name/model.v1.5",
    "x/" + "n" * 96,
    "o" * 96 + "/x",
]
REFUSED = [
    "",
    "name",  # no owner: a bare name is a folder name here
    "a/b/c",
    "../x",
    "x/..",
    "./x",
    "/abs",
    "/abs/path",
    "a/",
    "/",
    "C:\\x",
    "C:/x",
    "a\\b",
    "owner/na me",
    "owner/name\n",
    "-owner/name",
    "owner/name-",
    ".owner/name",
    "owner/name.",
    "owner/-name",
    "owner/a--b",
    "owner/a..b",
    "ow--ner/name",
    "owner/name.git",
    "x/" + "n" * 97,
    "o" * 97 + "/x",
    "café/x",
    "owner/name/",
    None,
    42,
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_hub_ids_are_accepted(text):
    assert is_hub_id(text) and HUB_REPO_ID.match(text)


@pytest.mark.parametrize("text", REFUSED)
def test_other_text_and_paths_are_not_hub_ids(text):
    assert not is_hub_id(text)
    assert not isinstance(text, str) or not HUB_REPO_ID.match(text)


def test_the_rule_is_the_hubs_own():
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    for text in ACCEPTED:
        validate_repo_id(text)
    for text in REFUSED:
        if isinstance(text, str) and text.count("/") == 1:  # the Hub also takes a bare name; we want an owner
            with pytest.raises(HFValidationError):
                validate_repo_id(text)


def test_the_base_model_takes_only_hub_ids_from_clients():
    assert identify("lllyasviel/sd-controlnet-canny", local=False).kind == "hub"
    for text in ("../x", "a/b/c", "/abs", "C:\\x", "x/..", "owner/a--b"):
        with pytest.raises(ValueError, match="is not 'demo' or a Hub id"):
            identify(text, local=False)


def test_the_base_model_never_takes_a_missing_path_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert identify("owner/model").kind == "hub"
    for text in ("a/b/c", "x/..", "./x", "owner/a..b"):
        with pytest.raises(ValueError, match="is not 'demo', an existing folder"):
            identify(text)


def test_lora_hub_names_are_a_hub_id_or_a_safetensors_file_in_one():
    assert _is_hub_name("owner/repo")
    assert _is_hub_name("owner/repo/weights.safetensors")
    assert _is_hub_name("owner/repo/sub/weights.safetensors")
    for text in ("owner", "owner/repo/weights.bin", "owner/repo/.safetensors", "ow--ner/repo", "owner/re..po",
                 "owner/repo.git", "-owner/repo/weights.safetensors"):
        assert not _is_hub_name(text), text


@pytest.mark.parametrize("name", ["../x", "a/b/c", "/abs", "C:\\x", "x/..", "owner/a--b"])
def test_lora_path_like_names_are_never_fetched(tmp_path, name):
    with pytest.raises(ValueError, match="is not in the LoRA folder"):
        LoraLibrary(tmp_path).resolve(name)


@pytest.mark.parametrize("name", ["../x", "a/b/c", "/abs", "C:\\x", "x/..", "owner/a--b", "owner/name.git"])
def test_controlnet_path_like_names_are_never_hub_ids(tmp_path, name):
    with pytest.raises(ValueError, match="not a path inside the ControlNet folder|not found in"):
        ControlNetLibrary(tmp_path).resolve(name)
    assert ControlNetLibrary(tmp_path).resolve("owner/name").kind == "hub"
