"""Running out of device memory, injected: in the VAE decode the latents are decoded again in
tiles; in the U-Net the job fails with a message saying what to lower (413 through REST); either way the next job
works and the memory is given back."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import requests
import torch

from models.manager import OutOfMemory
from models.request import GenerationRequest

REQUEST = GenerationRequest("txt2img", "a red circle on a blue background", seed=5, steps=4, width=64, height=64)


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=int)


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def unet_failing_at(monkeypatch, unet, call: int) -> None:
    real, calls = unet.forward, []

    def forward(*args, **kwargs):
        calls.append(1)
        if len(calls) >= call:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(unet, "forward", forward)


def test_out_of_memory_in_the_decode_decodes_again_in_tiles(demo_manager, monkeypatch, caplog):
    expected = pixels(demo_manager.generate(REQUEST))
    vae = demo_manager.pipelines["txt2img"].vae
    real, tried = vae.decode, []

    def decode(*args, **kwargs):
        tried.append(vae.use_tiling)
        if not vae.use_tiling:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(vae, "decode", decode)
    with caplog.at_level(logging.WARNING):
        result = demo_manager.generate(REQUEST)
    assert tried == [False, True] and "out of memory decoding 64x64: decoding again in tiles" in caplog.text
    assert np.array_equal(pixels(result), expected)  # at 64 px one tile is the whole picture
    assert vae.use_tiling is False, "tiling was only for the retry"


@pytest.mark.slow  # a job at a size that runs out of memory
def test_out_of_memory_in_the_unet_says_what_to_lower_and_the_next_job_works(demo_manager, monkeypatch):
    expected = pixels(demo_manager.generate(REQUEST))
    unet = demo_manager.pipelines["txt2img"].unet
    before = None
    for attempt in range(6):
        with monkeypatch.context() as patch:
            unet_failing_at(patch, unet, call=3)
            with pytest.raises(OutOfMemory, match=r"^out of memory on cpu at 64x64 with 1 image in one call: lower "
                                                  r"the width and height, the batch size or the number of ControlNet"):
                demo_manager.generate(REQUEST)
        assert np.array_equal(pixels(demo_manager.generate(REQUEST)), expected)
        if attempt == 0:
            before = rss_mib()
    assert rss_mib() - before < 30, "the failed calls' memory was given back"


def test_rest_answers_413_with_the_message_and_serves_the_next_request(app_server, monkeypatch):
    unet = app_server[1].manager.pipelines["txt2img"].unet
    body = {"prompt": "x", "steps": 2, "width": 64, "height": 64}
    with monkeypatch.context() as patch:
        unet_failing_at(patch, unet, call=1)
        response = requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json=body, timeout=60)
    assert response.status_code == 413 and "out of memory on cpu at 64x64" in response.json()["detail"]
    assert requests.post(f"{app_server[0]}/sdapi/v1/txt2img", json=body, timeout=60).status_code == 200


@pytest.mark.slow
def test_out_of_memory_while_training_says_what_to_lower_and_leaves_the_model_as_it_was(monkeypatch, tmp_path):
    from PIL import Image

    from extensions.lora import Lora
    from extensions.train import Train
    from models.manager import PipelineManager
    from service.studio import StudioService

    manager = PipelineManager.load("demo", device="cpu")
    service = StudioService(manager, tmp_path / "outputs", [Lora(tmp_path / "Lora"), Train(tmp_path / "Lora",
                                                                                            tmp_path / "runs")])
    Image.new("RGB", (64, 64), "blue").save(tmp_path / "one.png")
    expected = pixels(manager.generate(REQUEST))
    unet = manager.pipelines["txt2img"].unet
    with monkeypatch.context() as patch:
        unet_failing_at(patch, unet, call=3)
        with pytest.raises(OutOfMemory, match=r"^out of memory training at 64x64 with batch size 2: lower the batch "
                                              r"size or the resolution, or turn on gradient checkpointing"):
            service.extension("train").train([str(tmp_path / "one.png")], "a sks circle", "too-big", steps=5,
                                             batch_size=2)
    assert not any("in_training" in name for name, _ in unet.named_modules()), "the adapter was removed"
    assert np.array_equal(pixels(manager.generate(REQUEST)), expected)
