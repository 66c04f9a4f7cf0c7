"""Batching compatible requests: the queue gathers them, the manager runs them as one diffusers call, and
each request still gets its own images, seeds and infotexts, within BATCH_TOLERANCE of its solo result; incompatible
requests run alone."""

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

from models.request import GenerationRequest
from models.sampler_names import BATCH_TOLERANCE, BATCHING_SAMPLERS
from service.queue import JobQueue
from tests.test_queue import Gate, until

SMALL = {"width": 64, "height": 64, "steps": 4}


def max_diff(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())


# -- the queue ---------------------------------------------------------------------------------------------------

class Together:
    """A run_together that records the groups it ran and answers each job with its payload."""

    def __init__(self):
        self.groups = []

    def __call__(self, jobs):
        self.groups.append([job.payload for job in jobs])
        return [job.payload for job in jobs]


def test_compatible_jobs_run_together_up_to_max_batch_images_and_others_alone():
    gate, together = Gate(), Together()
    queue = JobQueue(max_waiting=16, interrupt=gate.interrupt, max_batch=4, run_together=together)
    blocker = queue.submit(gate.work("blocker"))
    assert until(lambda: queue.running == (blocker,))
    jobs = [queue.submit(lambda job: job.payload, key=key, size=size, payload=name)
            for name, key, size in [("a1", "A", 1), ("a2", "A", 2), ("b1", "B", 1), ("a3", "A", 1),
                                    ("a4", "A", 1), ("solo", None, 1)]]
    gate.release.set()
    assert [job.outcome() for job in jobs] == ["a1", "a2", "b1", "a3", "a4", "solo"]
    # a1 + a2 + a3 make 4 images; b1 then runs alone (no other B), and so do a4 and the keyless job
    assert together.groups == [["a1", "a2", "a3"]]
    assert [job.together for job in jobs] == [3, 3, 1, 3, 1, 1]
    assert queue.calls == {1: 4, 3: 1}


def test_a_job_waits_batch_wait_for_company_and_a_full_batch_does_not_wait():
    together = Together()
    queue = JobQueue(max_waiting=16, interrupt=lambda call: None, max_batch=2, batch_wait=0.5, run_together=together)
    first = queue.submit(lambda job: job.payload, key="A", payload="first")
    time.sleep(0.1)
    second = queue.submit(lambda job: job.payload, key="A", payload="second")
    assert first.outcome() == "first" and second.outcome() == "second"
    assert together.groups == [["first", "second"]]
    started = time.monotonic()
    pair = [queue.submit(lambda job: job.payload, key="B", size=2, payload="pair")]
    assert pair[0].outcome() == "pair" and time.monotonic() - started < 0.4, "two images fill max_batch at once"


def test_cancelling_one_job_of_a_running_batch_leaves_the_others_and_cancelling_all_stops_it():
    stop, interrupts = threading.Event(), []

    def together(jobs):
        stop.wait(10)
        return [job.payload for job in jobs]

    def interrupt(call):
        interrupts.append(len(call))
        stop.set()

    queue = JobQueue(max_waiting=16, interrupt=interrupt, max_batch=4, batch_wait=5, run_together=together)
    jobs = [queue.submit(lambda job: job.payload, key="A", payload=name) for name in ("a", "b", "c", "d")]
    assert until(lambda: len(queue.running) == 4)
    queue.cancel(jobs[0])
    assert not interrupts, "the others in the call still want their images"
    for job in jobs[1:]:
        queue.cancel(job)
    assert interrupts == [4] and all(job.wait(5) for job in jobs)
    assert [job.state for job in jobs] == ["cancelled"] * 4


# -- the manager: one call, each image as alone ------------------------------------------------------------------

# A Karras variant runs its sampler's code on another list of sigmas: its base stands for it, except A1111's most
# used sampler, DPM++ 2M Karras, and DPM2 a Karras (its base does not batch). bench/batching.py measures them all.
KARRAS_STAND_INS = {"DPM++ 2M SDE Karras", "DPM++ SDE Karras", "DPM2 Karras", "LMS Karras"}


@pytest.mark.slow  # every sampler, batched and alone
def test_every_batching_sampler_stays_within_the_tolerance(demo_manager):
    """Each batching sampler's batched images against their solo results (the figures for every sampler, and why
    DPM2 a and LCM do not batch, are bench/batching.py's)."""
    for sampler in sorted(BATCHING_SAMPLERS - KARRAS_STAND_INS):
        requests_ = [GenerationRequest("txt2img", prompt, negative_prompt=negative, seed=seed, batch_size=size,
                                       sampler=sampler, **SMALL)
                     for prompt, negative, seed, size in [("a red circle", "", 5, 1), ("a blue square", "blurry", 9, 2),
                                                          ("a green triangle", "", 100, 1)]]
        together = demo_manager.generate_together(requests_)
        alone = [demo_manager.generate(request) for request in requests_]
        assert [result.seeds for result in together] == [[5], [9, 10], [100]]
        for solo, joint in zip(alone, together):
            assert all(max_diff(a, b) <= BATCH_TOLERANCE for a, b in zip(solo.images, joint.images)), sampler


def test_img2img_and_inpaint_requests_with_their_own_images_and_masks_batch(demo_manager):
    rng = np.random.default_rng(3)
    pictures = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    masks = [Image.new("L", (64, 64), 0), Image.new("L", (64, 64), 0)]
    masks[0].paste(255, (8, 8, 40, 40))
    masks[1].paste(255, (30, 20, 60, 50))
    for mode in ("img2img", "inpaint"):
        requests_ = [GenerationRequest(mode, f"shape {i}", seed=20 + i, image=picture, mask=mask, strength=0.8,
                                       **SMALL)
                     for i, (picture, mask) in enumerate(zip(pictures, masks))]
        together = demo_manager.generate_together(requests_)
        for request, joint in zip(requests_, together):
            assert max_diff(demo_manager.generate(request).images[0], joint.images[0]) <= BATCH_TOLERANCE, mode


# -- the app: 8 clients at once ----------------------------------------------------------------------------------

def rest_txt2img(url: str, body: dict) -> tuple[Image.Image, str]:
    answer = requests.post(f"{url}/sdapi/v1/txt2img", json=body, timeout=300)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    return Image.open(io.BytesIO(base64.b64decode(data["images"][0]))), json.loads(data["info"])["infotexts"][0]


def test_eight_clients_run_batched_each_with_its_solo_result_and_incompatible_ones_alone(app_server, client):
    url, service = app_server
    bodies = [{"prompt": f"shape number {i}", "seed": 40 + i, **SMALL} for i in range(8)]
    odd = [{"prompt": "more steps", "seed": 1, "width": 64, "height": 64, "steps": 5},
           {"prompt": "other sampler", "seed": 2, "sampler_name": "DDIM", **SMALL}]
    before = requests.get(f"{url}/studio/v1/queue", timeout=10).json()["calls_by_jobs"]
    results, errors = {}, []

    def rest(index, body):
        try:
            results[index] = rest_txt2img(url, body)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def gradio(index, body):
        try:
            gallery, infotext, _ = client.predict(**body, api_name="/txt2img")
            results[index] = Image.open(gallery[0]["image"]), infotext
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    # a long job holds the model while the ten arrive, so they all wait together
    blocker = threading.Thread(target=rest, args=("blocker", {"prompt": "hold", "steps": 150, "width": 256,
                                                              "height": 256}))
    blocker.start()
    assert until(lambda: service.queue.running, seconds=30)
    threads = [threading.Thread(target=gradio if i % 2 else rest, args=(i, body)) for i, body in enumerate(bodies)]
    threads += [threading.Thread(target=rest, args=(f"odd{i}", body)) for i, body in enumerate(odd)]
    for thread in threads:
        thread.start()
    assert until(lambda: service.queue.waiting == 10, seconds=60), service.queue_metrics()
    service.interrupt()  # the blocker ends now
    for thread in [blocker, *threads]:
        thread.join(timeout=300)
    assert not errors
    after = requests.get(f"{url}/studio/v1/queue", timeout=10).json()["calls_by_jobs"]
    ran = {jobs: after.get(jobs, 0) - before.get(jobs, 0) for jobs in after}
    assert ran.get("4") == 2, "the eight compatible requests ran as two calls of four (--max-batch 4)"
    assert ran.get("1") == 3, "the blocker and the two incompatible requests ran alone"
    for index, body in enumerate(bodies):
        image, infotext = results[index]
        alone, alone_infotext = rest_txt2img(url, body)
        assert max_diff(image, alone) <= BATCH_TOLERANCE, index
        assert infotext == alone_infotext and f"Seed: {body['seed']}," in infotext
        assert infotext.startswith(body["prompt"])


def test_the_batch_key_parts_lora_sets_and_keeps_controlnet_requests_alone(app_server):
    service = app_server[1]

    def key(**fields):
        return service.batch_key(service.build("txt2img", {"prompt": "x", **SMALL, **fields})[0])

    assert key(prompt="a <lora:ink:0.5>") == key(prompt="other words <lora:ink:0.5>", seed=3, negative_prompt="n")
    assert key(prompt="a <lora:ink:0.5>") != key(prompt="a <lora:ink:1>") != key()
    assert key(clip_skip=2) != key() and key(steps=5) != key() and key(guidance_scale=3) != key()
    assert key(sampler="LCM") is None and key(sampler="DPM2 a") is None, "they move batched pixels too far"
    edges = Image.new("RGB", (64, 64), "white")
    assert key(controlnet_units=[{"module": "none", "model": "edges", "image": edges}]) is None
    assert key() is not None


@pytest.mark.slow  # four requests batched, then each alone
def test_prompts_encoded_differently_share_a_batch_key_but_run_in_separate_calls(tmp_path, caplog):
    from extensions.prompts import Prompts
    from models.manager import PipelineManager
    from service.studio import StudioService

    service = StudioService(PipelineManager.load("demo", device="cpu"), tmp_path / "outputs",
                            [Prompts(tmp_path / "embeddings")], max_batch=4, batch_wait=5)
    prompts = ["a red circle", "a (red:1.4) circle", "a blue square", ", ".join(["a red circle"] * 20)]
    built = [service.build("txt2img", {"prompt": prompt, "seed": 3, **SMALL}) for prompt in prompts]
    assert len({service.batch_key(request) for request, _ in built}) == 1
    with caplog.at_level("INFO", logger="models.manager"):
        jobs = [service.submit(request, warnings) for request, warnings in built]
        together = [job.outcome() for job in jobs]
    assert "4 requests need 3 calls" in caplog.text, "the two plain prompts share one call"
    assert {job.together for job in jobs} == {4}
    for (request, warnings), joint in zip(built, together):
        alone = service.generate(request, warnings)
        assert max_diff(Image.open(alone.files[0]), Image.open(joint.files[0])) <= BATCH_TOLERANCE
        assert alone.infotexts == joint.infotexts


def test_when_a_shared_call_fails_each_job_runs_alone_and_only_the_bad_one_fails(demo_manager, tmp_path,
                                                                                  monkeypatch):
    """A job whose input fails only inside the diffusers call (or whose company makes the call too big) must not
    fail the other jobs of its batch."""
    from service.studio import Composed, StudioService

    service = StudioService(demo_manager, tmp_path / "outputs", max_batch=4)
    real, calls = demo_manager.generate_together, []

    def generate_together(requests, *args):
        calls.append([request.prompt for request in requests])
        if "poison" in calls[-1]:
            raise TypeError("the tokenizer cannot read it")
        return real(requests, *args)

    monkeypatch.setattr(demo_manager, "generate_together", generate_together)
    payloads = [service.build("txt2img", {"prompt": prompt, "seed": 3, **SMALL}) for prompt in ("a", "poison", "b")]
    outcomes = service.compose_together(payloads)
    assert calls == [["a", "poison", "b"], ["a"], ["poison"], ["b"]]
    assert isinstance(outcomes[0], Composed) and isinstance(outcomes[2], Composed)
    assert isinstance(outcomes[1], TypeError)
    service.close()
