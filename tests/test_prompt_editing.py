"""A1111's prompt editing: `[from:to:when]`, `[to:when]`, `[from::when]` and `[a|b]` read as A1111's schedule
grammar reads them (a reference table: the examples in A1111's modules/prompt_parser.py and more, each expected value
what A1111's own parser returns, run beside this one), and the U-Net given each step's embeddings: the text of the
step, switched where A1111 switches it, hires fix's pass scheduled over its own steps, each text encoded once."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from extensions.prompts import Prompts
from extensions.prompts.composable import ComposedUNet
from extensions.prompts.editing import composed
from extensions.prompts.schedule import edits, schedule
from extensions.upscale import Upscale
from models.manager import PipelineManager
from service.studio import StudioService

# (prompt, steps, hires fix's steps or None) -> A1111's schedule: [last step, text], ...
A1111_SCHEDULES = [
    (("test", 10, None), [[10, "test"]]),
    (("a [b:3]", 10, None), [[3, "a "], [10, "a b"]]),
    (("a [b: 3]", 10, None), [[3, "a "], [10, "a b"]]),
    (("a [[[b]]:2]", 10, None), [[2, "a "], [10, "a [[b]]"]]),
    (("[(a:2):3]", 10, None), [[3, ""], [10, "(a:2)"]]),
    (("a [b : c : 1] d", 10, None), [[1, "a b  d"], [10, "a  c  d"]]),
    (("a[b:[c:d:2]:1]e", 10, None), [[1, "abe"], [2, "ace"], [10, "ade"]]),
    (("a [unbalanced", 10, None), [[10, "a [unbalanced"]]),
    (("a [b:.5] c", 10, None), [[5, "a  c"], [10, "a b c"]]),
    # A1111's docstring expects [[5, 'a  c'], [10, 'a {b|d{ c']] ("not handling this right now"); its parser fails
    (("a [{b|d{:.5] c", 10, None), [[10, "a [{b|d{:.5] c"]]),
    (("((a][:b:c [d:3]", 10, None), [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    (("[a|(b:1.1)]", 10, None), [[step, "a" if step % 2 else "(b:1.1)"] for step in range(1, 11)]),
    (("[fe|]male", 10, None), [[step, "female" if step % 2 else "male"] for step in range(1, 11)]),
    (("[fe|||]male", 10, None), [[step, "female" if step % 4 == 1 else "male"] for step in range(1, 11)]),
    (("a [b:.5] c", 10, 10), [[10, "a b c"]]),
    (("a [b:1.5] c", 10, 10), [[5, "a  c"], [10, "a b c"]]),
    (("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6]"
      "[ in background:0.25] [shoddy:masterful:0.5]", 100, None),
     [[25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
      [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
      [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
      [75, "fantasy landscape with a lake and an oak in background masterful"],
      [100, "fantasy landscape with a lake and a christmas tree in background masterful"]]),
    (("a [b:c:1e1] d", 20, None), [[10, "a b d"], [20, "a c d"]]),
    (("[a::3] b", 10, None), [[3, "a b"], [10, " b"]]),
    (("[:b:3]", 10, None), [[3, ""], [10, "b"]]),
    (("a | b [c:2]", 10, None), [[10, "a | b [c:2]"]]),
    (("[a:b:0]", 10, None), [[10, "b"]]),
    (("[a:b:-1]", 10, None), [[10, "b"]]),
    (("\\[a:b:2\\]", 10, None), [[10, "\\[a:b:2\\]"]]),
    (("(a [b:c:2]:1.2)", 4, None), [[2, "(a b:1.2)"], [4, "(a c:1.2)"]]),
    (("[a [b|c]:d:2]", 4, None), [[1, "a b"], [2, "a c"], [3, "d"], [4, "d"]]),
    (("[a:b:10]", 10, 4), [[4, "b"]]),
    (("[a:b:12]", 10, 4), [[2, "a"], [4, "b"]]),
    (("[a:b:1.25]", 10, 4), [[1, "a"], [4, "b"]]),
    (("[a|b]", 10, 3), [[1, "a"], [2, "b"], [3, "a"]]),
    (("a [b", 10, None), [[10, "a [b"]]),
    (("[a:b:c]", 10, None), [[10, "[a:b:c]"]]),
    (("[a:(b:2):.5]", 4, None), [[2, "a"], [4, "(b:2)"]]),
]


@pytest.mark.parametrize("case, expected", A1111_SCHEDULES)
def test_schedules_are_a1111s(case, expected):
    assert [list(entry) for entry in schedule(*case)] == expected


def test_only_prompts_with_an_edit_are_scheduled_and_hostile_brackets_stay_fast():
    assert edits("a [b:c:3]") and edits("[a|b]") and edits("(x [a|b])")
    assert not edits("a (b:1.2) [c]") and not edits("a | b [c:2]") and not edits("[a:b:c]")
    started = time.perf_counter()
    for hostile in ("[a:" * 5000, "(" * 5000 + "[a|b]", "[[[[" * 2500, "[a|" * 5000 + "]" * 5000):
        schedule(hostile, 150)
    assert time.perf_counter() - started < 2


@pytest.fixture(scope="module")
def service(txt2img_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("editing")
    (folder / "embeddings").mkdir()
    return StudioService(PipelineManager.load(str(txt2img_folder), device="cpu"), folder / "outputs",
                         [Prompts(folder / "embeddings"), Upscale(folder / "upscale_models")])


def conditions_by_step(service, half: int = 1, **fields) -> list[torch.Tensor]:
    """The embeddings the U-Net gets at each step of the job: the prompt's (`half` 1 of the guidance batch) or the
    negative prompt's (0)."""
    seen = []

    def spy(module, args, kwargs) -> None:
        states = kwargs["encoder_hidden_states"]
        if states.shape[0] == 2:  # the job's steps (not the cost measure's single-row run)
            seen.append(states.chunk(2)[half].clone())

    hook = service.manager.pipelines["txt2img"].unet.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        service.generate(*service.build(fields.pop("mode", "txt2img"), {
            "seed": 1, "steps": 4, "width": 64, "height": 64, "sampler": "Euler", **fields}))
    finally:
        hook.remove()
    return seen


def encoded(service, text: str) -> torch.Tensor:
    encoder = service.extension("prompts").encoder
    return encoder.encode(encoder.tokenize(text))[0]


def which(steps: list[torch.Tensor], texts: dict[str, torch.Tensor]) -> list[str]:
    return [next((name for name, tensor in texts.items() if torch.allclose(step, tensor, atol=1e-5)), "?")
            for step in steps]


@pytest.mark.slow
def test_each_step_gets_its_texts_embeddings_switched_where_a1111_switches(service):
    texts = {name: encoded(service, name) for name in ("a red circle", "a blue square")}
    assert which(conditions_by_step(service, prompt="[a red circle:a blue square:2]"), texts) == \
        ["a red circle"] * 3 + ["a blue square"], "steps 0, 1 and 2 are at most 2: the first text (A1111)"
    # A1111 counts the steps from 0 against schedules whose steps count from 1: its alternation starts a, a, b, a
    assert which(conditions_by_step(service, prompt="[a red circle|a blue square]"), texts) == \
        ["a red circle", "a red circle", "a blue square", "a red circle"]
    assert which(conditions_by_step(service, prompt="[a red circle:a blue square:0.5]"), texts) == \
        ["a red circle"] * 3 + ["a blue square"]


@pytest.mark.slow
def test_the_negative_prompt_is_scheduled_too(service):
    texts = {name: encoded(service, name) for name in ("a red circle", "a blue square")}
    seen = conditions_by_step(service, half=0, prompt="a circle", negative_prompt="[a red circle:a blue square:1]",
                              steps=3)
    assert which(seen, texts) == ["a red circle", "a red circle", "a blue square"]


@pytest.mark.slow
def test_hires_fixs_pass_is_scheduled_over_its_own_steps(service):
    texts = {name: encoded(service, name) for name in ("a red circle", "a blue square")}
    steps = conditions_by_step(service, prompt="[a red circle:a blue square:1.5]", enable_hr=True, hr_scale=2,
                               hr_second_pass_steps=4, hr_denoising_strength=0.5, hr_upscaler="Latent")
    assert which(steps, texts) == ["a red circle"] * 4 + ["a red circle"] * 3 + ["a blue square"]


@pytest.mark.slow
def test_an_edited_prompt_makes_its_own_picture_and_the_next_plain_one_is_untouched(service):
    def picture(prompt: str) -> np.ndarray:
        generation = service.generate(*service.build("txt2img", {"prompt": prompt, "seed": 3, "steps": 4,
                                                                 "width": 64, "height": 64, "sampler": "Euler"}))
        return np.asarray(Image.open(generation.files[0]), dtype=np.int16)

    plain = picture("a red circle")
    first_only = picture("[a red circle:a blue square:4]")  # the first text at every step
    assert np.abs(first_only - plain).max() <= 2, "as the plain prompt (the pipeline encodes that one itself)"
    switched, second_only = picture("[a red circle:a blue square:1]"), picture("[a red circle:a blue square:0]")
    assert not np.array_equal(switched, first_only) and not np.array_equal(switched, second_only)
    assert np.array_equal(picture("a red circle"), plain)


@pytest.mark.slow
def test_img2img_and_inpaint_on_the_demo_model_switch_too(tmp_path):
    (tmp_path / "embeddings").mkdir()
    demo = StudioService(PipelineManager.load("demo", device="cpu"), tmp_path / "outputs",
                         [Prompts(tmp_path / "embeddings")])
    texts = {name: encoded(demo, name) for name in ("a red circle", "a blue square")}
    picture = Image.new("RGB", (64, 64), "navy")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    for mode, extra in (("img2img", {}), ("inpaint", {"mask": mask})):
        seen = conditions_by_step(demo, mode=mode, prompt="[a red circle:a blue square:0.5]", image=picture,
                                  strength=1.0, **extra)
        assert which(seen, texts) == ["a red circle"] * 3 + ["a blue square"], mode


@pytest.mark.server
def test_rest_and_the_infotext_keep_the_prompt_as_typed(app_server):
    import json

    import requests

    prompt = "[a red circle:a blue square:0.5], [big|small]"
    answer = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", timeout=120, json={
        "prompt": prompt, "negative_prompt": "[blurry::2]", "steps": 4, "width": 64, "height": 64, "seed": 1})
    assert answer.status_code == 200, answer.text
    infotext = json.loads(answer.json()["info"])["infotexts"][0]
    assert infotext.startswith(prompt + "\nNegative prompt: [blurry::2]\n")


def test_an_edit_outside_the_steps_runs_as_a1111_runs_it_with_a_note(service):
    size = {"width": 64, "height": 64}
    _, warnings = service.build("txt2img", {"prompt": "[a red circle:a blue square:30]", "steps": 20.0, **size})
    assert warnings == ["prompt: [...:30] comes after the last step (20): its first text runs throughout"]
    _, warnings = service.build("txt2img", {"prompt": "[a:b:30]", "negative_prompt": "[c:d:-1]", "steps": 20,
                                            "enable_hr": True, "hr_second_pass_steps": 10, **size})
    assert warnings == ["negative_prompt: [...:-1] comes before the first step: its second text runs throughout"]


def test_and_splits_a1111s_way_with_weights():
    assert composed("a red circle AND a blue square:0.8") == (["a red circle", " a blue square"], [1.0, 0.8])
    assert composed("one ANDROID and two") == (["one ANDROID and two"], [1.0]), "AND as a word of its own only"
    assert composed("a: -1.5 AND b") == (["a", " b"], [-1.5, 1.0])
    with pytest.raises(ValueError, match="prompt: 9 parts joined by AND; at most 8"):
        composed(" AND ".join("x" * 9))


def test_the_composed_unet_combines_each_parts_prediction_with_its_weight(service):
    unet = service.manager.pipelines["txt2img"].unet
    generator = torch.Generator().manual_seed(0)
    sample, timestep = torch.randn(1, 4, 8, 8, generator=generator).repeat(2, 1, 1, 1), torch.tensor(500)  # as guided
    negative, first, second = (torch.randn(1, 77, 32, generator=generator) for _ in range(3))
    composed_unet = ComposedUNet(unet, [1.0, 0.5], guided=True)
    with torch.no_grad():
        output = composed_unet(sample, timestep, torch.cat([negative.repeat(1, 2, 1), torch.cat([first, second], 1)]),
                               return_dict=False)[0]
        alone = [unet(sample[:1], timestep, states).sample for states in (negative, first, second)]
    assert torch.allclose(output[:1], alone[0], atol=1e-5)
    expected = alone[0] + 1.0 * (alone[1] - alone[0]) + 0.5 * (alone[2] - alone[0])
    assert torch.allclose(output[1:], expected, atol=1e-4)
    assert composed_unet.config is unet.config, "the rest is the U-Net's own"


@pytest.mark.slow
def test_a_composed_prompt_draws_its_parts_and_halves_of_one_prompt_draw_it(service):
    def picture(prompt: str) -> np.ndarray:
        generation = service.generate(*service.build("txt2img", {"prompt": prompt, "seed": 3, "steps": 4,
                                                                 "width": 64, "height": 64, "sampler": "Euler"}))
        assert generation.infotexts[0].startswith(prompt + "\n")
        return np.asarray(Image.open(generation.files[0]), dtype=np.int16)

    halves_draw_the_whole(picture, "a blue square")


def halves_draw_the_whole(picture, other: str) -> None:
    """`picture(prompt)` (its pixels): halves of one prompt draw that prompt; that prompt AND `other` does not."""
    whole = picture("[a red circle:a red circle:4]")  # through the same encoding, one part
    halves = picture("a red circle :0.5 AND a red circle:0.5")  # 0.5 x (c - u) twice is (c - u)
    assert np.abs(halves - whole).max() <= 2
    both = picture(f"a red circle AND {other}")
    assert np.abs(both - whole).mean() > 1


@pytest.mark.server
def test_and_and_edits_work_with_controlnet_hires_fix_inpainting_and_cfg_1(app_server):
    import base64
    import io

    import requests

    def png(picture: Image.Image) -> str:
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    ring = Image.new("RGB", (64, 64), "black")
    ring.paste((255, 255, 255), (16, 16, 48, 48))
    prompt = "[a red circle:a blue square:0.5] AND big:0.7"
    base = {"prompt": prompt, "steps": 4, "width": 64, "height": 64, "seed": 2}
    bodies = {
        "txt2img": {**base, "alwayson_scripts": {"controlnet": {"args": [
            {"module": "none", "model": "edges", "image": png(ring)}]}}},
        "hires": {**base, "enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.5},
        "cfg 1": {**base, "cfg_scale": 1},
        "inpaint": {**base, "init_images": [png(ring)], "mask": png(ring.convert("L")), "denoising_strength": 1},
    }
    for name, body in bodies.items():
        route = "img2img" if "init_images" in body else "txt2img"
        answer = requests.post(f"{app_server[0]}/sdapi/v1/{route}", json=body, timeout=120)
        assert answer.status_code == 200, (name, answer.text[:300])
        assert json.loads(answer.json()["info"])["infotexts"][0].startswith(prompt), name


def test_the_token_counter_counts_the_longest_text_of_a_schedule_or_an_and_part(service):
    prompts = service.extension("prompts")
    long = "x " * 80
    assert prompts.token_count(f"[a:{long}:0.5]") == "80/150", "the text after the switch counts"
    assert prompts.token_count(f"a AND {long}") == "80/150"
    assert prompts.token_count("[a|b c d]") == "3/75"
    started = time.perf_counter()
    prompts.token_count("[a|b]" * 3000)
    assert time.perf_counter() - started < 2
