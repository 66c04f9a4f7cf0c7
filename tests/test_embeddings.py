"""The textual-inversion embedding library: formats, refusals, the A1111 listing, rescans."""

from __future__ import annotations

import builtins
import hashlib
import logging
import os

import pytest
import torch
from safetensors.torch import save_file

from extensions.prompts import embeddings as embeddings_module
from extensions.prompts.embeddings import MAX_VECTORS, EmbeddingLibrary


@pytest.fixture(autouse=True)
def hash_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SD_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))


def vectors(n: int, width: int = 768, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def save(path, tensors):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "embeddings"
    save(root / "kohya.safetensors", {"emb_params": vectors(4, seed=1)})
    save(root / "one.safetensors", {"emb_params": vectors(1, seed=2)[0]})  # (w,)
    save(root / "styles/a1111.safetensors", {"string_to_param.*": vectors(2, seed=3)})
    save(root / "cat-toy.safetensors", {"<cat-toy>": vectors(1, seed=4)[0]})  # diffusers, (w,)
    save(root / "concept.safetensors", {"<concept>": vectors(3, seed=5).half()})  # diffusers, (n, w), fp16
    save(root / "sd2.safetensors", {"emb_params": vectors(2, width=1024)})
    save(root / "xl.safetensors", {"clip_g": vectors(2, width=1280), "clip_l": vectors(2)})
    save(root / "model.safetensors", {"a.weight": vectors(1), "b.weight": vectors(1)})
    save(root / "long.safetensors", {"emb_params": vectors(MAX_VECTORS + 1)})
    (root / "evil.pt").write_bytes(b"never unpickled")
    (root / "diffusers.bin").write_bytes(b"never unpickled")
    (root / "broken.safetensors").write_bytes(b"this is not a safetensors file")
    (root / "notes.txt").write_text("not an embedding, not listed")
    outside = save(tmp_path / "outside" / "secret.safetensors", {"emb_params": vectors(1)})
    os.symlink(outside, root / "secret.safetensors")
    return root


def test_each_format_is_loaded_with_its_vectors(folder):
    loaded = EmbeddingLibrary(folder).loaded(768)
    assert list(loaded) == ["a1111", "cat-toy", "concept", "kohya", "one"]
    shapes = {name: tuple(embedding.vectors.shape) for name, embedding in loaded.items()}
    assert shapes == {"a1111": (2, 768), "cat-toy": (1, 768), "concept": (3, 768), "kohya": (4, 768),
                      "one": (1, 768)}
    assert torch.equal(loaded["kohya"].vectors, vectors(4, seed=1))
    assert torch.equal(loaded["one"].vectors, vectors(1, seed=2))
    assert torch.allclose(loaded["concept"].vectors, vectors(3, seed=5), atol=1e-2)
    for embedding in loaded.values():
        assert embedding.vectors.dtype == torch.float32 and embedding.vectors.device.type == "cpu"
    assert loaded["a1111"].path == folder / "styles" / "a1111.safetensors"
    assert loaded["a1111"].name == "a1111"


def test_hash_is_the_files_sha256_and_shorthash_its_first_12_digits(folder):
    embedding = EmbeddingLibrary(folder).loaded(768)["kohya"]
    digest = hashlib.sha256((folder / "kohya.safetensors").read_bytes()).hexdigest()
    assert embedding.hash == digest
    assert embedding.shorthash == digest[:12]


def test_skipped_files_say_why_by_their_path_inside_the_folder(folder):
    skipped = EmbeddingLibrary(folder).skipped(768)
    assert set(skipped) == {"sd2", "xl", "model", "long", "evil", "diffusers", "broken"}
    assert skipped["sd2"] == "sd2.safetensors: made for a 1024-wide text encoder (SD 2.x); this model's is 768"
    assert skipped["xl"].startswith("xl.safetensors: made for a 2048-wide text encoder (SDXL); this model's is 768")
    assert skipped["model"] == "model.safetensors: not a textual-inversion embedding: keys 'a.weight', 'b.weight'"
    assert skipped["long"] == (f"long.safetensors: has {MAX_VECTORS + 1} vectors; at most {MAX_VECTORS} fit a "
                               "prompt chunk")
    assert skipped["evil"] == "evil.pt: pickled files are never loaded: convert it to .safetensors"
    assert skipped["diffusers"] == "diffusers.bin: pickled files are never loaded: convert it to .safetensors"
    assert skipped["broken"] == "broken.safetensors: not a readable .safetensors file"
    for reason in skipped.values():
        assert str(folder) not in reason and str(folder.parent) not in reason


def test_the_other_width_loads_what_768_skips(folder):
    library = EmbeddingLibrary(folder)
    assert list(library.loaded(1024)) == ["sd2"]
    assert library.skipped(1024)["kohya"] == ("kohya.safetensors: made for a 768-wide text encoder (SD 1.x); "
                                              "this model's is 1024")


def test_listing_has_a1111s_shape(folder):
    listing = EmbeddingLibrary(folder).listing(768)
    assert set(listing) == {"loaded", "skipped"}
    none = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None}
    assert listing["loaded"]["kohya"] == {**none, "shape": 768, "vectors": 4}
    assert listing["loaded"]["one"] == {**none, "shape": 768, "vectors": 1}
    assert listing["skipped"]["sd2"] == {**none, "shape": 1024, "vectors": 2}
    assert listing["skipped"]["xl"] == {**none, "shape": 1280 + 768, "vectors": 2}  # as A1111: the widths summed
    assert listing["skipped"]["long"] == {**none, "shape": 768, "vectors": MAX_VECTORS + 1}
    assert listing["skipped"]["evil"] == {**none, "shape": None, "vectors": None}
    assert listing["skipped"]["broken"] == {**none, "shape": None, "vectors": None}
    assert "secret" not in listing["loaded"] and "secret" not in listing["skipped"]


def test_pickles_are_never_opened(folder, monkeypatch):
    opened = []
    real_open, real_safe_open = builtins.open, embeddings_module.safe_open

    def recording_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def recording_safe_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_safe_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(embeddings_module, "safe_open", recording_safe_open)
    monkeypatch.setattr(type(folder), "open", lambda self, *a, **k: recording_open(self, *a, **k))
    library = EmbeddingLibrary(folder)
    assert "evil" in library.skipped(768)
    assert any(path.endswith("kohya.safetensors") for path in opened)  # the recording works
    assert not [path for path in opened if path.endswith((".pt", ".bin"))]


def test_a_symlink_out_of_the_folder_is_ignored(folder):
    library = EmbeddingLibrary(folder)
    assert "secret" not in library.loaded(768) and "secret" not in library.skipped(768)


def test_changed_files_are_reread_and_unchanged_ones_are_not(folder, monkeypatch):
    library = EmbeddingLibrary(folder)
    reads = []
    real_read = embeddings_module._read

    def recording_read(path, stamp):
        reads.append(path.name)
        return real_read(path, stamp)

    monkeypatch.setattr(embeddings_module, "_read", recording_read)
    assert len(library.loaded(768)) == 5
    assert reads == []  # nothing changed since the first scan

    save(folder / "kohya.safetensors", {"emb_params": vectors(6, seed=9)})
    os.utime(folder / "kohya.safetensors", ns=(1, 1))  # a different stamp even on a coarse clock
    save(folder / "new.safetensors", {"<new>": vectors(1)})
    (folder / "one.safetensors").unlink()
    loaded = library.loaded(768)
    assert sorted(reads) == ["kohya.safetensors", "new.safetensors"]
    assert loaded["kohya"].vectors.shape == (6, 768)
    assert loaded["kohya"].hash == hashlib.sha256((folder / "kohya.safetensors").read_bytes()).hexdigest()
    assert "new" in loaded and "one" not in loaded and "one" not in library.skipped(768)

    (folder / "sd2.safetensors").unlink()
    library.refresh()
    assert "sd2" not in library.skipped(768)


def test_a_skipped_file_is_logged_once_per_change(folder, caplog):
    library = EmbeddingLibrary(folder)
    with caplog.at_level(logging.WARNING, logger=embeddings_module.__name__):
        library.loaded(768)
        library.skipped(768)
        library.listing(768)
    evil = [record for record in caplog.records if "evil.pt" in record.getMessage()]
    assert len(evil) == 1
    caplog.clear()
    (folder / "evil.pt").write_bytes(b"never unpickled, changed")
    os.utime(folder / "evil.pt", ns=(2, 2))
    with caplog.at_level(logging.WARNING, logger=embeddings_module.__name__):
        library.loaded(768)
        library.loaded(768)
    assert len([record for record in caplog.records if "evil.pt" in record.getMessage()]) == 1


def test_a_safetensors_file_beats_a_pickle_of_the_same_name(tmp_path):
    save(tmp_path / "ink.safetensors", {"emb_params": vectors(1)})
    (tmp_path / "ink.pt").write_bytes(b"never unpickled")
    save(tmp_path / "a" / "twice.safetensors", {"emb_params": vectors(1, seed=1)})
    save(tmp_path / "b" / "twice.safetensors", {"emb_params": vectors(2, seed=2)})
    library = EmbeddingLibrary(tmp_path)
    loaded = library.loaded(768)
    assert "ink" in loaded and "ink" not in library.skipped(768)
    assert loaded["twice"].path == tmp_path / "a" / "twice.safetensors"  # the first by path, always


@pytest.mark.parametrize("tensors, reason", [
    ({"emb_params": torch.zeros(2, 3, 768)}, "its tensor 'emb_params' has shape [2, 3, 768], not (vectors, width)"),
    ({"emb_params": torch.zeros(1, 768, dtype=torch.int32)},
     "its tensor 'emb_params' holds I32, not floating-point numbers"),
    ({"string_to_param.a": torch.zeros(1, 768), "string_to_param.b": torch.zeros(1, 768)},
     "holds 2 terms (string_to_param.*); an embedding holds one"),
    ({"emb_params": torch.tensor([[float("nan")] * 768])}, "holds NaN or infinite values"),
])
def test_odd_tensors_are_refused(tmp_path, tensors, reason):
    save(tmp_path / "odd.safetensors", tensors)
    assert EmbeddingLibrary(tmp_path).skipped(768)["odd"] == f"odd.safetensors: {reason}"


def test_an_oversized_file_is_not_read(tmp_path, monkeypatch):
    save(tmp_path / "big.safetensors", {"emb_params": vectors(1)})
    monkeypatch.setattr(embeddings_module, "MAX_FILE_BYTES", 1024)
    monkeypatch.setattr(embeddings_module, "safe_open", lambda *a, **k: pytest.fail("opened an oversized file"))
    assert "at most" in EmbeddingLibrary(tmp_path).skipped(768)["big"]


def test_a_missing_folder_is_empty(tmp_path):
    library = EmbeddingLibrary(tmp_path / "nowhere")
    assert library.loaded(768) == {} and library.listing(768) == {"loaded": {}, "skipped": {}}


def test_concurrent_callers_see_whole_scans(folder):
    from concurrent.futures import ThreadPoolExecutor

    library = EmbeddingLibrary(folder)

    def ask(index):
        if index % 5 == 0:
            save(folder / f"added{index}.safetensors", {"emb_params": vectors(1, seed=index)})
        loaded, listing = library.loaded(768), library.listing(768)
        assert {"a1111", "cat-toy", "concept", "kohya", "one"} <= set(loaded)
        skipped = {"sd2", "xl", "model", "long", "evil", "diffusers", "broken"}
        assert skipped <= set(listing["skipped"])  # and maybe a file caught half written: reread once complete
        assert all(name.startswith("added") for name in set(listing["skipped"]) - skipped)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(ask, range(20)))
    assert {f"added{index}" for index in range(0, 20, 5)} <= set(library.loaded(768))
