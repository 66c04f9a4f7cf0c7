"""ControlNet preprocessors: what canny finds, that settings are honoured and checked, the map cache, and the
preprocessors with weights (depth, pose, segmentation): where their files are looked for, that a pickle of anything
but tensors is refused, and that each runs from its files, through the REST API and in a generation."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import requests
import torch
from PIL import Image, ImageDraw

from extensions.controlnet import ade20k, detectors, preprocessors
from extensions.controlnet.preprocessors import PREPROCESSORS, MapCache, Preprocessor, available, detect, get
from tests.conftest import ROOT


def in_threads(work, count: int) -> list[Exception]:
    """Run work(0) ... work(count - 1) in threads at once; the exceptions they raised."""
    errors: list[Exception] = []

    def guarded(index):
        try:
            work(index)
        except Exception as error:  # noqa: BLE001 - returned to the test
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors

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


# the inpaint maps (a picture with its hole) are tested in test_controlnet_inpaint
@pytest.mark.parametrize("name", [name for name in available() if name != "none" and not get(name).masked])
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

    def work(offset):
        for i in range(24):
            k = (i + offset) % 4
            assert maps.detect(images[k], "canny").tobytes() == expected[k]

    errors = in_threads(work, 4)
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


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None, reason="mediapipe is installed here")
def test_a_preprocessor_needing_a_package_that_is_absent_is_unavailable_with_the_reason():
    assert "mediapipe_face" in PREPROCESSORS and "mediapipe_face" not in available()
    with pytest.raises(ValueError, match=r"'mediapipe_face' is not available here \(needs the mediapipe package\)"):
        get("mediapipe_face")


def test_the_hub_probe_answers_at_once_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with annotator_folder(tmp_path):
        started = time.perf_counter()
        reason = detectors.missing((detectors.Weights("nobody/nothing", ("weights.pth",)),))
        assert time.perf_counter() - started < 1
    assert "weights.pth" in reason and f"not in {tmp_path.name}/nobody/nothing" in reason


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


# --- from controlnet-aux ---------------------------------------------------------------------------------------


def blurred_noise(size=(256, 192), seed=1) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(cv2.GaussianBlur(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), (0, 0), 1.5))


@pytest.mark.parametrize(("low", "high"), [(100, 200), (20, 60), (180, 250)])
def test_canny_through_controlnet_aux_equals_cv2_canny_with_the_same_thresholds(low, high):
    image = blurred_noise((256, 192))  # sides of multiples of 64: nothing to pad
    edges = np.asarray(get("canny").run(image, resolution=192, threshold_a=low, threshold_b=high))
    expected = cv2.Canny(np.asarray(image), low, high)
    assert expected.any() and np.array_equal(edges, np.repeat(expected[:, :, None], 3, axis=2))
    # other sides are padded to 64 by repeating the edge and cropped back, as sd-webui-controlnet does
    odd = blurred_noise((97, 131))
    padded = np.pad(np.asarray(odd), ((0, 61), (0, 31), (0, 0)), mode="edge")
    expected = cv2.Canny(padded, low, high)[:131, :97]
    assert np.array_equal(np.asarray(get("canny").run(odd, resolution=97, threshold_a=low, threshold_b=high))[..., 0],
                          expected)
    assert "controlnet_aux.canny" in sys.modules


def test_content_shuffle_gives_one_map_per_image_and_leaves_numpy_s_generator_alone():
    image = blurred_noise((128, 96), seed=4)
    np.random.seed(123)
    before = np.random.get_state()
    first = get("shuffle").run(image, resolution=96)
    second = detect(image.copy(), "shuffle", 96)  # through the cache's miss path in a fresh process, or a hit
    after = np.random.get_state()
    assert first.tobytes() == second.tobytes() == get("shuffle").run(image, resolution=96).tobytes()
    assert np.array_equal(before[1], after[1]) and before[2] == after[2]
    assert first.size == image.size and first.tobytes() != image.tobytes()


# --- with weights: depth, pose, segmentation -------------------------------------------------------------------

WEIGHTED = ("depth_anything_v2", "seg_upernet_ade20k", "openpose", "openpose_hand", "openpose_face",
            "openpose_faceonly", "openpose_full")
PALETTE = set(map(tuple, ade20k.PALETTE.tolist()))


@contextlib.contextmanager
def annotator_folder(folder):
    """`folder` as the annotator folder for the block, then the former one again (the session's app shares it)."""
    before = detectors.annotator_dir()
    detectors.set_annotator_dir(folder)
    try:
        yield folder
    finally:
        detectors.set_annotator_dir(before)


@pytest.fixture
def annotators(annotator_weights):
    """The session's folder of tiny random weights (conftest.annotator_weights) as the annotator folder."""
    with annotator_folder(annotator_weights):
        yield annotator_weights


def linked(source, target, *files: str):
    """A folder with links to some of `source`'s files (OpenPose's are 510 MB: linked, not copied)."""
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).symlink_to(source / name)
    return target


def photo(size=(64, 128), seed=0) -> Image.Image:
    """A person-sized picture: tall, because OpenPose scales the height to 368 px whatever the width."""
    return blurred_noise(size, seed)


def test_depth_pose_and_segmentation_are_listed_where_their_files_are(annotators, tmp_path):
    assert set(WEIGHTED) <= set(available())
    with annotator_folder(tmp_path):
        assert not set(WEIGHTED) & set(available()), "an empty folder, offline: none"
    body = linked(annotators, tmp_path / "body", "lllyasviel/Annotators/body_pose_model.pth",
                  "lllyasviel/Annotators/facenet.pth")
    with annotator_folder(body):
        names = set(available())
    assert {"openpose", "openpose_face", "openpose_faceonly"} <= names
    assert not {"openpose_hand", "openpose_full", "depth_anything_v2", "seg_upernet_ade20k"} & names


def test_a_missing_weight_is_named_with_the_folder_it_was_looked_for_in_and_the_hub_repository(annotators,
                                                                                                tmp_path):
    with annotator_folder(tmp_path), pytest.raises(ValueError) as error:
        get("depth_anything_v2")
    # the folder as the annotator folder's last part and the repository: no absolute server path in a message
    for words in ("model.safetensors", f"not in {tmp_path.name}/depth-anything/Depth-Anything-V2-Small-hf",
                  "Hub repository depth-anything/Depth-Anything-V2-Small-hf", "Hugging Face cache"):
        assert words in str(error.value)
    # listed, then the file goes before the first use: the loader says the same
    folder = linked(annotators, tmp_path / "gone", "lllyasviel/Annotators/body_pose_model.pth")
    with annotator_folder(folder):
        assert "openpose" in available()
        (folder / "lllyasviel/Annotators/body_pose_model.pth").unlink()
        with pytest.raises(ValueError) as error:
            PREPROCESSORS["openpose"].run(photo())
    assert "body_pose_model.pth" in str(error.value) and "not in gone/lllyasviel/Annotators" in str(error.value)


class Payload:
    """What a malicious .pth holds: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _pickle_dump(obj, path):
    with open(path, "wb") as file:
        pickle.dump(obj, file, protocol=2)


@pytest.mark.parametrize("save", [torch.save, _pickle_dump], ids=["torch.save", "pickle.dump"])
def test_a_pickle_that_is_not_plain_tensors_is_refused_and_nothing_runs(annotators, tmp_path, save):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Payload(proof)))
    assert proof.exists(), "the payload runs when unpickled unchecked"
    marker = tmp_path / "ran"
    folder = tmp_path / "evil" / "lllyasviel" / "Annotators"
    folder.mkdir(parents=True)
    save({"conv1_1.weight": Payload(marker)}, folder / "body_pose_model.pth")
    with annotator_folder(tmp_path / "evil"):
        assert "openpose" in available(), "listed: only loading a file tells what it holds"
        with pytest.raises(ValueError) as error:
            detect(photo(), "openpose")
    assert not marker.exists()
    assert ("refused to load evil/lllyasviel/Annotators/body_pose_model.pth: it is not a plain file of tensors"
            in str(error.value))
    assert "GLOBAL posix.system" in str(error.value)


def test_depth_anything_v2_gives_a_gray_map_from_black_to_white(annotators):
    image = photo((128, 96))
    depth = get("depth_anything_v2").run(image, resolution=96)  # the short side: no resizing around detection
    pixels = np.asarray(depth)
    assert depth.size == (128, 96) and depth.mode == "RGB"
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])
    assert pixels.min() == 0 and pixels.max() == 255


def test_depth_is_normalised_with_near_bright():
    disparity = np.array([[0.5, 2.0], [1.0, 4.0]])  # relative depth models give disparity: larger is nearer
    gray = detectors.depth_to_gray(disparity)
    assert gray.dtype == np.uint8 and gray[1, 1] == 255 and gray[0, 0] == 0 and gray[0, 1] > gray[1, 0]
    assert not detectors.depth_to_gray(np.full((2, 2), 3.0)).any(), "a flat depth is black, not a division by 0"


@pytest.mark.parametrize("resolution", [131, 256])
def test_seg_upernet_ade20k_colours_every_pixel_with_an_ade20k_class(annotators, resolution):
    image = photo((131, 97), seed=2)
    seg = get("seg_upernet_ade20k").run(image, resolution=resolution)
    colours = set(map(tuple, np.asarray(seg).reshape(-1, 3).tolist()))
    assert seg.size == image.size and seg.mode == "RGB"
    assert len(colours) > 1 and colours <= PALETTE, "brought back to the image's size without blending classes"


@pytest.mark.parametrize("resize_mode", ["Just Resize", "Crop and Resize", "Resize and Fill"])
def test_a_segmentation_map_fitted_to_the_generation_keeps_pure_class_colours(annotators, resize_mode):
    from extensions.controlnet.units import ControlUnit

    unit = ControlUnit.for_map("seg_upernet_ade20k", pixel_perfect=False, processor_res=97, resize_mode=resize_mode)
    fitted = unit.control_map(photo((131, 97), seed=2), (200, 96))
    colours = set(map(tuple, np.asarray(fitted).reshape(-1, 3).tolist())) - {(0, 0, 0)}  # Fill pads with black
    assert fitted.size == (200, 96) and len(colours) > 1 and colours <= PALETTE


def test_the_ade20k_palette():
    assert len(ade20k.CLASSES) == len(ade20k.PALETTE) == 150 and ade20k.PALETTE.dtype == np.uint8
    assert ade20k.CLASSES[:3] == ("wall", "building", "sky")
    assert ade20k.PALETTE[:3].tolist() == [[120, 120, 120], [180, 120, 120], [6, 230, 230]]
    assert (ade20k.CLASSES.index("box"), ade20k.CLASSES.index("tent"), ade20k.CLASSES.index("ball")) == (41, 114, 119)
    assert ade20k.colorize(np.array([[0, 2]])).tolist() == [[[120, 120, 120], [6, 230, 230]]]
    with pytest.raises(ValueError, match=r"\[0, 149\], got values in \[0, 150\]"):
        ade20k.colorize(np.array([[0, 150]]))


@pytest.mark.slow
def test_openpose_full_loads_the_three_networks_from_the_upstream_files(annotators):
    pose = get("openpose_full").run(photo(), resolution=64)
    assert pose.size == (64, 128) and pose.mode == "RGB"
    assert detectors.OPENPOSE_BODY.loaded and detectors.OPENPOSE_HAND.loaded and detectors.OPENPOSE_FACE.loaded


def test_body_only_openpose_needs_only_the_body_file(annotators, tmp_path):
    with annotator_folder(linked(annotators, tmp_path, "lllyasviel/Annotators/body_pose_model.pth")):
        pose = get("openpose").run(photo(), resolution=64)
        assert pose.size == (64, 128) and not detectors.OPENPOSE_HAND.loaded and not detectors.OPENPOSE_FACE.loaded


def test_a_model_loads_once_and_threads_share_it(annotators, monkeypatch):
    model = detectors.DEPTH_ANYTHING
    model.forget()
    loads = []
    load = model._load
    monkeypatch.setattr(model, "_load", lambda: loads.append(1) or load())
    images = [photo((64, 64), seed) for seed in range(4)]
    maps, results = MapCache(), [None] * 4

    def work(index):
        results[index] = maps.detect(images[index], "depth_anything_v2", 64)

    errors = in_threads(work, 4)
    assert not errors and all(result.size == (64, 64) for result in results)
    assert len(loads) == 1 and model() is model()


# --- through the app -------------------------------------------------------------------------------------------


def encoded(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("module", ["depth_anything_v2", "seg_upernet_ade20k", "openpose"])
def test_listed_detected_and_used_in_a_generation_through_the_rest_api(app_server, annotators, module):
    # `annotators` too: the app set the same folder, but another app started in this process may have set another
    url, image = app_server[0], photo((64, 128), seed=3)
    assert module in requests.get(f"{url}/controlnet/module_list", timeout=30).json()["module_list"]
    response = requests.post(f"{url}/controlnet/detect", timeout=300, json={
        "controlnet_module": module, "controlnet_input_images": [encoded(image)]})
    assert response.status_code == 200, response.text
    detected = Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))
    pixels = np.asarray(detected)
    assert detected.size == image.size and detected.mode == "RGB"
    if module == "depth_anything_v2":
        assert np.array_equal(pixels[..., 0], pixels[..., 2]) and pixels.max() > pixels.min()
    if module == "seg_upernet_ade20k":
        assert set(map(tuple, pixels.reshape(-1, 3).tolist())) <= PALETTE
    unit = {"module": module, "model": "edges", "image": encoded(image)}
    generation = requests.post(f"{url}/sdapi/v1/txt2img", timeout=300, json={
        "prompt": "a person", "seed": 3, "steps": 2, "width": 64, "height": 128,
        "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert generation.status_code == 200, generation.text
    infotext = json.loads(generation.json()["info"])["infotexts"][0]
    assert f'ControlNet 0: "Module: {module}, Model: edges [' in infotext


def test_listed_in_the_ui_and_previewed_as_the_generation_will_see_them(app_server, annotators):
    """The tabs' preprocessor dropdowns offer depth, pose and segmentation, and a unit's Preview gives the map at the
    generation's size (RGB, 96x64 here for a 64x128 photo, cropped and resized as the generation does)."""
    from tests.test_controlnet import preview

    config = requests.get(f"{app_server[0]}/config", timeout=30).json()
    dropdowns = [component["props"] for component in config["components"]
                 if component["props"].get("elem_id") == "txt2img-cn0-module"]
    offered = {choice[0] if isinstance(choice, list) else choice for choice in dropdowns[0]["choices"]}
    assert {"depth_anything_v2", "openpose", "openpose_full", "seg_upernet_ade20k"} <= offered
    for module in ("depth_anything_v2", "seg_upernet_ade20k", "openpose"):
        shown = Image.open(preview(app_server[1])(photo((64, 128), seed=3), module, 512, None, None, True,
                                                  "Crop and Resize", 96, 64))
        assert shown.size == (96, 64) and shown.mode == "RGB", module


def test_a_missing_weight_through_the_rest_api_names_the_file_and_the_folder(app_server, tmp_path):
    with annotator_folder(tmp_path):
        response = requests.post(f"{app_server[0]}/controlnet/detect", timeout=60, json={
            "controlnet_module": "seg_upernet_ade20k", "controlnet_input_images": [encoded(photo())]})
    assert response.status_code == 422 and str(tmp_path) not in response.text
    assert "model.safetensors" in response.text
    assert f"not in {tmp_path.name}/openmmlab/upernet-convnext-tiny" in response.text
