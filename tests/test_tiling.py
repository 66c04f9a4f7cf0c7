"""Tiling as A1111 has it: with every convolution padding circularly the model has no edges, so noise rolled sideways
gives the same picture rolled (it repeats seamlessly); the request says so in its infotext, the next request is
untouched, and REST's `tiling` and PNG Info's `Tiling: True` reach it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from extensions.tiling import Tiling
from extensions.tiling.extension import set_tiling
from models.manager import PipelineManager
from service.pnginfo import fields_from_infotext
from service.studio import StudioService

FIELDS = dict(prompt="a red circle", seed=3, steps=3, width=64, height=64, sampler="Euler")


@pytest.fixture(scope="module")
def manager(txt2img_folder):
    return PipelineManager.load(str(txt2img_folder), device="cpu")


def rolled_pictures(pipe, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """The picture of some noise rolled by `shift` latent pixels, and the picture of the noise rolled as much."""
    noise = torch.randn((1, 4, 16, 16), generator=torch.Generator("cpu").manual_seed(0))
    pictures = [pipe(prompt="a red circle", latents=latents, num_inference_steps=2, output_type="np").images[0]
                for latents in (noise, noise.roll(shift, dims=-1))]
    factor = pipe.vae_scale_factor
    return np.roll(pictures[0], shift * factor, axis=1), pictures[1]


def test_a_tiled_model_has_no_edges_so_rolled_noise_is_the_rolled_picture(manager):
    pipe = manager.pipelines["txt2img"]
    pipe.set_progress_bar_config(disable=True)
    try:
        set_tiling([pipe.unet, pipe.vae], True)
        expected, rolled = rolled_pictures(pipe, 8)
        assert np.abs(expected - rolled).max() < 1e-3, "the picture wraps around: it has no seam"
        set_tiling([pipe.unet, pipe.vae], False)
        expected, rolled = rolled_pictures(pipe, 8)
        assert np.abs(expected - rolled).max() > 0.05, "untiled, the edges are zeros: the picture changes"
    finally:
        set_tiling([pipe.unet, pipe.vae], False)


@pytest.mark.slow
def test_a_tiled_request_is_written_and_leaves_the_next_one_untouched(manager, tmp_path):
    service = StudioService(manager, tmp_path, [Tiling()])

    def generate(**fields):
        generation = service.generate(*service.build("txt2img", {**FIELDS, **fields}))
        return np.asarray(Image.open(generation.files[0]), dtype=np.int16), generation.infotexts[0]

    before, plain_infotext = generate()
    tiled, infotext = generate(tiling=True)
    after, _ = generate()
    assert "Tiling: True" in infotext and "Tiling" not in plain_infotext
    assert np.abs(tiled - before).mean() > 1
    assert np.array_equal(before, after), "the next request pads with zeros again"
    assert fields_from_infotext(infotext, service.extensions)["tiling"] is True
    assert service.requests.build("txt2img", {**FIELDS, "tiling": True})[0].part("tiling") is True
    with pytest.raises(ValueError, match="tiling must be true or false, got 'yes'"):
        service.build("txt2img", {**FIELDS, "tiling": "yes"})


@pytest.mark.server
def test_rest_takes_a1111s_tiling(app_server):
    import json

    import requests

    body = dict(prompt="a red circle", seed=3, steps=2, width=64, height=64, tiling=True)
    answer = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    assert "Tiling: True" in json.loads(answer.json()["info"])["infotexts"][0]
