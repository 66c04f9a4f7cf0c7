"""--backend ray: the app's queue hands its calls to Ray Serve replicas on a local cluster (2 replicas,
one CPU each, on the demo model). Results equal the local backend's; calls with a LoRA set stay on the replica that
has it; progress and interrupt reach the replica; a replica killed mid-run has its call retried on the other, which
goes on serving, and Ray replaces the lost one; Ray's backpressure is the queue's 503."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import ray
import requests
import torch
from PIL import Image
from ray.serve.exceptions import BackPressureError

from models.request import GenerationRequest
from service.queue import QueueFull
from service.ray_backend import RayBackend
from testing.ports import free_port
from tests.conftest import DEMO
from tests.test_queue import until

SMALL = {"steps": 4, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def ray_app(tmp_path_factory):
    from diffusers import StableDiffusionInpaintPipeline

    import app
    from testing.lora_files import make_lora

    lora_dir = tmp_path_factory.mktemp("Lora")
    demo = StableDiffusionInpaintPipeline.from_pretrained(DEMO, safety_checker=None)
    make_lora(demo, lora_dir / "ink.safetensors", seed=7)  # the app_server's "ink", byte for byte
    config = app.parse_config(
        ["--model", "demo", "--device", "cpu", "--port", str(free_port()), "--api", "on", "--backend", "ray",
         "--replicas", "2", "--lora-dir", str(lora_dir), "--controlnet-dir", str(tmp_path_factory.mktemp("cn")),
         "--embeddings-dir", str(tmp_path_factory.mktemp("embeddings")),
         "--output-dir", str(tmp_path_factory.mktemp("outputs"))], environ={})
    server, service = app.start_in_background(config)
    yield f"http://{config.host}:{config.port}", service
    service.close()
    app.stop_in_background(server)


def txt2img(url: str, body: dict, timeout: float = 120) -> requests.Response:
    return requests.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=timeout)


def image_and_infotext(response: requests.Response) -> tuple[np.ndarray, str]:
    assert response.status_code == 200, response.text
    data = response.json()
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["images"][0]))))
    return image, json.loads(data["info"])["infotexts"][0]


def metrics(url: str) -> dict:
    return requests.get(f"{url}/studio/v1/queue", timeout=10).json()


def replica_names() -> set[str]:
    return {actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
            if "StudioReplica" in actor["name"]}


def test_a_replicas_results_equal_the_local_backends(ray_app, app_server):
    """The local backend (the app_server's, with the same LoRA) runs each request here, in this thread, with the
    replica's arithmetic: one torch thread, as a one-CPU replica has (on the CPU, the thread count moves the demo
    model's pixels by up to 17/255; OpenMP's count is per thread, so the queue's worker would keep its own)."""
    local = app_server[1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for fields in ({"prompt": "a red circle", "seed": 5, "sampler": "DPM++ 2M", **SMALL},
                       {"prompt": "a blue square <lora:ink:0.8>", "negative_prompt": "(blurry:1.3)", "seed": 6,
                        **SMALL}):
            body = {("sampler_name" if key == "sampler" else key): value for key, value in fields.items()}
            on_ray, ray_infotext = image_and_infotext(txt2img(ray_app[0], body))
            generation = local.generate(*local.build("txt2img", fields))
            alone = np.asarray(Image.open(generation.files[0]))
            assert np.array_equal(on_ray, alone) and ray_infotext == generation.infotexts[0], fields["prompt"]
    finally:
        torch.set_num_threads(threads)


def test_calls_with_a_lora_set_stay_on_the_replica_that_has_it(ray_app):
    url = ray_app[0]
    before = metrics(url)["calls_by_replica"]
    for seed in range(3):
        image_and_infotext(txt2img(url, {"prompt": f"ink {seed} <lora:ink:0.6>", "seed": seed, **SMALL}))
    after = metrics(url)["calls_by_replica"]
    grown = [after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)]
    assert grown == [3], (before, after)


def test_progress_and_interrupt_reach_the_replica(ray_app):
    url = ray_app[0]
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=txt2img(url, {"prompt": "slow", "steps": 150,
                                                                           "width": 128, "height": 128})))
    worker.start()
    def progress() -> dict:
        return requests.get(f"{url}/sdapi/v1/progress", timeout=5).json()

    assert until(lambda: progress()["progress"] > 0 and progress()["current_image"] is not None, seconds=60)
    now = progress()
    assert 0 < now["progress"] < 1 and now["state"]["sampling_steps"] == 150
    assert Image.open(io.BytesIO(base64.b64decode(now["current_image"]))).size == (128, 128), "the replica's preview"
    started = time.monotonic()
    requests.post(f"{url}/sdapi/v1/interrupt", timeout=5)
    worker.join(timeout=60)
    assert time.monotonic() - started < 10
    assert result["r"].status_code == 200
    assert any("interrupted" in warning for warning in json.loads(result["r"].json()["info"])["warnings"])


def test_a_killed_replica_has_its_call_retried_the_other_serves_and_ray_replaces_it(ray_app):
    url = ray_app[0]
    names = replica_names()
    assert len(names) == 2
    responses = {}
    slow = {"prompt": "slow", "steps": 60, "width": 128, "height": 128}
    workers = [threading.Thread(target=lambda i=i: responses.update({i: txt2img(url, {**slow, "seed": i})}))
               for i in range(2)]
    for worker in workers:
        worker.start()
    assert until(lambda: metrics(url)["running_by_replica"], seconds=60)
    busy = next(iter(metrics(url)["running_by_replica"])).split()[0]  # "<replica id> (pid N)"
    victim = next(name for name in names if name.endswith(busy))
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    for worker in workers:
        worker.join(timeout=120)
    statuses = sorted(response.status_code for response in responses.values())
    assert statuses in ([200, 200], [200, 503]), [response.text for response in responses.values()]
    if statuses == [200, 200]:
        assert metrics(url)["retried_calls"] >= 1, "the lost call ran again on the other replica"
    else:
        assert "lost" in next(r.json()["detail"] for r in responses.values() if r.status_code == 503)
    assert until(lambda: len(replica_names()) == 2 and victim not in replica_names(), seconds=90), replica_names()
    image_and_infotext(txt2img(url, {"prompt": "after", "seed": 1, **SMALL}))


def test_rays_backpressure_is_the_queues_503():
    class Refusing:
        def options(self, **_):
            return self

        @property
        def run(self):
            return self

        def remote(self, *_):
            raise BackPressureError(num_queued_requests=4, max_queued_requests=4)

    backend = RayBackend.__new__(RayBackend)  # only what `run` touches: no cluster needed for this mapping
    backend.handle, backend.model, backend.extensions = Refusing(), "demo", []
    request = GenerationRequest("txt2img", "x")
    outcomes = backend.run([(request, [])] * 2, lambda done, total: None, lambda index, picture: None,
                           threading.Event())
    assert len(outcomes) == 2 and all(isinstance(outcome, QueueFull) for outcome in outcomes)
