"""Upscalers: model files made here are detected by spandrel and scale by 2 and 4, a tiled
run equals an untiled one within tolerance, pickles are refused, bad values are named; the Extras endpoints
through gradio_client and A1111's REST client."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from extensions.upscale.extension import Upscale
from extensions.upscale.library import UpscalerLibrary
from extensions.upscale.upscaling import model_pass, run_tiled
from models.manager import PipelineManager
from service.studio import StudioService
from testing.upscaler_files import make_upscaler


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upscale_models")
    for kind in ("compact", "esrgan"):
        for scale in (2, 4):
            make_upscaler(folder / f"{kind}-x{scale}.safetensors", kind, scale)
    make_upscaler(folder / "more" / "compact-x2b.safetensors", "compact", 2, seed=1)
    (folder / "evil.pth").write_bytes(b"never unpickled")
    (folder / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    return folder


@pytest.fixture(scope="module")
def upscale(folder, tmp_path_factory):
    """The extension in a studio: an upscale is a job in its queue."""
    extension = Upscale(folder)
    StudioService(PipelineManager.load("demo", device="cpu"), tmp_path_factory.mktemp("outputs"), [extension])
    return extension


def picture(width: int = 60, height: int = 44) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_models_are_detected_from_their_weights_and_scale_by_2_and_4(folder, upscale):
    library = UpscalerLibrary(folder)
    assert library.names() == ["broken", "compact-x2", "compact-x4", "esrgan-x2", "esrgan-x4", "more/compact-x2b"]
    assert library.refused() == ["evil.pth"]
    for name, architecture, scale in (("compact-x2", "RealESRGAN Compact", 2), ("compact-x4", "RealESRGAN Compact", 4),
                                      ("esrgan-x2", "ESRGAN", 2), ("esrgan-x4", "ESRGAN", 4)):
        model = library.load(name)
        assert (model.architecture.name, model.scale) == (architecture, scale)
        assert upscale.upscale(picture(), name, scale).size == (60 * scale, 44 * scale)
    assert library.load("compact-x2") is library.load("compact-x2"), "kept loaded"


def test_a_model_that_scales_less_than_asked_runs_again_then_lanczos_to_the_exact_size(upscale):
    result = upscale.upscale(picture(30, 20), "compact-x2", 3)  # 2x, 2x again (120x80), down to 90x60
    assert result.size == (90, 60)


def test_tiled_equals_untiled_within_tolerance(upscale):
    pixels = torch.from_numpy(np.array(picture(100, 70))).permute(2, 0, 1)[None].float() / 255
    for name, tolerance in (("compact-x4", 1e-5), ("esrgan-x2", 2 / 255)):
        model = upscale.library.load(name)
        with torch.no_grad():
            whole, tiled = model(pixels), run_tiled(model, pixels, model.scale, tile=32, overlap=16)
        assert whole.shape == tiled.shape == (1, 3, 70 * model.scale, 100 * model.scale)
        assert (whole - tiled).abs().max() <= tolerance, name
    untiled = model_pass(upscale.library.load("compact-x2"), picture(100, 70), torch.device("cpu"), tile=1000)
    assert np.array_equal(np.asarray(untiled), np.asarray(upscale.upscale(picture(100, 70), "compact-x2", 2)))


def test_pixel_upscalers(upscale):
    small = picture(8, 6)
    assert upscale.upscale(small, "Nearest", 4) == small.resize((32, 24), Image.NEAREST)
    assert upscale.upscale(small, "Lanczos", 2.5) == small.resize((20, 15), Image.LANCZOS)
    assert upscale.upscale(small, "None", 2).size == (16, 12)  # A1111 resizes all the same


@pytest.mark.parametrize("upscaler, scale, message", [
    ("evil", 2, "upscaler 'evil': evil.pth is a pickle, which can run code when loaded: only .safetensors"),
    ("compact-x3", 2, "upscaler 'compact-x3' is unknown; choose one of None, Lanczos, Nearest, broken, compact-x2"),
    ("compact-x3", 2, "did you mean 'compact-x4' or 'compact-x2'"),
    ("broken", 2, "upscaler 'broken': not a readable model file"),
    ("Lanczos", 5, "scale must be"),
    ("Lanczos", "2", "scale must be"),
    ("Lanczos", 4, "scale: the result would be 4800x3520 pixels; at most 4096 a side"),
])
def test_bad_values_are_named(upscale, upscaler, scale, message):
    with pytest.raises(ValueError, match=None) as error:
        upscale.upscale(picture(1200, 880) if scale == 4 else picture(), upscaler, scale)
    assert message in str(error.value)


def test_upscale_through_gradio_client_and_webuiapi(client, app_server):
    import webuiapi
    from gradio_client import handle_file

    picture(40, 30).save(app_server[1].output_dir / "small.png")
    result = client.predict(image=handle_file(app_server[1].output_dir / "small.png"), upscaler="tiny-x2", scale=2,
                            api_name="/upscale")
    assert Image.open(result).size == (80, 60) and result.endswith("/upscaled.png"), result  # named for what it is
    host, port = app_server[0].removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port))
    assert [item["name"] for item in api.get_upscalers()] == ["None", "Lanczos", "Nearest", "tiny-x2"]
    upscaled = api.extra_single_image(image=picture(40, 30), upscaler_1="tiny-x2", upscaling_resize=4)
    assert upscaled.image.size == (160, 120)
    assert "Postprocess upscale to: 160x120, upscaler: tiny-x2" in upscaled.info
