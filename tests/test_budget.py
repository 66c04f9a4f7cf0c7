"""The work budget: a job's cost estimated before it runs (its FLOPs at its size, counted from the model's own layers,
times this device's measured seconds per FLOP), a job over --max-job-seconds refused at once with what to lower, and
Interrupt acting inside a step."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from models.limits import TooLarge
from models.request import GenerationRequest, Pass
from service.studio import StudioService, duration


@pytest.fixture(scope="module")
def calibrated(demo_manager):
    demo_manager.calibrate()
    return demo_manager


@pytest.mark.slow
@pytest.mark.parametrize("side", [256, 320])
def test_the_estimate_follows_the_measured_time(calibrated, side):
    request = GenerationRequest("txt2img", "a red circle", width=side, height=side, steps=3, seed=1)
    estimate = calibrated.estimate(request)
    started = time.perf_counter()
    calibrated.generate(request)
    taken = time.perf_counter() - started
    assert 0.5 < taken / estimate < 2, (taken, estimate)


def test_attention_makes_large_sizes_cost_more_than_their_pixels(calibrated):
    step = calibrated.cost.growth()[0]
    assert step.quadratic > 0, "self-attention's cost grows with the square of the pixels"
    assert step.at(2048 ** 2) / step.at(512 ** 2) > 16 * 2, "16x the pixels, more than 32x the work"


def test_hires_fix_adds_its_second_pass(calibrated):
    request = GenerationRequest("txt2img", "x", width=256, height=256, steps=10, seed=1)
    alone = calibrated.estimate(request)
    assert calibrated.estimate(request, [Pass(512, 512, 10)]) > 4 * alone


def test_a_job_over_the_limit_is_refused_at_once_saying_what_to_lower(calibrated, tmp_path):
    service = StudioService(calibrated, tmp_path, max_job_seconds=600)
    started = time.perf_counter()
    with pytest.raises(TooLarge) as refused:
        service.build("txt2img", {"prompt": "x", "width": 2048, "height": 2048, "batch_size": 2})
    assert time.perf_counter() - started < 1
    message = str(refused.value)
    assert message.startswith("txt2img at 2048x2048, 20 steps, batch size 2 would take about ")
    assert "on this cpu; a job may take at most 10 min here (--max-job-seconds): lower the width and height " \
           "(about " in message and "at 64x64), the steps or the batch size" in message
    service.build("txt2img", {"prompt": "x", "width": 256, "height": 256})  # within the budget


def test_without_a_limit_a_far_size_is_warned_about_with_its_time(calibrated, tmp_path):
    service = StudioService(calibrated, tmp_path)
    _, warnings = service.build("txt2img", {"prompt": "x", "width": 512, "height": 512})
    assert any("far beyond this model's native 64x64" in warning and "(this job: about " in warning
               for warning in warnings), warnings


def test_durations_read_as_people_say_them():
    assert [duration(seconds) for seconds in (0.2, 40, 150, 3600, 8400)] == ["1 s", "40 s", "2 min", "60 min",
                                                                             "2 h 20 min"]


@pytest.mark.slow  # a step at 640 px takes seconds on the CPU: long enough to interrupt inside it
def test_interrupt_stops_a_job_inside_its_step(calibrated):
    request = GenerationRequest("txt2img", "a red circle", width=640, height=640, steps=10, seed=1)
    step_seconds = calibrated.estimate(request.replace(steps=1))
    done: list[float] = []
    stopped: dict = {}

    def interrupt_inside_the_second_step():
        while not done:
            time.sleep(0.01)
        time.sleep(0.2 * step_seconds)
        stopped["at"] = time.perf_counter()
        calibrated.interrupt()

    threading.Thread(target=interrupt_inside_the_second_step, daemon=True).start()
    result = calibrated.generate(request, on_step=lambda step, total: done.append(step))
    after = time.perf_counter() - stopped["at"]
    assert result.interrupted and done == [1], "the second step never ended"
    assert after < 0.8 * step_seconds, (after, step_seconds)  # not the step's end: inside it (and then its decode)
    assert result.images[0].size == (640, 640)


def test_a_rest_job_over_the_budget_is_a_413_at_once(app_server):
    url = app_server[0]
    started = time.perf_counter()
    response = requests.post(f"{url}/sdapi/v1/txt2img", json={"prompt": "x", "width": 2048, "height": 2048},
                             timeout=30)
    assert response.status_code == 413 and time.perf_counter() - started < 5
    assert "txt2img at 2048x2048, 20 steps, batch size 1 would take about" in response.json()["detail"]
