"""The ControlNet library and its cache of loaded models, on tiny ControlNets saved as real files.

The single files are written in lllyasviel's original key layout (`control_model.input_blocks...`) by
`testing.controlnet_files`, and loaded back by diffusers' own conversion. A single file carries no config;
the library passes one, the shipped SD 1.5 config by default and the tiny model's config in these tests.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import weakref
from pathlib import Path

import pytest
import torch

from extensions.controlnet.cache import ControlNetCache
from extensions.controlnet.library import SD15_CONFIG, SDXL_CONFIG, ControlNetLibrary
from testing.controlnet_files import save_original, tiny_controlnet

TINY_WIDTH = 32  # the tiny models' cross-attention width, standing in for SD 1.x's 768


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """Files to copy into each test's folder: a tiny ControlNet as a diffusers folder and as an original single file,
    another one made for a wider text encoder (SDXL-like), and a pickle."""
    root = tmp_path_factory.mktemp("made")
    tiny_controlnet(seed=0).save_pretrained(root / "tiny-folder")
    save_original(tiny_controlnet(seed=0), root / "canny-tiny.safetensors")
    save_original(tiny_controlnet(seed=1), root / "canny-tiny-v2.safetensors")
    save_original(tiny_controlnet(cross_attention_dim=2048, seed=2), root / "sdxl-canny.safetensors")
    save_original(tiny_controlnet(cross_attention_dim=768, seed=3), root / "tiny-768.safetensors")
    (root / "evil.ckpt").write_bytes(b"\x80\x04 pickled")
    return root


@pytest.fixture()
def library(made, tmp_path) -> ControlNetLibrary:
    folder = tmp_path / "ControlNet"
    shutil.copytree(made / "tiny-folder", folder / "tiny-folder")
    shutil.copytree(made / "tiny-folder", folder / "sub" / "deep" / "tiny2")
    for name in ("canny-tiny", "sdxl-canny"):
        shutil.copy(made / f"{name}.safetensors", folder / f"{name}.safetensors")
    (folder / "other").mkdir()
    for place in ("sub", "other"):  # one stem twice: each is named by its path
        shutil.copy(made / "canny-tiny.safetensors", folder / place / "pose.safetensors")
    shutil.copy(made / "evil.ckpt", folder / "evil.ckpt")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(made / "canny-tiny.safetensors", outside / "stolen.safetensors")
    (folder / "escape.safetensors").symlink_to(outside / "stolen.safetensors")
    (folder / "linked-dir").symlink_to(outside, target_is_directory=True)
    return ControlNetLibrary(folder, single_file_config=made / "tiny-folder")


def test_list_names_finds_folders_and_single_files_in_subfolders(library):
    assert library.list_names() == ["canny-tiny", "other/pose", "sdxl-canny", "sub/pose", "tiny-folder", "tiny2"]


def test_resolve_by_stem_relative_name_or_file_name(library):
    assert library.resolve("tiny2") == library.resolve("sub/deep/tiny2")
    assert library.resolve("tiny2").kind == "folder"
    single = library.resolve("canny-tiny.safetensors")
    assert single == library.resolve("canny-tiny") and single.kind == "single_file"
    assert library.resolve("sub/pose").location != library.resolve("other/pose").location


def test_a_stem_shared_by_two_files_needs_its_path(library):
    with pytest.raises(ValueError, match=r"ControlNet 'pose' not found in .*ControlNet; "
                                         r"did you mean '(other|sub)/pose' "
                                         r"or '(other|sub)/pose'\?; available: canny-tiny, other/"):
        library.resolve("pose")


def test_a_mistyped_name_gets_the_closest_names(library):
    with pytest.raises(ValueError, match=r"ControlNet 'cany-tiny' not found in .*; did you mean 'canny-tiny'\?"):
        library.resolve("cany-tiny")


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
def test_hub_ids_are_recognised_and_fail_clearly_offline(library):
    entry = library.resolve("lllyasviel/control_v11p_sd15_canny")
    assert (entry.kind, entry.location) == ("hub", "lllyasviel/control_v11p_sd15_canny")
    with pytest.raises(ValueError, match=r"ControlNet 'sub/nope' not found"):  # "sub" is a local folder
        library.resolve("sub/nope")
    with pytest.raises(ValueError, match=r"'lllyasviel/control_v11p_sd15_canny': not in .* not loaded from the Hub"):
        ControlNetCache(library).get("lllyasviel/control_v11p_sd15_canny")


def test_pickles_are_refused_with_the_reason(library):
    for name in ("evil", "evil.ckpt", "sub/model.pth"):
        with pytest.raises(ValueError, match=r"pickle.*can run code.*only \.safetensors"):
            library.resolve(name)
    assert "evil" not in library.list_names()
    folder = library.folder / "bin-folder"
    folder.mkdir()
    shutil.copy(library.folder / "tiny-folder" / "config.json", folder / "config.json")
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match=r"'bin-folder' is a diffusers folder with pickled weights"):
        library.resolve("bin-folder")


@pytest.mark.parametrize("name", ["../outside/stolen", "/etc/passwd", "sub/../../outside/x", "sub\\pose", "sub//pose"])
def test_names_leading_outside_the_folder_are_refused(library, name):
    with pytest.raises(ValueError, match=r"is not a path inside the ControlNet folder"):
        library.resolve(name)


def test_symlinks_out_of_the_folder_are_refused(library):
    names = library.list_names()
    assert "escape" not in names and not any(name.startswith("linked-dir") for name in names)
    with pytest.raises(ValueError, match=r"^ControlNet 'escape' is a link leading out of the folder ControlNet$"):
        library.resolve("escape")
    with pytest.raises(ValueError, match=r"link leading out"):
        library.resolve("linked-dir")


def test_unknown_names_list_what_there_is_and_new_files_are_found(library, made):
    with pytest.raises(ValueError, match=r"ControlNet 'nope' not found in .*; available: canny-tiny, other/pose, "):
        library.resolve("nope")
    shutil.copy(made / "canny-tiny.safetensors", library.folder / "new.safetensors")
    assert library.resolve("new").kind == "single_file"  # rescanned on the miss


def test_the_cache_loads_once_evicts_the_least_recently_used_and_frees_it(library):
    cache = ControlNetCache(library, cap=2)
    first = cache.get("canny-tiny", cross_attention_dim=TINY_WIDTH)
    assert cache.get("canny-tiny") is first
    assert not first.training and not any(p.requires_grad for p in first.parameters())
    gone = weakref.ref(first)
    del first
    cache.get("tiny-folder")
    cache.get("tiny2")  # a third: canny-tiny, the least recently used, goes
    assert [Path(p).name for p in cache.loaded()] == ["tiny-folder", "tiny2"]
    gc.collect()
    assert gone() is None  # nothing else held it: its memory is free
    assert cache.get("canny-tiny") is not None and len(cache.loaded()) == 2


def test_a_changed_file_is_loaded_again_and_the_loaded_model_is_not_changed_under_it(library, made):
    cache = ControlNetCache(library)
    before = cache.get("canny-tiny")
    weights = before.conv_in.weight.clone()
    path = library.folder / "canny-tiny.safetensors"
    shutil.copy(made / "canny-tiny-v2.safetensors", path)  # overwritten in place, as `cp` does
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert torch.equal(before.conv_in.weight, weights)  # not memory-mapped from the file
    after = cache.get("canny-tiny")
    assert after is not before
    assert not torch.equal(after.conv_in.weight, weights)
    assert len(cache.loaded()) == 1  # the stale model is dropped


def test_single_files_load_exactly_the_saved_weights(library):
    from diffusers import ControlNetModel

    single = ControlNetCache(library).get("canny-tiny")
    folder = ControlNetModel.from_pretrained(library.folder / "tiny-folder")
    expected = folder.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in single.state_dict().items())


def test_a_controlnet_for_another_base_is_refused_naming_the_file_and_both_widths(library):
    cache = ControlNetCache(library)
    cache.get("tiny-folder")
    with pytest.raises(ValueError, match=r"sdxl-canny\.safetensors: made for another base .* 2048 \(SDXL\).* 32"):
        cache.get("sdxl-canny", cross_attention_dim=TINY_WIDTH)
    with pytest.raises(ValueError, match=r"tiny-folder/diffusion_pytorch_model\.safetensors: .* 32 .* 768 \(SD 1\.x\)"):
        cache.get("tiny-folder", cross_attention_dim=768)  # already loaded: checked all the same
    assert [Path(p).name for p in cache.loaded()] == ["tiny-folder"]
    with pytest.raises(ValueError, match=r"sdxl-canny\.safetensors: its cross-attention width is 2048 .* of width 32"):
        cache.get("sdxl-canny")  # a single file loads with the library's config, here of width 32


def test_a_truncated_file_is_refused_naming_it_and_the_next_call_works(library):
    cache = ControlNetCache(library)
    cache.get("tiny-folder")
    data = (library.folder / "canny-tiny.safetensors").read_bytes()
    (library.folder / "broken.safetensors").write_bytes(data[: len(data) // 2])
    (library.folder / "garbage.safetensors").write_bytes(os.urandom(4096))
    for name in ("broken", "garbage"):
        with pytest.raises(ValueError, match=rf"ControlNet file {name}\.safetensors: cannot be loaded: truncated"):
            cache.get(name, cross_attention_dim=TINY_WIDTH)
    assert [Path(p).name for p in cache.loaded()] == ["tiny-folder"]
    assert cache.get("canny-tiny", cross_attention_dim=TINY_WIDTH) is not None


def test_a_single_file_not_shaped_like_sd15_is_refused_with_the_default_config(library, made):
    shutil.copy(made / "tiny-768.safetensors", library.folder / "tiny-768.safetensors")
    default = ControlNetLibrary(library.folder)
    assert default.config_for(default.resolve("canny-tiny")) == SD15_CONFIG  # no shipped config of its width
    cache = ControlNetCache(default)
    with pytest.raises(ValueError, match=r"canny-tiny\.safetensors: its cross-attention width is 32 .* of width 768"):
        cache.get("canny-tiny")
    with pytest.raises(ValueError, match=r"tiny-768\.safetensors: cannot be loaded: .* not shaped as its config says"):
        cache.get("tiny-768", cross_attention_dim=768)  # the right width, but 2 levels of 32/64 channels
    assert cache.loaded() == []


def test_the_shipped_config_is_sd15_controlnet():
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    config = json.loads((SD15_CONFIG / "config.json").read_text())
    assert (config["in_channels"], config["cross_attention_dim"], config["attention_head_dim"]) == (4, 768, 8)
    assert config["block_out_channels"] == [320, 640, 1280, 1280]
    assert config["conditioning_embedding_out_channels"] == [16, 32, 96, 256]
    with init_empty_weights():
        model = ControlNetModel.from_config(ControlNetModel.load_config(SD15_CONFIG))
    assert sum(p.numel() for p in model.parameters()) == 361_279_120  # control_v11p_sd15_*: 1.45 GB in fp32


def test_a_single_file_loads_with_the_shipped_config_of_its_width(tmp_path):
    import torch
    from safetensors.torch import save_file

    library = ControlNetLibrary(tmp_path)
    for name, width in (("xl", 2048), ("sd15", 768), ("other", 1024)):
        save_file({"down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight":
                   torch.zeros(8, width, dtype=torch.float16)}, str(tmp_path / f"{name}.safetensors"))
    chosen = {name: library.config_for(library.resolve(name)) for name in ("xl", "sd15", "other")}
    assert chosen == {"xl": SDXL_CONFIG, "sd15": SD15_CONFIG, "other": SD15_CONFIG}


def test_the_shipped_sdxl_config_is_sdxl_unets_encoder_half():
    """SDXL's full-size ControlNet (diffusers/controlnet-*-sdxl-1.0, sd_control_collection's *_full) copies the SDXL
    U-Net's down and middle blocks: the shipped config must describe the same blocks as models/configs/sdxl."""
    from models.families import CONFIGS_DIR

    config = json.loads((SDXL_CONFIG / "config.json").read_text())
    unet = json.loads((CONFIGS_DIR / "sdxl" / "unet" / "config.json").read_text())
    for key in ("block_out_channels", "down_block_types", "attention_head_dim", "transformer_layers_per_block",
                "cross_attention_dim", "addition_embed_type", "addition_time_embed_dim",
                "projection_class_embeddings_input_dim", "use_linear_projection", "layers_per_block"):
        assert config[key] == unet[key], key
    assert config["conditioning_embedding_out_channels"] == [16, 32, 96, 256]


def test_short_hash_is_the_start_of_the_weights_sha256(library, monkeypatch, tmp_path):
    monkeypatch.setenv("SD_STUDIO_CACHE", str(tmp_path / "cache"))
    single = hashlib.sha256((library.folder / "canny-tiny.safetensors").read_bytes()).hexdigest()[:8]
    weights = library.folder / "tiny-folder" / "diffusion_pytorch_model.safetensors"
    assert library.short_hash("canny-tiny") == single
    assert library.short_hash("tiny-folder") == hashlib.sha256(weights.read_bytes()).hexdigest()[:8]
    assert library.infotext_name("canny-tiny") == f"canny-tiny [{single}]"
    assert library.infotext_name("lllyasviel/control_v11p_sd15_canny") == "lllyasviel/control_v11p_sd15_canny"


def test_bad_arguments_are_named(library):
    with pytest.raises(ValueError, match=r"cap must be an integer >= 1, got 0"):
        ControlNetCache(library, cap=0)
    with pytest.raises(ValueError, match=r"ControlNet name must be a non-empty string, got ''"):
        library.resolve("")
