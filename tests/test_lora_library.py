"""LoRA prompt tags and the LoRA library (folder scan, names, refused files)."""

from __future__ import annotations

import os

import pytest

from extensions.lora import LoraLibrary, LoraTag, parse_tags
from extensions.lora.tags import replace_tags


def test_tags_are_parsed_and_removed_from_the_prompt():
    text, tags = parse_tags("a cat <lora:ink:0.6>, on a mat <lora:styles/pastel> <lora:ink:0.2>")
    assert text == "a cat , on a mat"
    assert tags == (LoraTag("ink", pytest.approx(0.8)), LoraTag("styles/pastel", 1.0))  # repeated: weights add
    assert parse_tags("no tags here") == ("no tags here", ())


@pytest.mark.parametrize("prompt, message", [
    ("<lora:ink:strong>", "prompt: LoRA tag '<lora:ink:strong>' has weight 'strong', not a number"),
    ("<lora: :1>", "prompt: LoRA tag '<lora: :1>' has no name"),
])
def test_bad_tags_are_named(prompt, message):
    with pytest.raises(ValueError, match=message):
        parse_tags(prompt)


def test_replace_tags_keeps_the_text_and_rewrites_the_tags():
    assert replace_tags("a cat <lora:a:1> sitting", [LoraTag("b", 0.5)]) == "a cat sitting <lora:b:0.5>"
    assert replace_tags("a cat <lora:a:1>", []) == "a cat"


@pytest.fixture
def folder(tmp_path):
    for relative in ("ink.safetensors", "styles/pastel.safetensors", "a/same.safetensors", "b/same.safetensors"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    (tmp_path / "old.ckpt").write_bytes(b"")
    return tmp_path


def test_names_are_stems_unless_two_files_share_one(folder):
    library = LoraLibrary(folder)
    assert library.names() == ["a/same", "b/same", "ink", "pastel"]
    assert library.resolve("ink") == folder / "ink.safetensors"
    assert library.resolve("styles/pastel") == library.resolve("pastel")


def test_new_files_are_found_on_refresh_and_on_demand(folder):
    library = LoraLibrary(folder)
    (folder / "new.safetensors").write_bytes(b"")
    assert "new" not in library.names()
    assert library.resolve("new") == folder / "new.safetensors"  # a miss rescans once
    (folder / "newer.safetensors").write_bytes(b"")
    assert "newer" in library.refresh()


@pytest.mark.parametrize("name, message", [
    ("old", "LoRA 'old': only .safetensors files are loaded; pickled weights .* can run code"),
    ("missing", "LoRA 'missing' is not in the LoRA folder"),
    ("owner/repo", "LoRA 'owner/repo': not in the LoRA folder and not fetched from the Hub"),
    ("../outside", "LoRA '../outside' is not in the LoRA folder"),
])
def test_refused_names_say_why(folder, name, message):
    (folder.parent / "outside.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=message):
        LoraLibrary(folder).resolve(name)


def test_a_symlink_out_of_the_folder_is_not_listed(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "secret.safetensors"
    elsewhere.write_bytes(b"")
    os.symlink(elsewhere, folder / "secret.safetensors")
    assert "secret" not in LoraLibrary(folder).names()
