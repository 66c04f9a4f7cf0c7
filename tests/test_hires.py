"""Hires fix: the sizes and the second pass's schedule as A1111 computes them; on the demo (9-channel)
model and a 4-channel one, every upscaler kind gives the size and the infotext; a pixel upscaler's result equals
txt2img, the upscale and img2img done by hand; progress counts both passes and an interrupt in the first returns it;
LoRA and ControlNet act in both passes; bad values are named; REST's enable_hr through webuiapi, gradio_client's
keywords and PNG Info's fields."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from extensions.controlnet.extension import ControlNet
from extensions.controlnet.pipeline import UnitControlNets
from extensions.inpaint import Inpaint
from extensions.lora import Lora
from extensions.prompts import Prompts
from extensions.upscale import Upscale
from extensions.upscale.hires import LATENT_UPSCALERS, HiresPlan
from models.infotext import parse_infotext
from models.manager import PipelineManager
from service.pnginfo import fields_from_infotext
from service.studio import StudioService
from testing.controlnet_files import controlnet_for
from testing.lora_files import make_lora
from testing.upscaler_files import make_upscaler

# A1111's 2x, given (the demo model's own default is 1.5x: test_the_demo_models_default_keeps_the_composition)
FIELDS = dict(prompt="a red circle and a blue square", seed=5, steps=3, width=64, height=64, enable_hr=True, hr_scale=2)


def studio(manager: PipelineManager, folder) -> StudioService:
    """The registered extensions that act on txt2img, with a LoRA "ink", a ControlNet "edges" and an upscaler model
    "tiny-x2" made for the model."""
    pipe = manager.pipelines["txt2img"]
    make_lora(pipe, folder / "Lora" / "ink.safetensors", seed=7, scale=1.0)
    controlnet_for(pipe.unet, seed=1, vae_scale_factor=pipe.vae_scale_factor).save_pretrained(
        folder / "ControlNet" / "edges")
    make_upscaler(folder / "upscale_models" / "tiny-x2.safetensors", "compact", 2)
    (folder / "embeddings").mkdir()
    return StudioService(manager, folder / "outputs",
                         [Inpaint(), Lora(folder / "Lora"), Prompts(folder / "embeddings"),
                          ControlNet(folder / "ControlNet"), Upscale(folder / "upscale_models")])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return studio(PipelineManager.load("demo", device="cpu"), tmp_path_factory.mktemp("hires-demo"))


@pytest.fixture(scope="module")
def four(txt2img_folder, tmp_path_factory):
    """The same over a 4-channel U-Net (txt2img and img2img pipelines, not inpaint's)."""
    return studio(PipelineManager.load(str(txt2img_folder), device="cpu"), tmp_path_factory.mktemp("hires-4"))


@pytest.fixture(scope="module")
def xl(family_folder, tmp_path_factory):
    """The same over an SDXL model (its txt2img and img2img pipelines)."""
    return studio(PipelineManager.load(str(family_folder("sdxl")), device="cpu"), tmp_path_factory.mktemp("hires-xl"))


def generate(service, on_step=None, **fields):
    return service.generate(*service.build("txt2img", {**FIELDS, **fields}), on_step=on_step)


def picture(generation, index: int = 0) -> Image.Image:
    return Image.open(generation.files[index]).convert("RGB")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=int)


def ring() -> Image.Image:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).ellipse([16, 16, 48, 48], outline="white", width=3)
    return image


UNIT = {"enabled": True, "module": "none", "model": "edges", "image": ring()}
SCALE = {"demo": 2, "four": 1.25, "xl": 1.5}  # the 4-channel and SDXL models' VAEs halve the size only: 2x is slow


# -- the plan, as A1111 computes it --------------------------------------------------------------------------


@pytest.mark.parametrize("scale, resize, first, sizes", [
    (2, (0, 0), (64, 48), ((128, 96), (128, 96))),
    (1.5, (0, 0), (72, 64), ((104, 96), (104, 96))),  # 108 rounds down to a multiple of 8
    (2, (160, 0), (64, 48), ((160, 120), (160, 120))),  # one side given: the other keeps the ratio
    (2, (0, 100), (64, 48), ((128, 96), (128, 96))),  # 133x100, to multiples of 8
    (2, (160, 96), (64, 64), ((160, 160), (160, 96))),  # both: cover, then the centre
    (2, (160, 96), (64, 32), ((192, 96), (160, 96))),
])
def test_sizes(scale, resize, first, sizes):
    assert HiresPlan("Latent", scale, resize, 0, 0.5).sizes(*first) == sizes


def test_second_pass_steps_and_schedule_as_a1111():
    """A1111 runs exactly the hires steps, of a schedule of steps / strength; 0 means the first pass's steps."""
    assert HiresPlan("Latent", 2, (0, 0), 0, 0.5).schedule_steps(20) == (20, 40)
    assert HiresPlan("Latent", 2, (0, 0), 10, 0.3).schedule_steps(20) == (10, 34)
    for steps, strength in ((10, 0.3), (7, 0.7), (3, 0.05), (20, 1.0), (13, 0.33)):
        _, schedule = HiresPlan("Latent", 2, (0, 0), steps, strength).schedule_steps(1)
        assert int(schedule * strength) == steps, "diffusers runs int(schedule x strength) steps"


# -- on the models -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_upscaler_kind_gives_the_size_and_the_infotext(demo):
    results = {}
    for upscaler in (*LATENT_UPSCALERS, "None", "Lanczos", "Nearest", "tiny-x2"):
        generation = generate(demo, hr_upscaler=upscaler, hr_denoising_strength=0.6, hr_second_pass_steps=2)
        results[upscaler] = picture(generation)
        assert results[upscaler].size == (128, 128), upscaler
        line = generation.infotexts[0].splitlines()[-1]
        assert line.endswith(f"Size: 64x64, Model hash: c637a34a05, Model: sd-shapes-inpainting, Denoising strength: "
                             f"0.6, Hires upscale: 2, Hires steps: 2, Hires upscaler: {upscaler}"), line
    distinct = ["Latent", "Latent (bicubic)", "Latent (nearest)", "Lanczos", "Nearest", "tiny-x2"]
    for index, name in enumerate(distinct):
        for other in distinct[index + 1:]:
            assert not np.array_equal(pixels(results[name]), pixels(results[other])), (name, other)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["demo", "four", "xl"])
def test_a_pixel_upscaler_equals_txt2img_then_the_upscale_then_img2img(model, request):
    """The second pass is plain img2img at the larger size, with the seeds' noise and A1111's schedule: hires fix
    with Lanczos gives, pixel for pixel, what txt2img, a Lanczos resize and img2img of 3 steps / 0.3 give."""
    service, side = request.getfixturevalue(model), int(64 * SCALE[model])
    hires = generate(service, hr_upscaler="Lanczos", hr_denoising_strength=0.3, hr_second_pass_steps=3,
                     hr_scale=SCALE[model])
    first = picture(generate(service, enable_hr=False))
    by_hand = service.generate(*service.build("img2img", {
        **{key: FIELDS[key] for key in ("prompt", "seed")}, "image": first.resize((side, side), Image.LANCZOS),
        "width": side, "height": side, "steps": 10, "strength": 0.3}))  # int(10 x 0.3) = 3 steps
    assert np.array_equal(pixels(picture(hires)), pixels(picture(by_hand)))


def test_both_passes_count_in_the_progress_and_an_interrupt_in_the_first_returns_it(demo):
    steps = []
    generate(demo, on_step=lambda done, total: steps.append((done, total)), hr_second_pass_steps=2)
    assert steps == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]

    def stop_at_two(done: int, total: int) -> None:
        if done == 2:
            demo.manager.interrupt()

    generation = generate(demo, on_step=stop_at_two, hr_second_pass_steps=2)
    assert generation.interrupted and picture(generation).size == (64, 64)
    assert picture(generate(demo, hr_second_pass_steps=2)).size == (128, 128), "the next job runs both passes"


def test_a_batch_gives_each_seed_its_own_image(demo):
    batch = generate(demo, batch_size=2, hr_upscaler="Latent (nearest)", seed=8)
    solo = generate(demo, hr_upscaler="Latent (nearest)", seed=9)
    assert batch.seeds == [8, 9] and picture(batch, 1).size == (128, 128)
    assert np.abs(pixels(picture(batch, 1)) - pixels(picture(solo))).max() <= 2


def test_hires_prompt_and_sampler_of_their_own(demo):
    plain = generate(demo, hr_denoising_strength=0.8)
    own = generate(demo, hr_denoising_strength=0.8, hr_prompt="a (green:1.3) triangle", hr_sampler_name="DPM++ 2M",
                   hr_negative_prompt="red")
    assert np.abs(pixels(picture(own)) - pixels(picture(plain))).mean() > 1
    parameters = parse_infotext(own.infotexts[0])[2]
    assert parameters["Hires prompt"] == "a (green:1.3) triangle" and parameters["Hires negative prompt"] == "red"
    assert parameters["Hires sampler"] == "DPM++ 2M" and parameters["Sampler"] == "Euler a"


@pytest.mark.slow
@pytest.mark.parametrize("model, upscaler", [("demo", "Latent"), ("demo", "Lanczos"), ("four", "Latent")])
def test_lora_and_controlnet_act_in_both_passes(model, upscaler, request, monkeypatch):
    service, scale = request.getfixturevalue(model), SCALE[model]
    settings = dict(hr_upscaler=upscaler, hr_denoising_strength=0.7, hr_scale=scale)
    plain = pixels(picture(generate(service, **settings)))
    assert np.abs(pixels(picture(generate(service, prompt="<lora:ink:1> a red circle", **settings))) - plain).mean() > 1
    sizes = []
    forward = UnitControlNets.forward

    def counted(self, sample, *args, **kwargs):
        sizes.append(tuple(sample.shape[-2:]))
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UnitControlNets, "forward", counted)
    controlled = generate(service, prompt="<lora:ink:1> a red circle", controlnet_units=[UNIT], **settings)
    assert picture(controlled).size == (64 * scale, 64 * scale)
    first = sizes[0]
    assert sizes == [first] * 3 + [(first[0] * scale, first[1] * scale)] * 3, "the unit acts in every step of both"


@pytest.mark.parametrize("fields, message", [
    ({"hr_upscaler": "tiny-x3"}, "hr_upscaler: upscaler 'tiny-x3' is unknown; choose one of Latent, "),
    ({"hr_upscaler": "tiny-x3"}, "did you mean 'tiny-x2'"),
    ({"hr_scale": 5}, "hr_scale must be from 1.0 to 4.0, got 5"),
    ({"width": 1024, "height": 1024, "hr_scale": 4}, "hr_scale: the hires size would be 4096x4096 from 1024x1024; "
                                                     "each side must be from 64 to 2048"),
    ({"hr_resize_x": 3000}, "hr_resize_x must be a whole number from 0 to 2048, got 3000"),
    ({"height": 192, "hr_resize_x": 2048, "hr_resize_y": 512}, "2048x512 from 64x192 means upscaling to 2048x6144 "
                                                                "first; at most 4096 a side"),
    ({"hr_denoising_strength": -0.1}, "hr_denoising_strength must be from 0 to 1, got -0.1"),
    ({"hr_denoising_strength": 0.01, "steps": 20}, "hr_denoising_strength 0.01 with 20 hires steps needs a schedule "
                                                   "of 2000 steps; at most 1000"),
    ({"hr_second_pass_steps": -1}, "hr_second_pass_steps must be a whole number from 0 to 150, got -1"),
    ({"hr_sampler_name": "Euler z"}, "hr_sampler_name 'Euler z' is unknown"),
    ({"enable_hr": "yes"}, "enable_hr must be true or false, got 'yes'"),
])
def test_bad_values_are_named(demo, fields, message):
    with pytest.raises(ValueError) as error:
        demo.build("txt2img", {**FIELDS, **fields})
    assert message in str(error.value)


# -- the interfaces ------------------------------------------------------------------------------------------


def test_enable_hr_through_webuiapi_and_gradio_client(app_server, client):
    import requests
    import webuiapi

    host, port = app_server[0].removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a", steps=3)
    result = api.txt2img(prompt="a red circle", seed=2, width=64, height=64, enable_hr=True, hr_scale=2,
                         hr_upscaler=webuiapi.HiResUpscaler.Latent, denoising_strength=0.6, hr_second_pass_steps=2)
    assert result.image.size == (128, 128)
    assert "Size: 64x64" in result.info["infotexts"][0]
    assert ("Denoising strength: 0.6, Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent"
            in result.info["infotexts"][0])
    assert not {"enable_hr", "hr_scale", "hr_upscaler"} & set(result.info["ignored_fields"])
    resized = api.txt2img(prompt="a red circle", seed=2, width=64, height=64, enable_hr=True, hr_resize_x=96,
                          hr_resize_y=80, hr_upscaler="tiny-x2", denoising_strength=0.5)
    assert resized.image.size == (96, 80) and "Hires resize: 96x80" in resized.info["infotexts"][0]
    answer = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", timeout=60, json={
        "prompt": "x", "width": 64, "height": 64, "steps": 3, "enable_hr": True, "denoising_strength": 1.5})
    assert answer.status_code == 422 and "denoising_strength must be from 0 to 1, got 1.5" in answer.text

    images, infotext, _ = client.predict(prompt="a red circle", seed=2, steps=3, width=64, height=64, enable_hr=True,
                                         hr_upscaler="Nearest", hr_scale=1.5, hr_denoising_strength=0.5,
                                         api_name="/txt2img")
    assert Image.open(images[0]["image"]).size == (96, 96)
    assert "Denoising strength: 0.5, Hires upscale: 1.5, Hires upscaler: Nearest" in infotext


def test_png_info_reads_a1111_hires_entries_back():
    text = ("a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.45, "
            "Hires resize: 1024x768, Hires steps: 10, Hires upscaler: Latent (bicubic), Hires sampler: DPM++ 2M, "
            'Hires prompt: "a castle, detailed"')
    fields = fields_from_infotext(text, [Upscale("/nonexistent")])
    assert {key: fields[key] for key in fields if key.startswith(("hr_", "enable_hr")) or key == "strength"} == {
        "enable_hr": True, "hr_resize_x": 1024, "hr_resize_y": 768, "hr_second_pass_steps": 10,
        "hr_upscaler": "Latent (bicubic)", "hr_sampler_name": "DPM++ 2M", "hr_prompt": "a castle, detailed",
        "hr_negative_prompt": "", "hr_denoising_strength": 0.45, "strength": 0.45}
    assert fields["other"] == {} and fields["warnings"] == []
    plain = fields_from_infotext("a castle\nSteps: 20, Seed: 1, Size: 512x512", [Upscale("/nonexistent")])
    assert "enable_hr" not in plain


def test_a_model_gets_its_own_hires_defaults_and_a_given_value_keeps_a1111s_meaning(demo, four):
    """The demo model knows only 64 px: its hires fix defaults to 1.5x; a model of SD 1.5's kind keeps A1111's 2x."""
    fields = {key: value for key, value in FIELDS.items() if key != "hr_scale"}
    assert demo.build("txt2img", fields)[0].part("upscale").scale == 1.5
    assert four.build("txt2img", fields)[0].part("upscale").scale == 2.0
    assert demo.build("txt2img", {**fields, "hr_scale": 2})[0].part("upscale").scale == 2.0
    hr_scale = {field.name: field for field in demo.requests.endpoints()["txt2img"]}["hr_scale"]
    assert hr_scale.default == 1.5, "gradio_client's /txt2img says the model's default"


@pytest.mark.slow  # 16 seeded prompts, each made twice
def test_the_demo_models_default_hires_fix_keeps_the_composition(demo):
    """With the demo model's defaults, the second pass draws what the first drew: the prompt's shape and colour.
    Each set of 16 is one batched call (equal to the solo images within the batching tolerance), 3x faster."""
    from training.evaluate_shapes import evaluate, seeded_prompts

    prompts = seeded_prompts(16)

    def made(hires: bool) -> list[Image.Image]:
        jobs = [demo.build("txt2img", {"prompt": prompt, "seed": index, "steps": 20, "width": 64, "height": 64,
                                       "enable_hr": hires}) for index, (prompt, _) in enumerate(prompts)]
        return [composed.images[0].convert("RGB") for composed in demo.compose_together(jobs)]

    first, hires = made(False), made(True)
    scenes = [scene for _, scene in prompts]
    before, after = evaluate(first, scenes), evaluate(hires, scenes)
    assert hires[0].size == (96, 96)
    assert after["colour"] >= before["colour"] and after["shape"] >= before["shape"] - 0.07, (before, after)
