"""A1111's scripts: the X/Y/Z plot's grid with its legend, each cell the image its settings make alone (by axis name
and by A1111's index); the prompt matrix; prompts from file or textbox with A1111's line options; SD upscale's tiles
joined without a seam; bad arguments named; Interrupt stops a script; REST's script_name/script_args and the
listing routes; gradio_client's keywords."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from extensions.scripts import Scripts
from extensions.upscale import Upscale
from extensions.upscale.sd_upscale import joined, tiles_for
from models.manager import PipelineManager
from service.queue import Cancelled
from service.studio import StudioService

BASE = dict(prompt="a red circle", seed=5, width=64, height=64, sampler="Euler", steps=2)
XYZ_TAIL = [True, True, False, False, 0, False]  # draw legend, lone images, sub grids, keep -1 seeds, margin, csv


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scripts")
    return StudioService(PipelineManager.load("demo", device="cpu"), folder / "outputs",
                         [Upscale(folder / "upscale_models"), Scripts()], max_batch=4)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def solo(service, **fields) -> np.ndarray:
    return pixels(service.run("txt2img", {**BASE, **fields}).files[0])


@pytest.mark.slow
def test_an_xyz_plot_is_a_labelled_grid_whose_cells_are_the_solo_images(service):
    generation = service.run("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": [
        "Steps", "2, 3", [], "CFG Scale", "5,9", [], "Nothing", "", [], *XYZ_TAIL]})
    grid = pixels(generation.files[0])
    assert len(generation.files) == 1 + 4, "the grid, then each cell (include lone images)"
    left, top = grid.shape[1] - 2 * 64, grid.shape[0] - 2 * 64
    assert left > 0 and top > 0, "room for the legend: the rows' labels left, the columns' above"
    assert (grid[:top, left:] < 128).any() and (grid[top:, :left] < 128).any(), "text drawn there"
    for row, cfg in enumerate((5, 9)):
        for column, steps in enumerate((2, 3)):
            expected = solo(service, steps=steps, guidance_scale=cfg)
            cell = grid[top + row * 64: top + (row + 1) * 64, left + column * 64: left + (column + 1) * 64]
            assert np.array_equal(cell, expected), (steps, cfg)
            assert np.array_equal(pixels(generation.files[1 + row * 2 + column]), expected)
    infotext = generation.infotexts[0]
    assert 'Script: X/Y/Z plot, X Type: Steps, X Values: "2, 3", Y Type: CFG Scale, Y Values: "5,9"' in infotext
    assert "Steps: 3," in generation.infotexts[2] and "CFG scale: 5" in generation.infotexts[2]


@pytest.mark.slow
def test_axis_types_by_a1111s_index_and_prompt_search_replace(service):
    by_index = service.run("txt2img", {**BASE, "script_name": "x/y/z plot", "script_args": [
        4, "2,3", [], 0, "", [], 0, "", [], False, False, False, False, 0, False]})  # 4: Steps in A1111's list
    by_name = service.run("txt2img", {**BASE, "script_name": "x/y/z plot", "script_args": [
        "Steps", "2,3", [], "Nothing", "", [], "Nothing", "", [], False, False, False, False, 0, False]})
    assert np.array_equal(pixels(by_index.files[0]), pixels(by_name.files[0]))
    assert pixels(by_index.files[0]).shape == (64, 128, 3), "no legend drawn: the cells alone"
    replaced = service.run("txt2img", {**BASE, "script_name": "x/y/z plot", "script_args": [
        "Prompt S/R", "red, blue", [], "Nothing", "", [], "Nothing", "", [], *XYZ_TAIL]})
    # the two cells differ only in their prompts: they ran batched, within 2/255 of alone (docs/deployment.md)
    assert np.abs(pixels(replaced.files[2]) - solo(service, prompt="a blue circle")).max() <= 2
    assert replaced.infotexts[2].startswith("a blue circle\n")


@pytest.mark.slow
def test_values_listed_as_a1111s_dropdown_and_ranges(service):
    listed = service.run("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": [
        "Sampler", "", ["Euler", "DDIM"], "Nothing", "", [], "Nothing", "", [], *XYZ_TAIL]})
    assert ["Sampler: Euler," in text for text in listed.infotexts[1:]] == [True, False]
    assert "Sampler: DDIM," in listed.infotexts[2]
    ranged = service.run("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": [
        "Steps", "1-5 (+2)", [], "Nothing", "", [], "Nothing", "", [], *XYZ_TAIL]})
    assert [int(text.split("Steps: ")[1].split(",")[0]) for text in ranged.infotexts[1:]] == [1, 3, 5]


@pytest.mark.parametrize("args, message", [
    (["Colour", "1", []], "script_args[0]: axis 'Colour' is not an axis; the axes: Nothing, Seed"),
    (["Eta", "1", []], "script_args[0]: axis 'Eta' is not available here"),
    ([99, "1", []], "script_args[0]: axis index 99 is not in A1111's txt2img list (0 to 37)"),
    (["Steps", "", []], "script_args[1]: give Steps at least one value"),
    (["Steps", "two", []], "script_args[1] (Steps): 'two' is not a whole number"),
    (["Prompt S/R", "green, blue", []], "did not find 'green' in the prompt or the negative prompt"),
    (["Seed", "1-9", [], "Steps", "1-8", []], "the X/Y/Z plot would have 72 cells; at most 64"),
])
def test_bad_plot_arguments_are_named(service, args, message):
    args = [*args, *["Nothing", "", []] * ((9 - len(args)) // 3), *XYZ_TAIL]
    with pytest.raises(ValueError) as raised:
        service.build("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": args})
    assert message in str(raised.value)


@pytest.mark.slow
def test_unknown_scripts_and_a_bad_cell_value_are_named(service):
    with pytest.raises(ValueError, match="script_name: no script 'Loopback' for txt2img; the scripts: X/Y/Z plot"):
        service.build("txt2img", {**BASE, "script_name": "Loopback"})
    with pytest.raises(ValueError, match="script_args must be a list of at most 32 arguments, got 'x'"):
        service.build("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": "x"})
    with pytest.raises(ValueError, match="sampler 'Nope' is unknown"):  # every cell checked before any runs
        service.run("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": [
            "Sampler", "Euler, Nope", [], "Nothing", "", [], "Nothing", "", [], *XYZ_TAIL]})


@pytest.mark.slow
def test_a_prompt_matrix_makes_every_combination(service):
    generation = service.run("txt2img", {**BASE, "prompt": "a circle|red|big", "script_name": "Prompt matrix",
                                         "script_args": [False, False, "positive", "comma", 0]})
    prompts = [text.split("\n")[0] for text in generation.infotexts[1:]]
    assert prompts == ["a circle", "a circle, red", "a circle, big", "a circle, red, big"]
    grid = pixels(generation.files[0])
    left, top = grid.shape[1] - 2 * 64, grid.shape[0] - 2 * 64
    assert np.abs(grid[top:top + 64, left + 64:] - solo(service, prompt="a circle, red")).max() <= 2  # batched
    assert "Script: Prompt matrix" in generation.infotexts[0]


@pytest.mark.slow
def test_prompts_from_a_textbox_with_a1111s_line_options(service):
    lines = 'a red circle\n--prompt "a blue square" --steps 3 --seed 7 --cfg_scale 5\n\n'
    generation = service.run("txt2img", {**BASE, "prompt": "", "script_name": "prompts from file or textbox",
                                         "script_args": [False, False, "start", lines]})
    assert len(generation.files) == 2, "one image a line, no grid"
    assert generation.infotexts[1].startswith("a blue square\nSteps: 3,") and "Seed: 7," in generation.infotexts[1]
    assert np.abs(pixels(generation.files[0]) - solo(service, prompt="a red circle")).max() <= 2  # batched
    with pytest.raises(ValueError, match=r"script_args\[3\]: line 1: unknown option '--colour'"):
        service.build("txt2img", {**BASE, "script_name": "Prompts from file or textbox",
                                  "script_args": [False, False, "start", "--colour red"]})


def test_sd_upscale_tiles_join_into_the_picture_they_were_cut_from():
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 168, 3), dtype=np.uint8))
    tiles = tiles_for(picture.size, (64, 64), 16)
    assert tiles[0] == (0, 0) and tiles[-1] == (168 - 64, 200 - 64), "the last tiles end at the edges"
    cut = [picture.crop((tile.x, tile.y, tile.x + 64, tile.y + 64)) for tile in tiles]
    assert np.array_equal(np.asarray(joined(cut, tiles, picture.size, 16)), np.asarray(picture))


@pytest.mark.slow
def test_sd_upscale_redraws_the_upscaled_picture_tile_by_tile(service):
    navy = Image.new("RGB", (64, 64), "navy")
    generation = service.run("img2img", {**BASE, "image": navy, "strength": 0.5, "steps": 4,
                                         "script_name": "SD upscale", "script_args": ["", 16, "Lanczos", 2]})
    assert len(generation.files) == 1 and Image.open(generation.files[0]).size == (128, 128)
    assert "SD upscale overlap: 16, SD upscale upscaler: Lanczos" in generation.infotexts[0]
    assert "Size: 128x128" in generation.infotexts[0]
    with pytest.raises(ValueError, match=r"script_args\[2\]: no upscaler 'Magic'; the upscalers: None, Lanczos"):
        service.build("img2img", {**BASE, "image": navy, "script_name": "SD upscale",
                                  "script_args": ["", 16, "Magic", 2]})
    with pytest.raises(ValueError, match=r"no script 'SD upscale' for txt2img"):
        service.build("txt2img", {**BASE, "script_name": "SD upscale", "script_args": ["", 16, "Lanczos", 2]})


@pytest.mark.slow
def test_interrupt_stops_a_script_and_keeps_what_was_made(service):
    outcome = {}

    def run():
        try:
            outcome["generation"] = service.run("txt2img", {**BASE, "steps": 40, "script_name": "X/Y/Z plot",
                                                            "script_args": ["Seed", "1-6", [], "Nothing", "", [],
                                                                            "Nothing", "", [], *XYZ_TAIL]})
        except Cancelled as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not (service.state.running and service.state.step >= 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    service.interrupt()
    thread.join(60)
    generation = outcome["generation"]
    assert generation.interrupted and len(generation.files) < 1 + 6, "the cells after the interrupt did not run"


@pytest.mark.server
def test_rest_runs_scripts_by_a1111s_names_and_lists_them(app_server):
    url = app_server[0]
    body = {**{key: value for key, value in BASE.items() if key != "sampler"}, "sampler_name": "Euler",
            "script_name": "x/y/z plot", "script_args": ["Steps", "2,3", [], "Nothing", "", [], "Nothing", "", [],
                                                         True, False, False, False, 0, False]}
    answer = requests.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["images"]) == 1
    grid = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert grid.size[0] == 128 and grid.size[1] > 64, "two cells across, their labels above"
    assert "Script: X/Y/Z plot" in json.loads(answer.json()["info"])["infotexts"][0]
    bad = requests.post(f"{url}/sdapi/v1/txt2img", json={**body, "script_args": ["Eta", "1", *body["script_args"][2:]]},
                        timeout=60)
    assert bad.status_code == 422 and "script_args[0]: axis 'Eta' is not available here" in bad.text
    listed = requests.get(f"{url}/sdapi/v1/scripts", timeout=30).json()
    assert {"x/y/z plot", "prompt matrix", "prompts from file or textbox"} <= set(listed["txt2img"])
    assert "sd upscale" in listed["img2img"] and "sd upscale" not in listed["txt2img"]
    info = requests.get(f"{url}/sdapi/v1/script-info", timeout=30).json()
    plot = next(script for script in info if script["name"] == "x/y/z plot" and not script["is_img2img"])
    assert [argument["label"] for argument in plot["args"]][:2] == ["X type", "X values"]


@pytest.mark.server
def test_gradio_client_takes_script_name_and_args(client):
    result = client.predict(prompt="a red circle", steps=2, seed=5, script_name="X/Y/Z plot",
                            script_args=["Steps", "2,3", [], "Nothing", "", [], "Nothing", "", [], True, False,
                                         False, False, 0, False], api_name="/txt2img")
    gallery, infotext = result[0], result[1]
    assert len(gallery) == 1 and "Script: X/Y/Z plot" in infotext


@pytest.mark.slow
def test_a_checkpoint_axis_switches_the_model_between_its_cells_and_back(txt2img_folder, tmp_path):
    service = StudioService(PipelineManager.load("demo", device="cpu"), tmp_path / "outputs", [Scripts()])
    service.model_loader = lambda spec: PipelineManager.load(spec, device="cpu")
    other = str(txt2img_folder)
    generation = service.run("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": [
        "Checkpoint name", f"demo, {other}", [], "Seed", "5, 6", [], "Nothing", "", [], *XYZ_TAIL]})
    assert service.model_name == "demo", "the model in use comes back after the plot"
    models = [text.split("Model: ")[1].split(",")[0].split("\n")[0] for text in generation.infotexts[1:]]
    assert models[0] == "sd-shapes-inpainting" and models[1] != models[0] and models[2:] == models[:2]
    service.switch_model(other)
    alone = pixels(service.run("txt2img", {**BASE, "seed": 6}).files[0])
    assert np.array_equal(pixels(generation.files[4]), alone), "the other model's cell, seed 6"


@pytest.mark.slow
def test_max_script_jobs_bounds_every_script(tmp_path):
    service = StudioService(PipelineManager.load("demo", device="cpu"), tmp_path, [
        Upscale(tmp_path / "upscale_models", max_script_jobs=4), Scripts(max_jobs=4)])
    with pytest.raises(ValueError, match=r"the X/Y/Z plot would have 6 cells; at most 4 \(--max-script-jobs\)"):
        service.build("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": [
            "Seed", "1-3", [], "Steps", "1,2", [], "Nothing", "", [], *XYZ_TAIL]})
    with pytest.raises(ValueError, match=r"prompt: 3 parts make 8 prompts; at most 4 \(--max-script-jobs\)"):
        service.build("txt2img", {**BASE, "prompt": "a|b|c|d", "script_name": "Prompt matrix"})
    with pytest.raises(ValueError, match=r"tiles is 9 tiles; at most 4 \(--max-script-jobs"):
        service.build("img2img", {**BASE, "image": Image.new("RGB", (64, 64)), "script_name": "SD upscale",
                                  "script_args": ["", 16, "Lanczos", 2]})


def test_a_scripts_estimate_is_its_jobs(service):
    request, _ = service.build("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": [
        "Seed", "1-3", [], "Nothing", "", [], "Nothing", "", [], *XYZ_TAIL]})
    single, _ = service.build("txt2img", BASE)
    assert service.total_estimate(request) == pytest.approx(3 * service.estimate(single))
    assert service.total_estimate(single) == service.estimate(single)


@pytest.mark.slow
def test_on_zerogpu_a_script_is_refused_with_the_reason(tmp_path):
    service = StudioService(PipelineManager.load("demo", device="cpu"), tmp_path, [Scripts()], direct=True)
    with pytest.raises(ValueError, match=r"script_name: scripts run their jobs through the job queue, which this "
                                         r"deployment \(ZeroGPU\) does not use"):
        service.run("txt2img", {**BASE, "script_name": "X/Y/Z plot", "script_args": [
            "Seed", "1,2", [], "Nothing", "", [], "Nothing", "", [], *XYZ_TAIL]})
