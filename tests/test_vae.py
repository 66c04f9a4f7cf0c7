"""A VAE chosen per request: made by the tests from the demo's VAE (its decoder moved), as an
A1111 single file and as a diffusers folder. It changes the image, Automatic restores it exactly, the next request
is unaffected, the infotext, REST's override and gradio_client's keyword work, and a VAE that does not fit is
refused. Tiled decoding against untiled."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from extensions.vae.library import VaeLibrary
from models.infotext import parse_infotext
from models.vae_tiling import TILED_ABOVE, tiled
from service.pnginfo import fields_from_infotext
from testing.vae_files import changed_vae, save_ldm_vae

FIELDS = dict(prompt="a red circle on a blue background", seed=11, steps=4, width=64, height=64)


def pixels(generation) -> np.ndarray:
    return np.asarray(Image.open(generation.files[0]).convert("RGB"), dtype=int)


def test_a_chosen_vae_changes_the_image_and_automatic_restores_it_exactly(app_server):
    service = app_server[1]
    own = service.run("txt2img", FIELDS)
    changed = service.run("txt2img", {**FIELDS, "vae": "changed"})
    assert np.abs(pixels(changed) - pixels(own)).mean() > 1, "another VAE decodes the same latents differently"
    parameters = parse_infotext(changed.infotexts[0])[2]
    assert re.fullmatch(r"[0-9a-f]{10}", parameters["VAE hash"]) and parameters["VAE"] == "changed"
    assert "VAE" not in parse_infotext(own.infotexts[0])[2]
    for fields in ({**FIELDS, "vae": "Automatic"}, FIELDS):  # and the next request without one
        assert np.array_equal(pixels(service.run("txt2img", fields)), pixels(own))
    inpaint = service.run("inpaint", {**FIELDS, "image": Image.new("RGB", (64, 64), "navy"),
                                      "mask": Image.new("L", (64, 64), 255), "vae": "changed"})
    assert parse_infotext(inpaint.infotexts[0])[2]["VAE"] == "changed", "every pipeline sees it"
    assert fields_from_infotext(changed.infotexts[0], service.extensions)["vae"] == "changed"  # PNG Info


def test_the_folder_form_equals_the_single_file(app_server, tmp_path):
    vae = app_server[1].manager.pipelines["txt2img"].vae
    other = changed_vae(vae)
    save_ldm_vae(other, tmp_path / "one.safetensors")
    other.save_pretrained(tmp_path / "folder" / "two")
    library = VaeLibrary(tmp_path)
    assert library.names() == ["folder/two", "one"]
    latents = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        decoded = [library.load(name, vae).decode(latents).sample for name in ("one", "folder/two")]
        assert torch.equal(decoded[0], decoded[1]) and torch.equal(decoded[0], other.decode(latents).sample)


def test_vaes_that_do_not_fit_or_are_pickles_are_refused(app_server, tmp_path):
    vae = app_server[1].manager.pipelines["txt2img"].vae
    AutoencoderKL(latent_channels=2, block_out_channels=(8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=8).save_pretrained(tmp_path / "two-ch")
    sd_shaped = AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                              up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8, latent_channels=4)
    save_ldm_vae(sd_shaped, tmp_path / "eight-x.safetensors")
    (tmp_path / "evil.pt").write_bytes(b"never unpickled")
    library = VaeLibrary(tmp_path)
    with pytest.raises(ValueError, match=r"vae 'two-ch' does not fit this model: 2 latent channels, 4x "
                                         r"down-sampling against its own 4 latent channels, 4x down-sampling"):
        library.load("two-ch", vae)
    with pytest.raises(ValueError, match=r"vae 'eight-x' could not be loaded for this model"):
        library.load("eight-x", vae)
    with pytest.raises(ValueError, match=r"vae 'evil': evil.pt is a pickle"):
        library.load("evil", vae)
    with pytest.raises(ValueError, match=r"vae 'eigth-x' is unknown; choose one of Automatic, eight-x, two-ch; "
                                         r"did you mean 'eight-x'\?"):
        library.check_name("eigth-x")
    with pytest.raises(ValueError, match="vae 'nope' is unknown"):
        app_server[1].run("txt2img", {**FIELDS, "vae": "nope"})


def test_rest_override_and_listing_and_gradio_client(app_server, client):
    import requests
    import webuiapi

    host, port = app_server[0].removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port), steps=2)
    result = api.txt2img(prompt="x", seed=1, width=64, height=64,
                         override_settings={"sd_vae": "changed.safetensors"})
    assert "VAE: changed" in result.info["infotexts"][0]
    plain = api.txt2img(prompt="x", seed=1, width=64, height=64, override_settings={"sd_vae": "None"})
    assert "VAE" not in plain.info["infotexts"][0] and "sd_vae" not in plain.info["ignored_fields"]
    assert requests.get(f"{app_server[0]}/sdapi/v1/sd-vae", timeout=30).json() == [
        {"model_name": "changed", "filename": "changed.safetensors"}]
    bad = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json={"steps": 2, "width": 64, "height": 64,
                                                                   "override_settings": {"sd_vae": "chnged"}},
                        timeout=30)
    assert bad.status_code == 422 and "override_settings.sd_vae 'chnged' is unknown" in bad.text
    _, infotext, _ = client.predict(prompt="x", seed=1, steps=2, vae="changed", api_name="/txt2img")
    assert "VAE: changed" in infotext


def test_big_images_go_through_the_vae_in_tiles_as_well_as_untiled(app_server, monkeypatch):
    """The demo's VAE, with 128 px tiles over a 320 px shapes picture (9 tiles, to keep it quick; bench.vae_tiling
    measures 1024 and 2048 px with the real 512 px tiles): the tiled round trip is as close to the picture as the
    untiled one. (This VAE knows 64 px pictures: at 320 px both are some 23 levels off, each in its own way.)"""
    import models.vae_tiling
    from training.shapes import Scene, Shape, render

    monkeypatch.setattr(models.vae_tiling, "TILE", 128)
    vae = changed_vae(app_server[1].manager.pipelines["txt2img"].vae, amount=0)  # a copy: the shared one stays
    scene = Scene([Shape("circle", "red", "large", "centre")], "blue")
    picture = torch.tensor(np.asarray(render(scene, 320)).transpose(2, 0, 1)[None] / 127.5 - 1, dtype=torch.float32)
    errors = {}
    with torch.no_grad():
        latents = vae.encode(picture).latent_dist.mean
        for on in (False, True):
            tiled(vae, on)
            decoded = vae.decode(latents).sample
            assert decoded.shape == (1, 3, 320, 320)
            errors[on] = float((decoded - picture).abs().mean() * 127.5)  # in 0..255 levels
    assert errors[True] < errors[False] + 3, errors  # measured: 24.7 tiled, 23.1 untiled
    assert vae.use_tiling and (vae.tile_sample_min_size, vae.tile_latent_min_size) == (128, 32)
    assert TILED_ABOVE == 1024 * 1024


def test_tiling_switches_on_above_1024_squared_and_off_again_per_request(app_server):
    from models.request import GenerationRequest

    service = app_server[1]
    extension, pipe = service.extension("vae"), service.manager.pipelines["txt2img"]
    try:
        for width, height, on in ((1024, 1024, False), (1032, 1024, True), (64, 64, False)):
            request = GenerationRequest("txt2img", "x", width=width, height=height)
            hooked, _ = extension._hook(pipe, request, {}, {})
            assert hooked.vae.use_tiling is on, (width, height)
    finally:
        tiled(pipe.vae, False)
