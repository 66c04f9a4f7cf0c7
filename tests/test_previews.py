"""Live previews: a running job's latents as a picture every few steps (`approx`), in REST's
/sdapi/v1/progress and as gradio_client's intermediate outputs; the demo model ships its own fitted map."""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import requests
import torch
from PIL import Image

from models.previews import LatentPreviewer, TinyVaePreviewer
from models.request import GenerationRequest
from tests.test_queue import until


def test_the_demo_models_fitted_map_shows_what_its_vae_would(demo_manager):
    image = demo_manager.generate(GenerationRequest("txt2img", "a red circle on a blue background", seed=3,
                                                    steps=20, width=64, height=64)).images[0]
    vae = demo_manager.pipelines["txt2img"].vae
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor

    def error(previewer) -> float:
        return float(np.abs(np.asarray(previewer.pictures(latents, image.size)[0], dtype=int)
                            - np.asarray(image, dtype=int)).mean())

    fitted, sd15 = error(demo_manager.previewer), error(LatentPreviewer.for_model(None))
    assert fitted < 35 and fitted < sd15 / 2, (fitted, sd15)  # measured: 25 against 70


def test_previews_come_every_n_steps_per_request_of_a_batch_and_not_when_off(demo_manager):
    requests_ = [GenerationRequest("txt2img", f"shape {i}", seed=i, steps=12, width=64, height=72, batch_size=1 + i)
                 for i in range(2)]
    seen = []
    demo_manager.generate_together(requests_, on_preview=lambda index, picture: seen.append((index, picture.size)))
    assert seen == [(0, (64, 72)), (1, (64, 72))] * 2, "steps 5 and 10 of 12, each request's first image"
    demo_manager.set_previews("off", 5)
    try:
        seen.clear()
        demo_manager.generate(requests_[0])
        demo_manager.generate_together(requests_[:1], on_preview=lambda index, picture: seen.append(index))
        assert not seen
    finally:
        demo_manager.set_previews("approx", 5)
    assert demo_manager.previewer.weights.tolist() != LatentPreviewer.for_model(None).weights.tolist(), \
        "back on, the model's own fitted map"


def tiny_taesd(folder, weights: str = "safetensors"):
    """An AutoencoderTiny shaped as taesd (three 2x upsamplings, 4 latent channels) but 8 channels wide."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    vae = AutoencoderTiny(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4,
                          num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4)
    vae.save_pretrained(folder, safe_serialization=weights == "safetensors")
    return vae


def test_taesd_previews_decode_the_latents_with_the_tiny_vae(demo_manager, tmp_path, caplog):
    vae = tiny_taesd(tmp_path / "taesd")
    latents = torch.randn(2, 4, 9, 8)
    with torch.no_grad():
        decoded = ((vae.decode(latents).sample.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pictures = TinyVaePreviewer.load(str(tmp_path / "taesd")).pictures(latents, (64, 72))
    assert [picture.size for picture in pictures] == [(64, 72)] * 2  # the latents' 8x
    assert np.array_equal(np.asarray(pictures[1]), decoded[1].permute(1, 2, 0).numpy())

    request = GenerationRequest("txt2img", "a red circle", seed=1, steps=10, width=64, height=72)
    seen = []
    demo_manager.set_previews("taesd", 5, str(tmp_path / "taesd"))
    try:
        demo_manager.generate_together([request], on_preview=lambda index, picture, seen=seen: seen.append(picture))
    finally:
        demo_manager.set_previews("approx", 5)
    assert [picture.size for picture in seen] == [(64, 72)]
    approx = demo_manager.previewer.pictures(torch.zeros(1, 4, 9, 8), (64, 72))[0]
    assert not np.array_equal(np.asarray(seen[0]), np.asarray(approx))


def test_taesd_that_cannot_load_falls_back_to_approx_and_says_why(demo_manager, tmp_path, caplog):
    tiny_taesd(tmp_path / "pickled", weights="pickle")  # .bin weights are never unpickled
    request = GenerationRequest("txt2img", "a red circle", seed=1, steps=6, width=64, height=64)
    for spec in (str(tmp_path / "pickled"), str(tmp_path / "missing")):
        seen = []
        demo_manager.set_previews("taesd", 5, spec)
        try:
            demo_manager.generate_together([request], on_preview=lambda index, picture, seen=seen: seen.append(picture))
        finally:
            demo_manager.set_previews("approx", 5)
        assert demo_manager.tiny_vae is None and len(seen) == 1, "approx previews instead"
        assert f"live previews: taesd {spec!r} could not be loaded" in caplog.text


def test_rest_progress_has_a_preview_of_the_generation_size_while_running_and_none_when_idle(app_server):
    url, service = app_server
    worker = threading.Thread(target=lambda: requests.post(f"{url}/sdapi/v1/txt2img", timeout=120, json={
        "prompt": "slow", "steps": 150, "width": 128, "height": 96}))
    worker.start()

    def progress() -> dict:
        return requests.get(f"{url}/sdapi/v1/progress", timeout=5).json()

    assert until(lambda: progress()["current_image"] is not None, seconds=60)
    now = progress()
    preview = Image.open(io.BytesIO(base64.b64decode(now["current_image"])))
    assert preview.format == "PNG" and preview.size == (128, 96) and now["state"]["sampling_step"] >= 5
    service.interrupt()
    worker.join(timeout=60)
    assert progress()["current_image"] is None


def test_a_submitted_gradio_client_job_yields_previews_before_its_result(client):
    job = client.submit(prompt="a red circle", seed=1, steps=40, width=128, height=128, api_name="/txt2img")
    gallery, infotext, _, = job.result()[:3]
    outputs = job.outputs()
    previews = [output for output in outputs[:-1] if output[1] == ""]
    assert len(previews) >= 2, len(outputs)
    assert all(Image.open(output[0][0]["image"]).size == (128, 128) for output in previews)
    assert infotext.startswith("a red circle\nSteps: 40") and outputs[-1][1] == infotext
