"""ControlNet preprocessors: what canny finds, that settings are honoured and checked, and the map cache."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from extensions.controlnet import preprocessors
from extensions.controlnet.preprocessors import PREPROCESSORS, MapCache, Preprocessor, available, detect, get
from tests.conftest import ROOT


def circle(size=(256, 256), radius=60, fill=False) -> tuple[Image.Image, tuple[int, int], int]:
    """A white circle (outline 4 px, or a filled disk) on black; returns (image, centre, radius)."""
    image = Image.new("RGB", size, "black")
    cx, cy = size[0] // 2, size[1] // 2
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    ImageDraw.Draw(image).ellipse(box, outline="white", width=4, fill="white" if fill else None)
    return image, (cx, cy), radius


def edge_pixels(edges: Image.Image) -> np.ndarray:
    return np.argwhere(np.asarray(edges.convert("L")) > 0)  # (y, x) rows


def test_the_list_offline_has_none_and_canny_first():
    names = available()
    assert names[:2] == ["none", "canny"]
    assert {"invert", "lineart_standard", "shuffle", "threshold", "scribble_xdog", "tile_resample"} <= set(names)


def test_canny_finds_the_circle_outline_and_nothing_far_from_it():
    image, (cx, cy), radius = circle(fill=True)
    edges = get("canny").run(image, resolution=256)
    assert edges.size == image.size and edges.mode == "RGB"
    pixels = edge_pixels(edges)
    distance = np.hypot(pixels[:, 1] - cx, pixels[:, 0] - cy)
    assert len(pixels) > 2 * np.pi * radius * 0.8  # the whole outline ...
    assert np.all(np.abs(distance - radius) <= 3)  # ... and nothing else
    angles = np.floor(np.degrees(np.arctan2(pixels[:, 0] - cy, pixels[:, 1] - cx)) / 10) % 36
    assert len(set(angles.tolist())) == 36  # every 10-degree sector of the circle has edges


def test_canny_thresholds_change_the_edges():
    image = Image.new("RGB", (256, 128), "black")
    for i, gray in enumerate((10, 30, 60, 255)):  # bars of rising contrast: higher thresholds keep fewer
        ImageDraw.Draw(image).rectangle((16 + 60 * i, 32, 46 + 60 * i, 96), fill=(gray,) * 3)
    settings = ((5, 20), (100, 200), (250, 255))
    counts = [len(edge_pixels(detect(image, "canny", 128, low, high))) for low, high in settings]
    assert counts[0] > counts[1] > counts[2] > 0


def test_resolution_is_the_short_side_the_detector_sees_and_the_map_comes_back_at_input_size():
    seen = []
    probe = Preprocessor("probe", lambda rgb, a, b: seen.append(rgb.shape) or rgb[:, :, 0])
    out = probe.run(Image.new("RGB", (300, 200), "red"), resolution=100)
    assert seen == [(100, 150, 3)]
    assert out.size == (300, 200) and out.mode == "RGB"
    image, _, _ = circle(size=(301, 203))
    low, high = detect(image, "canny", 64), detect(image, "canny", 1024)
    assert low.size == high.size == (301, 203)
    assert low.tobytes() != high.tobytes()


@pytest.mark.parametrize("name", [name for name in available() if name != "none"])
def test_every_weight_free_preprocessor_gives_rgb_at_input_size(name):
    image, _, _ = circle(size=(97, 131))
    rgba = image.convert("RGBA")
    rgba.putalpha(128)
    for source in (image, rgba, image.convert("L")):
        out = get(name).run(source, resolution=128)
        assert out.size == (97, 131) and out.mode == "RGB"


def test_none_returns_the_image_unchanged_in_rgb():
    image, _, _ = circle(size=(70, 50))
    assert get("none").run(image, resolution=2048).tobytes() == image.tobytes()


def test_sd_webui_controlnet_internal_names_are_accepted():
    assert get("invert (from white bg & black line)").name == "invert"
    assert get("color").name == "t2ia_color_grid"


def test_the_map_cache_hits_on_equal_content_and_settings_and_is_faster():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (768, 768, 3), dtype=np.uint8))
    maps = MapCache(cap=4)
    started = time.perf_counter()
    first = maps.detect(image, "lineart_standard", 768)
    miss = time.perf_counter() - started
    hits = []
    for _ in range(3):
        started = time.perf_counter()
        again = maps.detect(image.copy(), "lineart_standard", 768)  # another object, same pixels
        hits.append(time.perf_counter() - started)
    assert (maps.misses, maps.hits) == (1, 3)
    assert again.tobytes() == first.tobytes()
    assert min(hits) < miss / 2, (miss, hits)


def test_the_cache_key_is_the_settings_after_defaults_and_unused_ones_are_ignored():
    image, _, _ = circle(size=(64, 64))
    maps = MapCache()
    maps.detect(image, "canny", 512, None, None)
    maps.detect(image, "canny", 512, 100, 200)  # the defaults, spelled out
    maps.detect(image, "invert", 512, 64, 64)  # invert has no thresholds: A1111 clients send them anyway
    maps.detect(image, "invert", 512, None, None)
    assert (maps.misses, maps.hits) == (2, 2)
    maps.detect(image, "canny", 512, 101, 200)
    maps.detect(image, "canny", 256, 100, 200)
    assert (maps.misses, maps.hits) == (4, 2)


def test_a_returned_map_is_a_copy_and_the_cache_is_bounded():
    maps = MapCache(cap=2)
    images = [circle(size=(64, 64), radius=r)[0] for r in (10, 20, 30)]
    first = maps.detect(images[0], "invert")
    first.paste((1, 2, 3), (0, 0, 64, 64))  # the caller draws on its map
    assert maps.detect(images[0], "invert").getpixel((0, 0)) == (255, 255, 255)
    maps.detect(images[1], "invert")
    maps.detect(images[2], "invert")
    assert len(maps) == 2
    maps.detect(images[0], "invert")  # evicted: detected again
    assert (maps.misses, maps.hits) == (4, 1)


def test_the_cache_is_thread_safe():
    maps = MapCache(cap=3)
    images = [circle(size=(128, 128), radius=r)[0] for r in (20, 30, 40, 50)]
    expected = [get("canny").run(image).tobytes() for image in images]
    errors = []

    def work(offset):
        try:
            for i in range(24):
                k = (i + offset) % 4
                assert maps.detect(images[k], "canny").tobytes() == expected[k]
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(maps) <= 3 and maps.hits + maps.misses == 96


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda image: detect(image, "cany"), ["'cany'", "not available here", "available: none, canny"]),
        (lambda image: detect(image, "canny", 512, 0, 200), ["threshold_a", "Canny Low Threshold", "0", "[1, 255]"]),
        (lambda image: detect(image, "canny", 512, 100, 300), ["threshold_b", "300"]),
        (lambda image: detect(image, "canny", 512, "100", 200), ["threshold_a", "'100'"]),
        (lambda image: detect(image, "canny", 32), ["resolution", "32", "[64, 2048]"]),
        (lambda image: detect(image, "canny", 4096), ["resolution", "4096"]),
        (lambda image: detect(image, "canny", 512.5), ["resolution", "512.5"]),
        (lambda image: detect(image, "canny", float("nan")), ["resolution", "nan"]),
        (lambda image: detect(np.asarray(image), "canny"), ["image", "ndarray"]),
        (lambda image: get("canny").run("photo.png"), ["image", "str"]),
        (lambda image: detect(image, None), ["preprocessor None"]),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_the_value(call, words):
    image, _, _ = circle(size=(64, 64))
    with pytest.raises(ValueError) as error:
        call(image)
    for word in words:
        assert word in str(error.value)


@pytest.mark.skipif(importlib.util.find_spec("controlnet_aux") is not None, reason="controlnet-aux is installed here")
def test_detectors_with_weights_are_listed_as_unavailable_with_the_reason():
    assert "openpose" in PREPROCESSORS and "openpose" not in available()
    with pytest.raises(ValueError, match=r"preprocessor 'depth' is not available here \(needs the controlnet-aux"):
        get("depth")


def test_the_hub_probe_answers_at_once_offline(monkeypatch):
    from extensions.controlnet import weighted

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    assert weighted.missing_requirements((), ("body_pose_model.pth",)) is not None or weighted._in_hf_cache(
        "body_pose_model.pth"
    )
    assert time.perf_counter() - started < 1


def test_importing_the_preprocessors_loads_no_model_code():
    code = (
        "import sys, extensions.controlnet; "
        "assert not {'torch', 'diffusers', 'controlnet_aux', 'huggingface_hub'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_the_module_keeps_a_shared_cache():
    image, _, _ = circle(size=(64, 64), radius=17)
    before = preprocessors._maps.hits
    assert detect(image, "scribble_xdog").tobytes() == detect(image, "scribble_xdog").tobytes()
    assert preprocessors._maps.hits == before + 1
