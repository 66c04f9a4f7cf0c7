"""IP-Adapter and T2I-Adapter units (sd-webui-controlnet's units whose model is an adapter) over the shared U-Net, on
tiny adapters saved as real files in h94's and diffusers' layouts: exact base pixels without them, equality with
diffusers' own IP-Adapter loading and its T2I-Adapter pipeline, every mode over both U-Nets, batching, windows, control
modes, the embedding cache, the restored processors, bad input, the infotext and the REST API."""

from __future__ import annotations

import base64
import io
import itertools
import json

import numpy as np
import pytest
import requests
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from extensions.controlnet import detectors
from extensions.controlnet import extension as controlnet
from extensions.controlnet.image_encoders import FOLDERS, REPOSITORY
from extensions.inpaint import Inpaint
from extensions.upscale import Upscale
from models.infotext import parse_infotext
from models.manager import PipelineManager
from models.samplers import make_scheduler
from service.studio import StudioService
from testing.adapter_files import (
    save_image_encoder,
    save_ip_adapter,
    save_original_t2i_adapter,
    save_t2i_adapter,
)

SIZE = 64
IP = "ip-adapter_tiny"


def picture(colour="blue") -> Image.Image:
    image = Image.new("RGB", (80, 60), "red")
    ImageDraw.Draw(image).ellipse([10, 10, 50, 50], fill=colour)
    return image


def studio(manager: PipelineManager, tmp_path_factory, annotators, **options) -> StudioService:
    """`annotators`: the session's annotator folder (the app_server's too: the folder is one for the process), where
    the tiny encoder goes."""
    folder = tmp_path_factory.mktemp("ControlNet")
    unet, scale = manager.pipelines["txt2img"].unet, manager.pipelines["txt2img"].vae_scale_factor
    save_image_encoder(annotators)  # the same seed and shape as the app_server's
    save_ip_adapter(unet, folder / f"{IP}.safetensors")
    save_ip_adapter(unet, folder / "ip-adapter_other.safetensors", seed=5)
    save_t2i_adapter(unet, folder / "t2i_tiny", vae_scale_factor=scale)
    save_original_t2i_adapter(folder / "t2i_tiny", folder / "t2iadapter_tiny_original.safetensors")
    save_file({"body.0.block1.weight": torch.zeros(4, 4, 3, 3)}, str(folder / "t2iadapter_style.safetensors"))
    save_file({"image_proj.proj.weight": torch.zeros(4 * 48, 32), "ip_adapter.1.to_k_ip.weight": torch.zeros(32, 48)},
              str(folder / "ip-adapter_wide.safetensors"))  # made for a text width of 48
    return StudioService(manager, tmp_path_factory.mktemp("outputs"),
                         [Inpaint(), controlnet.ControlNet(folder, annotator_dir=annotators),
                          Upscale(tmp_path_factory.mktemp("upscale_models"))], **options)


@pytest.fixture(scope="module")
def service(tmp_path_factory, annotator_weights):
    return studio(PipelineManager.load("demo", device="cpu"), tmp_path_factory, annotator_weights)


@pytest.fixture(scope="module")
def service4(txt2img_folder, tmp_path_factory, annotator_weights):
    return studio(PipelineManager.load(str(txt2img_folder), device="cpu"), tmp_path_factory, annotator_weights)


def inputs(mode="txt2img", units=(), **settings) -> dict:
    fields = {"prompt": "a cat", "negative_prompt": "", "steps": 3, "seed": 4, "width": SIZE, "height": SIZE,
              "controlnet_units": list(units)}
    if mode != "txt2img":
        fields.update(image=Image.new("RGB", (SIZE, SIZE), "gray"), strength=0.8)
    if mode == "inpaint":
        mask = Image.new("L", (SIZE, SIZE), 0)
        mask.paste(255, (8, 8, 56, 56))
        fields["mask"] = mask
    return {**fields, **settings}


def run(service, mode="txt2img", units=(), **settings):
    generation = service.generate(*service.build(mode, inputs(mode, units, **settings)))
    return np.asarray(Image.open(generation.files[0])).astype(int), generation


def ip(model=IP, **settings) -> dict:
    return {"enabled": True, "module": "ip-adapter_clip_h", "model": model, "image": picture(), **settings}


def t2i(**settings) -> dict:
    return {"enabled": True, "module": "canny", "model": "t2i_tiny", "image": picture(), **settings}


@pytest.mark.slow
def test_weight_zero_is_exactly_the_base_a_unit_matters_repeats_and_the_unet_is_restored(service):
    unet = service.manager.pipelines["txt2img"].unet
    processors = dict(unet.attn_processors)
    base = run(service)[0]
    assert np.array_equal(run(service, units=[ip(weight=0.0)])[0], base)
    with_unit = run(service, units=[ip()])[0]
    assert np.abs(with_unit - base).max() > 10
    assert np.array_equal(run(service, units=[ip()])[0], with_unit)
    other_picture = run(service, units=[ip(image=picture("yellow"))])[0]
    assert np.abs(other_picture - with_unit).max() > 0  # the picture is the prompt
    assert all(unet.attn_processors[name] is processor for name, processor in processors.items())
    assert unet.encoder_hid_proj is None and unet.config.encoder_hid_dim_type is None
    assert np.array_equal(run(service)[0], base)


@pytest.mark.slow
def test_the_embedding_is_cached_per_picture(service):
    encoders = service.extension("controlnet").image_prompts.encoders
    run(service, units=[ip(image=picture("green"))])
    before = encoders.encodes
    run(service, units=[ip(image=picture("green"), weight=0.5)])
    assert encoders.encodes == before


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_every_mode_over_both_unets(service, service4, mode):
    for studio_service in (service, service4):
        base = run(studio_service, mode)[0]
        assert np.abs(run(studio_service, mode, [ip()])[0] - base).max() > 10, (mode, "ip")
        assert np.abs(run(studio_service, mode, [t2i()])[0] - base).max() > 10, (mode, "t2i")


@pytest.mark.slow
def test_windows_control_modes_and_two_units_each_change_the_result(service):
    base, full = run(service)[0], run(service, units=[ip()])[0]
    later = run(service, units=[ip(guidance_start=0.5)])[0]
    assert np.abs(later - base).max() > 0 and np.abs(later - full).max() > 0
    modes = [run(service, units=[ip(control_mode=mode)])[0] for mode in
             ("My prompt is more important", "ControlNet is more important")]
    assert all(np.abs(result - full).max() > 0 for result in modes)
    assert np.abs(modes[0] - modes[1]).max() > 0
    two = run(service, units=[ip(), ip("ip-adapter_other", image=picture("yellow"))])[0]
    assert np.abs(two - full).max() > 0
    mixed = run(service, units=[ip(), t2i()])[0]  # an IP-Adapter and a T2I-Adapter together
    assert np.abs(mixed - full).max() > 0
    adapted = [run(service, units=[t2i(control_mode=mode)])[0] for mode in
               ("Balanced", "My prompt is more important", "ControlNet is more important")]
    assert all(np.abs(a - b).max() > 0 for a, b in itertools.combinations(adapted, 2))
    assert np.array_equal(run(service, units=[t2i(weight=0.0)])[0], base)
    assert np.abs(run(service, units=[t2i(guidance_start=0.5)])[0] - adapted[0]).max() > 0
    assert np.array_equal(run(service)[0], base)


@pytest.mark.slow
def test_hires_fix_runs_both_passes_with_the_adapters(service):
    hires = {"enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "hr_denoising_strength": 0.5}
    base = run(service, **hires)[0]
    assert base.shape[:2] == (96, 96)
    for units in ([ip()], [t2i()], [ip(guidance_end=0.5)]):
        assert np.abs(run(service, units=units, **hires)[0] - base).max() > 10, units[0]["model"]
    assert np.array_equal(run(service, **hires)[0], base)


@pytest.mark.slow
def test_requests_with_the_same_adapters_share_a_call_each_with_its_picture(tmp_path_factory, annotator_weights):
    batching = studio(PipelineManager.load("demo", device="cpu"), tmp_path_factory, annotator_weights, max_batch=3,
                      batch_wait=2)
    built = [batching.build("txt2img", inputs(units=[ip(image=picture(colour))], seed=seed))
             for colour, seed in (("blue", 4), ("yellow", 9), ("green", 2))]
    other = batching.build("txt2img", inputs(units=[ip(weight=0.5)], seed=4))[0]  # another weight: another call
    keys = [batching.batch_key(request) for request, _ in built]
    assert keys[0] is not None and len(set(keys)) == 1 and batching.batch_key(other) != keys[0]
    jobs = [batching.submit(request, warnings) for request, warnings in built]
    together = [job.outcome() for job in jobs]
    assert [job.together for job in jobs] == [3, 3, 3]
    images = []
    for (request, warnings), joint in zip(built, together):
        alone = batching.generate(request, warnings)
        images.append(np.asarray(Image.open(joint.files[0]), int))
        assert np.abs(np.asarray(Image.open(alone.files[0]), int) - images[-1]).max() <= 2  # batched rounding
    assert np.abs(images[0] - images[1]).max() > 10


@pytest.mark.slow
def test_an_ip_adapter_unit_equals_diffusers_load_ip_adapter(service4, txt2img_folder, annotator_weights, tmp_path):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    extension = service4.extension("controlnet")
    mine = run(service4, units=[ip(weight=0.7)], sampler="Euler")[0]
    pipe = StableDiffusionPipeline.from_pretrained(str(txt2img_folder), safety_checker=None)
    weights = extension.library.resolve(IP).location
    pipe.load_ip_adapter(str(tmp_path), subfolder="", weight_name=weights, image_encoder_folder=None)
    encoder = annotator_weights / REPOSITORY / FOLDERS["h"]  # where studio() saved the tiny ViT-H
    pipe.image_encoder = CLIPVisionModelWithProjection.from_pretrained(encoder)
    pipe.feature_extractor = CLIPImageProcessor(size=32, crop_size=32)
    pipe.set_ip_adapter_scale(0.7)
    pipe.scheduler = make_scheduler("Euler", pipe.scheduler.config, [4])
    theirs = pipe(prompt=["a cat"], negative_prompt=[""], ip_adapter_image=picture(), num_inference_steps=3,
                  guidance_scale=7.0, width=SIZE, height=SIZE,
                  generator=[torch.Generator().manual_seed(4)]).images[0]
    assert np.abs(mine - np.asarray(theirs, int)).max() <= 1
    # an effective region: diffusers' own ip_adapter_masks
    from diffusers.image_processor import IPAdapterMaskProcessor

    left = Image.new("L", (SIZE, SIZE), 0)
    left.paste(255, (0, 0, SIZE // 2, SIZE))
    mine_left = run(service4, units=[ip(weight=0.7, effective_region_mask=left)], sampler="Euler")[0]
    pipe.scheduler = make_scheduler("Euler", pipe.scheduler.config, [4])
    masks = IPAdapterMaskProcessor().preprocess([left], height=SIZE, width=SIZE)
    theirs_left = pipe(prompt=["a cat"], negative_prompt=[""], ip_adapter_image=picture(), num_inference_steps=3,
                       guidance_scale=7.0, width=SIZE, height=SIZE, generator=[torch.Generator().manual_seed(4)],
                       cross_attention_kwargs={"ip_adapter_masks": [masks]}).images[0]
    assert np.abs(mine_left - np.asarray(theirs_left, int)).max() <= 1 and np.abs(mine_left - mine).max() > 4


@pytest.mark.slow  # five generations
def test_an_effective_region_of_black_is_no_unit_and_of_white_is_no_region(service):
    base = run(service)[0]
    white, black = Image.new("L", (SIZE, SIZE), 255), Image.new("L", (16, 16), 0)
    for unit in (ip(), t2i()):
        whole = run(service, units=[unit])[0]
        assert np.array_equal(run(service, units=[{**unit, "effective_region_mask": black}])[0], base), unit["model"]
        assert np.array_equal(run(service, units=[{**unit, "effective_region_mask": white}])[0], whole), unit["model"]


@pytest.mark.slow
def test_a_t2i_adapter_unit_equals_diffusers_adapter_pipeline(service4, txt2img_folder):
    from diffusers import StableDiffusionAdapterPipeline, StableDiffusionPipeline, T2IAdapter

    extension = service4.extension("controlnet")
    control = Image.new("RGB", (SIZE, SIZE), "black")
    ImageDraw.Draw(control).rectangle([16, 16, 48, 48], outline="white", width=3)
    mine = run(service4, units=[t2i(module="none", image=control, weight=0.8)], sampler="Euler")[0]
    plain = StableDiffusionPipeline.from_pretrained(str(txt2img_folder), safety_checker=None)
    adapter = T2IAdapter.from_pretrained(extension.library.resolve("t2i_tiny").location)
    pipe = StableDiffusionAdapterPipeline(**{name: getattr(plain, name) for name in (
        "vae", "text_encoder", "tokenizer", "unet")}, adapter=adapter, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, scheduler=make_scheduler("Euler", plain.scheduler.config, [4]))
    theirs = pipe(prompt=["a cat"], negative_prompt=[""], image=control, num_inference_steps=3, guidance_scale=7.0,
                  width=SIZE, height=SIZE, adapter_conditioning_scale=0.8,
                  generator=[torch.Generator().manual_seed(4)]).images[0]
    assert np.abs(mine - np.asarray(theirs, int)).max() <= 1
    # the same adapter as one file in TencentARC's original layout (sd-webui-controlnet's t2iadapter_* files)
    original = run(service4, units=[t2i(module="none", image=control, weight=0.8,
                                        model="t2iadapter_tiny_original")], sampler="Euler")[0]
    assert np.array_equal(original, mine)


@pytest.mark.parametrize(("unit", "message"), [
    ({"module": "canny", "model": IP}, r"is an IP-Adapter: its module must be an ip-adapter_\* one"),
    ({"module": "ip-adapter_clip_h", "model": "t2i_tiny"}, "takes an IP-Adapter model; 't2i_tiny' is a T2I-Adapter"),
    ({"module": "ip-adapter_clip_g", "model": IP}, "ip-adapter_clip_g"),
    ({"weight": 3}, "weight"),
    ({"module": "canny", "model": "t2iadapter_style"}, "t2iadapter_style.safetensors: not a full adapter"),
    ({"model": "ip-adapter_wide"}, r"IP-Adapter file ip-adapter_wide.safetensors: made for another base model: its "
                                   r"cross-attention width is 48 \(unknown base\), the base model's is \d+ \(SD 1.x\)"),
])
def test_bad_units_are_refused_clearly_and_the_next_request_works(service, unit, message):
    base = run(service)[0]
    with pytest.raises(ValueError, match=message):
        run(service, units=[ip(**unit)])
    assert np.array_equal(run(service)[0], base)


@pytest.mark.slow
def test_module_none_with_an_ip_adapter_uses_auto_and_the_infotext_reads_back(service):
    from service.pnginfo import fields_from_infotext

    result, generation = run(service, units=[ip(module="none", weight=0.6, guidance_end=0.8)])
    assert any("ip-adapter-auto" in warning for warning in generation.warnings)
    assert np.array_equal(result, run(service, units=[ip(module="ip-adapter-auto", weight=0.6,
                                                          guidance_end=0.8)])[0])
    text = generation.infotexts[0]
    entry = parse_infotext(text)[2]["ControlNet 0"]
    assert "Module: ip-adapter-auto" in entry and f"Model: {IP} [" in entry and "Weight: 0.6" in entry
    fields = fields_from_infotext(text, service.extensions)
    unit = fields["controlnet_units"][0]
    assert (unit["module"], unit["model"], unit["weight"], unit["guidance_end"]) == ("ip-adapter-auto", IP, 0.6, 0.8)


def encoded(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_rest_lists_the_ip_adapter_and_its_modules_and_runs_a_unit(app_server):
    url = app_server[0]
    models = requests.get(f"{url}/controlnet/model_list", timeout=30).json()["model_list"]
    assert any(name.startswith("ip-adapter_demo [") for name in models)
    modules = requests.get(f"{url}/controlnet/module_list", timeout=30).json()["module_list"]
    assert {"ip-adapter_clip_sd15", "ip-adapter_clip_h", "ip-adapter-auto"} <= set(modules)
    types = requests.get(f"{url}/controlnet/control_types", timeout=30).json()["control_types"]
    assert "ip-adapter_clip_h" in types["IP-Adapter"]["module_list"]
    body = {"prompt": "a cat", "steps": 2, "seed": 3, "width": SIZE, "height": SIZE}
    base = requests.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=120).json()
    unit = {"module": "ip-adapter_clip_sd15", "model": models[1], "image": encoded(picture()), "weight": 1.0}
    answer = requests.post(f"{url}/sdapi/v1/txt2img", json={
        **body, "alwayson_scripts": {"ControlNet": {"args": [unit]}}}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["images"][0] != base["images"][0]
    assert "Module: ip-adapter_clip_sd15" in answer.json()["info"]
    refused = requests.post(f"{url}/sdapi/v1/txt2img", json={
        **body, "alwayson_scripts": {"ControlNet": {"args": [{**unit, "module": "canny"}]}}}, timeout=120)
    assert refused.status_code == 422 and "alwayson_scripts.controlnet.args[0]" in refused.text
    # sd-webui-controlnet's effective region (black: the unit acts nowhere): the base picture, nothing ignored
    nowhere = requests.post(f"{url}/sdapi/v1/txt2img", json={**body, "alwayson_scripts": {"ControlNet": {"args": [
        {**unit, "effective_region_mask": encoded(Image.new("L", (SIZE, SIZE), 0))}]}}}, timeout=120)
    assert nowhere.status_code == 200, nowhere.text
    assert np.array_equal(*(np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))))
                            for answer in (nowhere.json(), base)))
    assert json.loads(nowhere.json()["info"])["warnings"] == [], "the region is read, not an ignored field"
    bad = requests.post(f"{url}/sdapi/v1/txt2img", json={**body, "alwayson_scripts": {"ControlNet": {"args": [
        {**unit, "effective_region_mask": "not base64"}]}}}, timeout=120)
    assert bad.status_code == 422 and "effective_region_mask" in bad.text, bad.text


@pytest.mark.slow
def test_sdxls_inpainting_model_takes_ip_adapters_with_the_bigg_encoder(family_folder, tmp_path_factory):
    before = detectors.annotator_dir()  # the process's annotator folder, which this test's ControlNet changes
    try:
        run_sdxl_ip_adapters(family_folder, tmp_path_factory)
    finally:
        detectors.set_annotator_dir(before)


def run_sdxl_ip_adapters(family_folder, tmp_path_factory):
    for family in ("sdxl-inpainting",):  # the 9-channel SDXL; the 4-channel one runs the same code
        manager = PipelineManager.load(str(family_folder(family)), device="cpu")
        folder, annotators = tmp_path_factory.mktemp("ControlNetXL"), tmp_path_factory.mktemp("annotatorsXL")
        save_image_encoder(annotators, "g", width=48)  # bigG's place, a width of its own
        save_ip_adapter(manager.pipelines["txt2img"].unet, folder / "ip-adapter_xl.safetensors", embedding_width=48)
        xl = StudioService(manager, tmp_path_factory.mktemp("outputsXL"),
                           [Inpaint(), controlnet.ControlNet(folder, annotator_dir=annotators)])
        for mode in ("txt2img", "inpaint"):
            base = run(xl, mode)[0]
            results = [run(xl, mode, [ip("ip-adapter_xl", module=module)])[0]
                       for module in ("ip-adapter_clip_g", "ip-adapter-auto")]
            assert np.abs(results[0] - base).max() > 10, (family, mode)
            assert all(np.array_equal(result, results[0]) for result in results)
            assert np.array_equal(run(xl, mode)[0], base)
        with pytest.raises(ValueError, match="ip-adapter_clip_h"):  # ViT-H's files are not there
            run(xl, units=[ip("ip-adapter_xl")])


def test_an_ip_adapter_unit_through_gradio_client(client):
    gallery, infotext, warnings = client.predict(
        prompt="a cat", seed=1, steps=2, width=SIZE, height=SIZE, api_name="/txt2img",
        controlnet_units=[{"module": "none", "model": "ip-adapter_demo", "image": encoded(picture()), "weight": 0.7}])
    entry = parse_infotext(infotext)[2]["ControlNet 0"]
    assert entry.startswith("Module: ip-adapter-auto, Model: ip-adapter_demo [") and "Weight: 0.7" in entry
    assert "uses ip-adapter-auto" in warnings and len(gallery) == 1
