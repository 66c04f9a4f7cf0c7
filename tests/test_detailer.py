"""The ADetailer-compatible detailer on a real photo with a face (scikit-image's astronaut): OpenCV's Haar cascade
finds it, only the face's area changes, the passes count in the progress, no face is a note, it runs after hires
fix, and ADetailer's REST body, routes and infotext."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image
from skimage import data

from extensions.controlnet import detectors
from extensions.controlnet.extension import ControlNet
from extensions.detailer import Detailer, detection
from extensions.detailer.fields import DetailerUnit
from extensions.lora import Lora
from extensions.upscale import Upscale
from models.images import png_base64
from models.manager import PipelineManager
from service.pnginfo import fields_from_infotext
from service.studio import StudioService
from testing.adapter_files import save_image_encoder, save_ip_adapter, save_t2i_adapter
from testing.lora_files import make_lora

FACE = (88, 33, 136, 81)  # the astronaut's face at 256 x 256 (left, top, right, bottom), as the cascade finds it


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS)


@pytest.fixture(scope="module")
def manager():
    """A model of its own: each service installs its extensions' hooks on its model."""
    return PipelineManager.load("demo", device="cpu")


@pytest.fixture(scope="module")
def service(manager, tmp_path_factory):
    return StudioService(manager, tmp_path_factory.mktemp("outputs"), [Detailer()])


def run(service, photo, units, **fields):
    """An img2img job that skips its own pass (ADetailer's "skip img2img"): the photo itself is detailed."""
    steps = []
    settings = dict(prompt="a face", image=photo, strength=0.25, steps=4, seed=3, width=256, height=256,
                    detailer_units=units, ad_skip_img2img=True)
    # generate: each step reported as it ends (run polls the queued job's progress)
    generation = service.generate(*service.build("img2img", {**settings, **fields}),
                                  on_step=lambda done, total: steps.append((done, total)))
    return np.asarray(Image.open(generation.files[0]).convert("RGB")).astype(int), generation, steps


def test_the_haar_cascade_finds_the_astronauts_face_and_nothing_in_a_plain_picture(photo):
    [found] = detection.face_haar(photo)
    assert all(abs(a - b) <= 6 for a, b in zip(found.box, FACE)), found.box
    assert 0.5 < found.confidence < 1
    assert detection.face_haar(Image.new("RGB", (256, 256), "white")) == []


@pytest.fixture(scope="module")
def mediapipe_dir(tmp_path_factory):
    from testing.annotator_weights import save_mediapipe

    return save_mediapipe(tmp_path_factory.mktemp("annotators"))


@pytest.mark.parametrize("name", ["mediapipe_face_short", "mediapipe_face_full"])
def test_mediapipes_face_detectors_find_the_face_from_their_tflite_files(photo, mediapipe_dir, name):
    detectors = detection.detectors(mediapipe_dir)
    assert list(detectors) == ["face_haar", "mediapipe_face_short", "mediapipe_face_full"]
    [found] = [found for found in detectors[name](photo) if found.confidence >= 0.3]
    assert all(abs(a - b) <= 8 for a, b in zip(found.box, (88, 40, 136, 88))), found.box
    assert found.confidence > 0.8
    assert [found for found in detectors[name](Image.new("RGB", (256, 256), "white")) if found.confidence >= 0.3] \
        == []
    assert list(detection.detectors(mediapipe_dir / "elsewhere")) == ["face_haar"], "listed only with their files"


def test_a_mediapipe_unit_details_the_face(photo, mediapipe_dir, tmp_path):
    service = StudioService(PipelineManager.load("demo", device="cpu"), tmp_path, [Detailer(mediapipe_dir)])
    detailed, generation, _ = run(service, photo, [{"ad_model": "mediapipe_face_short"}])
    changed = np.abs(detailed - np.asarray(photo).astype(int)).sum(axis=2) > 0
    ys, xs = np.nonzero(changed)
    assert 88 - 24 <= xs.min() and xs.max() < 136 + 24 and 40 - 24 <= ys.min() and ys.max() < 88 + 24
    assert "ADetailer model: mediapipe_face_short" in generation.infotexts[0]


def test_masks_follow_adetailers_settings(photo):
    [plain] = detection.masks(photo, DetailerUnit(ad_dilate_erode=0))
    box = plain.getbbox()
    [grown] = detection.masks(photo, DetailerUnit(ad_dilate_erode=8, ad_x_offset=5, ad_y_offset=3))
    assert grown.getbbox() == (box[0] - 8 + 5, box[1] - 8 - 3, box[2] + 8 + 5, box[3] + 8 - 3)
    assert detection.masks(photo, DetailerUnit(ad_confidence=0.99)) == []
    assert detection.masks(photo, DetailerUnit(ad_mask_min_ratio=0.5)) == []
    [inverted] = detection.masks(photo, DetailerUnit(ad_mask_merge_invert="Merge and Invert"))
    assert inverted.getpixel((2, 2)) == 255 and inverted.getpixel((112, 57)) == 0


@pytest.mark.slow
def test_only_the_faces_area_changes_and_the_passes_count_in_the_progress(service, photo):
    plain = np.asarray(photo).astype(int)
    unit = {"ad_model": "face_haar", "ad_denoising_strength": 0.75, "ad_mask_blur": 4, "ad_dilate_erode": 4}
    detailed, generation, steps = run(service, photo, [unit])
    changed = np.abs(detailed - plain).sum(axis=2) > 0
    ys, xs = np.nonzero(changed)
    reach = 4 + 4 * 3  # the dilation, and the blur's reach
    assert FACE[0] - reach - 6 <= xs.min() and xs.max() < FACE[2] + reach + 6
    assert FACE[1] - reach - 6 <= ys.min() and ys.max() < FACE[3] + reach + 6
    assert changed[FACE[1] + 10:FACE[3] - 10, FACE[0] + 10:FACE[2] - 10].mean() > 0.9, "the face was repainted"
    assert steps[-1] == (3, 3), "its 3 steps (4 x 0.75) are counted"
    passed, _, _ = run(service, photo, [unit], ad_skip_img2img=False)
    assert np.abs(passed - plain).mean() > np.abs(detailed - plain).mean(), "without the skip, img2img ran too"
    infotext = generation.infotexts[0]
    assert "ADetailer model: face_haar, ADetailer confidence: 0.3, ADetailer dilate erode: 4, ADetailer mask blur: 4, "\
           "ADetailer denoising strength: 0.75, ADetailer inpaint only masked: True, ADetailer inpaint padding: 32" \
           in infotext
    read = fields_from_infotext(infotext, service.extensions)
    assert read["detailer_units"] == [{**unit, "ad_confidence": 0.3, "ad_inpaint_only_masked": True,
                                       "ad_inpaint_only_masked_padding": 32}]


@pytest.mark.slow
def test_no_face_found_is_a_note_and_the_picture_is_as_generated(service):
    blank = Image.new("RGB", (256, 256), (120, 160, 200))
    plain, _, _ = run(service, blank, [], ad_skip_img2img=False)
    detailed, generation, _ = run(service, blank, [{"ad_model": "face_haar"}], ad_skip_img2img=False)
    assert np.array_equal(plain, detailed)
    assert any("found nothing in image 1" in warning for warning in generation.warnings), generation.warnings


@pytest.mark.slow
def test_it_details_the_hires_fix_picture_in_the_same_job(photo, tmp_path, monkeypatch):
    seen = []

    def spying(picture):  # the demo model draws no face: one where the astronaut's would be
        seen.append(picture.size)
        return [detection.Detection(tuple(side // 2 for side in FACE), 0.9)]

    monkeypatch.setitem(detection.DETECTORS, "face_haar", spying)
    service = StudioService(PipelineManager.load("demo", device="cpu"), tmp_path,
                            [Upscale(tmp_path / "upscalers"), Detailer()])
    steps = []
    fields = dict(prompt="a face", steps=2, seed=1, width=64, height=64, enable_hr=True, hr_scale=2,
                  hr_upscaler="Lanczos", hr_second_pass_steps=2, detailer_units=[{"ad_denoising_strength": 0.5}])
    generation = service.generate(*service.build("txt2img", fields),
                                  on_step=lambda done, total: steps.append((done, total)))
    assert seen == [(128, 128)], "the detector sees hires fix's picture"
    assert Image.open(generation.files[0]).size == (128, 128)
    assert steps[-1] == (2 + 2 + 1, 2 + 2 + 1), "the first pass, hires fix's 2 steps, one detail pass (2 x 0.5)"


@pytest.mark.parametrize(("units", "message"), [
    ([{"ad_model": "face_yolov8n.pt"}], "ADetailer unit 0: ad_model 'face_yolov8n.pt' is not a detector here"),
    ([{"ad_confidence": 2}], "ADetailer unit 0: ad_confidence must be"),
    (["face"], "ADetailer unit 0 must be an object of ad_\\* settings"),
    ([{}] * 5, "detailer_units must be a list of at most 4 units"),
])
def test_bad_units_are_named(service, photo, units, message):
    with pytest.raises(ValueError, match=message):
        run(service, photo, units)


# -- REST, as ADetailer's clients send it --------------------------------------------------------------------------


def test_rest_takes_adetailers_args_and_serves_its_routes(app_server, photo):
    url, _ = app_server
    assert requests.get(f"{url}/adetailer/v1/ad_model", timeout=30).json() == {
        "ad_model": ["None", "face_haar", "mediapipe_face_short", "mediapipe_face_full"]}
    assert "version" in requests.get(f"{url}/adetailer/v1/version", timeout=30).json()
    assert "ADetailer" in requests.get(f"{url}/sdapi/v1/scripts", timeout=30).json()["txt2img"]
    body = {"prompt": "a face", "init_images": [png_base64(photo)], "denoising_strength": 0.25, "steps": 4, "seed": 3,
            "width": 256, "height": 256}
    unit = {"ad_model": "face_haar", "ad_prompt": "", "ad_denoising_strength": 0.5, "ad_inpaint_only_masked": True,
            "ad_use_sampler": False}
    outside = np.ones((256, 256), bool)
    outside[FACE[1] - 30:FACE[3] + 30, FACE[0] - 30:FACE[2] + 30] = False
    for args in ([True, True, unit], [True, True, unit, {"ad_model": "None"}], [unit]):
        answer = requests.post(f"{url}/sdapi/v1/img2img", json={**body, "alwayson_scripts": {"ADetailer": {
            "args": args}}}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert "ADetailer model: face_haar" in json.loads(answer.json()["info"])["infotexts"][0]
        result = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))).convert("RGB"))
        if args[0] is True:  # skip img2img: the photo itself, its face detailed
            assert np.array_equal(result[outside], np.asarray(photo)[outside])
            assert not np.array_equal(result[~outside], np.asarray(photo)[~outside])
    for args, named in (([True, False, {"ad_model": "hand_yolov8n.pt"}], "ad_model 'hand_yolov8n.pt'"),
                        ("face", "alwayson_scripts.ADetailer.args must be a list"),
                        ([True, False, {"ad_denoising_strength": "high"}], "ad_denoising_strength")):
        bad = requests.post(f"{url}/sdapi/v1/img2img", json={**body, "alwayson_scripts": {"ADetailer": {
            "args": args}}}, timeout=60)
        assert bad.status_code == 422 and named in bad.json()["detail"], (args, bad.text)


@pytest.mark.slow
def test_interrupt_inside_a_detail_pass_returns_the_pictures_as_they_stand(service, manager, photo):
    def interrupt_in_the_pass(done: int, total: int) -> None:
        if done >= 1:
            manager.interrupt()

    generation = service.generate(*service.build("img2img", dict(
        prompt="a face", image=photo, strength=0.5, steps=8, seed=3, width=256, height=256, ad_skip_img2img=True,
        detailer_units=[{"ad_model": "face_haar", "ad_denoising_strength": 0.5}])), on_step=interrupt_in_the_pass)
    assert generation.interrupted
    result = Image.open(generation.files[0])
    assert result.size == (256, 256), "the picture, not the pass's crop"
    assert np.array_equal(np.asarray(result.convert("RGB")), np.asarray(photo)), "the pass did not finish"


def test_a_crowd_is_bounded_and_the_cost_counts_a_pass_per_unit(service, photo, monkeypatch):
    crowd = [detection.Detection((x, y, x + 10, y + 10), 0.9) for x in range(0, 240, 12) for y in range(0, 240, 12)]
    monkeypatch.setitem(detection.DETECTORS, "face_haar", lambda picture: crowd)
    assert len(detection.masks(photo, DetailerUnit())) == detection.MAX_DETECTIONS
    request, _ = service.build("txt2img", dict(prompt="x", steps=10, width=64, height=64, batch_size=2,
                                               detailer_units=[{"ad_denoising_strength": 0.5}]))
    assert [(p.width, p.height, p.steps) for p in service.extension("detailer").passes(request)] == [(64, 64, 5)] * 2


@pytest.fixture(scope="module")
def lora_service(tmp_path_factory):
    """With a LoRA library: on a model of its own (a service installs its hooks on its model)."""
    manager = PipelineManager.load("demo", device="cpu")
    folder = tmp_path_factory.mktemp("loras")
    make_lora(manager.pipelines["txt2img"], folder / "face.safetensors", seed=5)
    return StudioService(manager, tmp_path_factory.mktemp("outputs"), [Lora(folder), Detailer()])


@pytest.mark.slow
def test_a_lora_in_the_units_prompt_acts_in_its_pass_as_adetailers_does(lora_service, photo):
    unit = {"ad_model": "face_haar", "ad_denoising_strength": 0.75}
    plain, _, _ = run(lora_service, photo, [{**unit, "ad_prompt": "a face"}])
    own, _, _ = run(lora_service, photo, [{**unit, "ad_prompt": "a face <lora:face:1>"}])
    assert np.abs(own - plain).mean() > 1, "the unit's LoRA changed the face"
    jobs, _, _ = run(lora_service, photo, [unit], prompt="a face <lora:face:1>")
    assert np.array_equal(own, jobs), "the unit's tag acts as the job's (and is not read as text)"
    # ADetailer's pass takes the networks of its own prompt: the job's LoRA is not in it unless [PROMPT] brings it
    dropped, _, _ = run(lora_service, photo, [{**unit, "ad_prompt": "a face"}], prompt="a face <lora:face:1>")
    assert np.array_equal(dropped, plain)
    brought, _, _ = run(lora_service, photo, [{**unit, "ad_prompt": "[PROMPT]"}], prompt="a face <lora:face:1>")
    assert np.array_equal(brought, own)


@pytest.mark.slow  # its fixture loads a model of its own
def test_an_unknown_lora_in_a_units_prompt_is_named_before_the_job_runs(lora_service, photo):
    units = [{"ad_model": "face_haar", "ad_prompt": "a face [SEP] <lora:nowhere:1> a hand"}]
    with pytest.raises(ValueError, match=r"ADetailer unit 0: ad_prompt: .*'nowhere'"):
        lora_service.build("img2img", dict(prompt="a face", image=photo, detailer_units=units))


@pytest.mark.slow
def test_the_jobs_adapter_units_act_on_its_own_pass_and_not_on_the_detail_passes(photo, tmp_path_factory,
                                                                                   annotator_weights):
    """As ControlNet units: an IP-Adapter's processors (which want its picture) and a T2I-Adapter's residuals are off
    while the faces are detailed."""
    before = detectors.annotator_dir()  # the process's annotator folder, which this test's ControlNet changes
    try:
        detail_with_adapters(photo, tmp_path_factory, annotator_weights)
    finally:
        detectors.set_annotator_dir(before)


def detail_with_adapters(photo, tmp_path_factory, annotators):
    manager = PipelineManager.load("demo", device="cpu")
    pipe, folder = manager.pipelines["txt2img"], tmp_path_factory.mktemp("ControlNet")
    save_image_encoder(annotators)  # the same seed and shape as the app_server's
    save_ip_adapter(pipe.unet, folder / "ip-adapter_tiny.safetensors")
    save_t2i_adapter(pipe.unet, folder / "t2i_tiny", vae_scale_factor=pipe.vae_scale_factor)
    service = StudioService(manager, tmp_path_factory.mktemp("outputs"),
                            [ControlNet(folder, annotator_dir=annotators), Detailer()])
    unit = {"ad_model": "face_haar", "ad_denoising_strength": 0.75}
    adapters = [{"enabled": True, "module": "ip-adapter_clip_h", "model": "ip-adapter_tiny", "image": photo},
                {"enabled": True, "module": "canny", "model": "t2i_tiny", "image": photo}]
    alone, _, _ = run(service, photo, [unit])
    detailed, _, _ = run(service, photo, [unit], controlnet_units=adapters)  # the input picture itself, detailed
    assert np.array_equal(detailed, alone)
    plain, _, _ = run(service, photo, [unit], ad_skip_img2img=False, strength=0.5)
    adapted, _, _ = run(service, photo, [unit], ad_skip_img2img=False, strength=0.5, controlnet_units=adapters)
    assert np.abs(adapted - plain).mean() > 1, "the adapters acted on the img2img pass"
