"""The service's one job queue: first come, first served, bounded, cancellable; REST clients that go away
free their place; Ctrl+C ends the server at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from service.queue import Cancelled, JobQueue, QueueFull
from testing.ports import free_port
from tests.conftest import ROOT


def until(condition, seconds: float = 10) -> bool:
    """Wait for `condition()` to hold, at most `seconds`; whether it did."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Gate:
    """Work that runs until released or interrupted (an interrupt stops the job running then), recording the order
    jobs ran in and the interrupts."""

    def __init__(self):
        self.order, self.interrupts = [], 0
        self.release, self._stop = threading.Event(), threading.Event()

    def interrupt(self, call=()) -> None:
        self.interrupts += 1
        self._stop.set()

    def work(self, name):
        def run(job):
            self.order.append(name)
            while not self.release.is_set():
                if self._stop.is_set():
                    self._stop.clear()
                    return f"{name} stopped"
                time.sleep(0.01)
            return name

        return run


def test_first_come_first_served_bounded_and_cancellable():
    gate = Gate()
    queue = JobQueue(max_waiting=2, interrupt=gate.interrupt)
    running = queue.submit(gate.work("a"))
    assert until(lambda: queue.running == (running,))
    b, c = queue.submit(gate.work("b")), queue.submit(gate.work("c"))
    with pytest.raises(QueueFull, match="2 jobs are waiting"):
        queue.submit(gate.work("d"))
    queue.cancel(b)  # a waiting job leaves the queue at once
    assert b.wait(0) and b.state == "cancelled" and queue.waiting == 1
    with pytest.raises(Cancelled):
        b.outcome()
    gate.release.set()
    assert running.outcome() == "a" and c.outcome() == "c" and gate.order == ["a", "c"]


def test_cancelling_the_running_job_interrupts_it_and_close_ends_everything():
    gate = Gate()
    queue = JobQueue(max_waiting=4, interrupt=gate.interrupt)
    running = queue.submit(gate.work("a"))
    assert until(lambda: queue.running == (running,))
    waiting = queue.submit(gate.work("b"))
    queue.cancel(running)  # stops at its next step
    assert running.wait(5) and running.state == "cancelled" and gate.interrupts == 1
    assert until(lambda: queue.running == (waiting,))
    queue.close()  # the running job is stopped, nothing more is taken
    assert waiting.outcome() == "b stopped" and gate.interrupts == 2 and gate.order == ["a", "b"]
    with pytest.raises(Cancelled, match="shutting down"):
        queue.submit(gate.work("c"))


def test_a_rest_client_that_goes_away_frees_its_place(app_server):
    """Six clients give up after half a second on slow jobs; the next job starts at once, not after theirs."""
    url, service = app_server
    slow = {"prompt": "slow", "steps": 150, "width": 256, "height": 256}
    for _ in range(6):
        with pytest.raises(requests.exceptions.Timeout):
            requests.post(f"{url}/sdapi/v1/txt2img", json=slow, timeout=0.5)
    until(lambda: not service.queue.running and not service.queue.waiting, seconds=30)
    assert not service.queue.running and service.queue.waiting == 0, "every abandoned job was dropped"
    started = time.monotonic()
    response = requests.post(f"{url}/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, "width": 64,
                                                               "height": 64}, timeout=60)
    assert response.status_code == 200 and time.monotonic() - started < 10


def test_cancelled_gradio_client_jobs_free_their_places(app_server, client):
    """A running job and two waiting ones are cancelled by their gradio_client jobs: all three leave the queue, and
    the next job starts at once."""
    service = app_server[1]
    slow = {"prompt": "slow", "steps": 150, "width": 256, "height": 256}
    jobs = [client.submit(**slow, api_name="/txt2img") for _ in range(3)]
    assert until(lambda: len(service.queue.running) + service.queue.waiting == 3, seconds=30)
    for job in jobs:
        job.cancel()
    assert until(lambda: not service.queue.running and not service.queue.waiting, seconds=30), \
        service.queue_metrics()
    started = time.monotonic()
    client.predict(prompt="x", steps=2, width=64, height=64, api_name="/txt2img")
    assert time.monotonic() - started < 10


@pytest.mark.server  # starts the app in a subprocess
def test_ctrl_c_ends_the_server_within_seconds_after_rest_calls_and_with_a_job_running(tmp_path):
    """Ctrl+C with a REST job running and one waiting: the running one answers with its image as it stands, the
    waiting one 503 saying why, and the server exits cleanly (status 0, no traceback, no abort) within 10 s."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "app.py", "--model", "demo", "--device", "cpu", "--port", str(port), "--api",
         "--output-dir", str(tmp_path / "outputs"), "--lora-dir", str(tmp_path / "Lora"),
         "--controlnet-dir", str(tmp_path / "ControlNet"), "--embeddings-dir", str(tmp_path / "embeddings")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "SD_API_AUTH": ""})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/sdapi/v1/options", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        small = {"prompt": "x", "steps": 1, "width": 64, "height": 64}
        assert requests.post(f"{url}/sdapi/v1/txt2img", json=small, timeout=60).status_code == 200
        answers: dict = {}

        def post(name: str) -> None:
            answers[name] = requests.post(f"{url}/sdapi/v1/txt2img", timeout=120,
                                          json={**small, "steps": 150, "width": 256, "height": 256})

        threading.Thread(target=post, args=("running",), daemon=True).start()
        assert until(lambda: requests.get(f"{url}/sdapi/v1/progress", timeout=5).json()["state"]["job"] != "", 60)
        threading.Thread(target=post, args=("waiting",), daemon=True).start()
        assert until(lambda: requests.get(f"{url}/studio/v1/queue", timeout=5).json()["waiting"] == 1, 30)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=10)
        assert time.monotonic() - started < 10
        assert process.returncode == 0, output[-3000:]
        assert "Traceback" not in output and "terminate called" not in output, output[-3000:]
        assert until(lambda: len(answers) == 2, 10), answers
        assert answers["running"].status_code == 200, answers["running"].text[:300]
        assert "interrupted" in json.loads(answers["running"].json()["info"])["warnings"][0]
        assert answers["waiting"].status_code == 503
        assert answers["waiting"].json()["detail"] == "the job was cancelled: the server is shutting down"
    finally:
        if process.poll() is None:
            process.kill()
