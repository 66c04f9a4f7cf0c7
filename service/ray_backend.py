"""--backend ray: the queue's calls run on a Ray Serve deployment of replicas, each holding its own pipeline
manager (one GPU each on a GPU cluster, one CPU each otherwise).

The app stays the one front end (Gradio UI and REST API): its queue gathers and batches jobs as with the local
backend, and hands each call to a Ray Serve handle, never to Ray's HTTP proxy. Ray places the call:
`serve.multiplexed` sends it to a replica that already has its base model and LoRA set loaded. A replica runs the
call as the local backend does (StudioService.compose_together) and streams back each step, then the images and
infotexts, which the front saves. Interrupt reaches the replica through a small board actor it watches; a replica
that dies mid-call has the call retried once on another; Ray's own backpressure (max_queued_requests) is the
queue's 503.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ray
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError

from service.queue import QueueFull, Unavailable
from service.studio import PreviewCallback, StepCallback, Submission

logging.getLogger("xformers").setLevel(logging.ERROR)  # replicas import diffusers (and xformers) with this module

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "sd-studio"
POLL_SECONDS = 0.05  # how often a running replica looks at the board for a stop
LORA_SETS_PER_REPLICA = 8  # the LoRA sets serve.multiplexed remembers a replica having loaded
LOST = (ActorDiedError, ActorUnavailableError, RayActorError)


@ray.remote(num_cpus=0)
class StopBoard:
    """The calls the front asked to stop, by token."""

    def __init__(self):
        self.tokens: set[str] = set()

    def stop(self, token: str) -> None:
        self.tokens.add(token)

    def stopped(self, token: str) -> bool:
        return token in self.tokens

    def forget(self, token: str) -> None:
        self.tokens.discard(token)


class StudioReplica:
    """One replica: the app's model and extensions, built from the app's config, running one call at a time."""

    def __init__(self, config, device: str, board):
        logging.getLogger("xformers").setLevel(logging.ERROR)
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        from extensions import create
        from models.manager import load_or_demo
        from service.studio import StudioService, with_settings

        if device == "cpu":  # torch would take every core of the machine, and the replicas would fight over them
            import torch

            torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        diffusers_logging.disable_progress_bar()  # a loading bar per component, in the app's log
        transformers_logging.disable_progress_bar()
        manager, _ = load_or_demo(config.model, device, config.offload if device != "cpu" else "none")
        self.service = StudioService(manager, config.output_dir, create(config.extension_settings()), direct=True,
                                     after_install=lambda manager: with_settings(manager, config))
        self.board = board
        self.executor = ThreadPoolExecutor(1)
        self.name = f"{serve.get_replica_context().replica_id.unique_id} (pid {os.getpid()})"

    @serve.multiplexed(max_num_models_per_replica=LORA_SETS_PER_REPLICA)
    async def lora_set(self, model_id: str) -> str:
        # The LoRA extension loads adapters on first use and keeps them (its own LRU); this only tells Ray's router
        # that this replica has the set, so the next call with it comes here.
        return model_id

    async def run(self, submissions: Sequence[Submission], token: str):
        """Streams ("start", replica name), ("step", done, total) and ("preview", job index, picture) as the call
        advances, then ("done", outcomes, seconds)."""
        await self.lora_set(serve.get_multiplexed_model_id())
        yield "start", self.name
        loop = asyncio.get_running_loop()
        steps: asyncio.Queue = asyncio.Queue()

        def on_step(done: int, total: int) -> None:
            loop.call_soon_threadsafe(steps.put_nowait, ("step", done, total))

        def on_preview(index: int, picture) -> None:
            loop.call_soon_threadsafe(steps.put_nowait, ("preview", index, picture))

        started = time.perf_counter()
        work = loop.run_in_executor(self.executor, self.service.compose_together, submissions, on_step, on_preview)
        looked = started
        try:
            while not work.done():
                try:
                    yield await asyncio.wait_for(steps.get(), POLL_SECONDS)
                except asyncio.TimeoutError:
                    pass
                if time.perf_counter() - looked >= POLL_SECONDS:  # the board, not once per step: a round trip
                    looked = time.perf_counter()
                    if await self.board.stopped.remote(token):
                        self.service.manager.interrupt()
            yield "done", work.result(), time.perf_counter() - started
        except asyncio.CancelledError:  # the front gave up on the call
            self.service.manager.interrupt()
            raise


class RayBackend:
    """The queue's backend on Ray Serve (see the module's docstring)."""

    def __init__(self, config, replicas: int, extensions: Sequence = (), address: str = ""):
        self.replicas = replicas
        # One call running on each replica and one ready behind it, held by Ray's router. The router's bound
        # (max_queued_requests) is that many again: it refuses only when something besides this queue floods it,
        # and its backpressure is then the queue's 503.
        self.concurrency = 2 * replicas
        self.model = config.model
        self.extensions = list(extensions)
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            # a local cluster unless an address is given; the replicas import this project from its folder
            local = {} if address else {"num_cpus": max(os.cpu_count() or 1, replicas)}
            ray.init(address=address or None, include_dashboard=False, logging_level=logging.WARNING,
                     runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, **local)
        gpus = ray.cluster_resources().get("GPU", 0) >= replicas and config.device in ("auto", "cuda")
        resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        quiet = {"log_level": "WARNING", "enable_access_log": False}
        serve.start(proxy_location="Disabled", logging_config=quiet)  # the app is the front end, not Ray's proxy
        self.board = StopBoard.remote()
        deployment = serve.deployment(StudioReplica).options(
            num_replicas=replicas, ray_actor_options=resources, max_ongoing_requests=1,
            max_queued_requests=self.concurrency, health_check_period_s=2,
            logging_config=quiet,
        )
        self.handle = serve.run(deployment.bind(config, "cuda" if gpus else "cpu", self.board), name=APP_NAME,
                                route_prefix=None)
        self.calls_by_replica: collections.Counter[str] = collections.Counter()  # calls finished
        self.running: collections.Counter[str] = collections.Counter()  # calls running now
        self.retried = 0
        self.hops: collections.deque[float] = collections.deque(maxlen=100)  # a call's time outside its replica
        self.closed = False
        log.info("Ray Serve: %d replicas (%s each)", replicas, "1 GPU" if gpus else "1 CPU")

    def model_id(self, submissions: Sequence[Submission]) -> str:
        """serve.multiplexed's model id: the base model and what the extensions need loaded for the call (the LoRA
        set; one per call, by the batch key)."""
        needs = (extension.affinity(submissions[0][0]) for extension in self.extensions)
        return f"{self.model}[{'|'.join(need for need in needs if need)}]"

    def run(self, submissions: Sequence[Submission], on_step: StepCallback, on_preview: PreviewCallback,
            stop: threading.Event) -> list:
        for attempt in (1, 2):
            try:
                return self._call(submissions, on_step, on_preview, stop)
            except BackPressureError as error:
                return [QueueFull(f"the Ray replicas' queue is full ({error})")] * len(submissions)
            except LOST as error:
                if attempt == 2 or stop.is_set():
                    reason = str(error).splitlines()[0]
                    return [Unavailable(f"the Ray replica running it was lost twice ({reason})")] * len(submissions)
                self.retried += 1
                log.warning("a Ray replica was lost mid-call; retrying on another (%s)", str(error).splitlines()[0])
        raise AssertionError("unreachable")

    def _call(self, submissions: Sequence[Submission], on_step: StepCallback, on_preview: PreviewCallback,
              stop: threading.Event) -> list:
        token, told, started, replica = uuid.uuid4().hex, False, time.perf_counter(), None
        handle = self.handle.options(stream=True, multiplexed_model_id=self.model_id(submissions))
        try:
            for event in handle.run.remote(list(submissions), token):
                if stop.is_set() and not told:
                    self.board.stop.remote(token)
                    told = True
                if event[0] == "start":
                    replica = event[1]
                    self.running[replica] += 1
                elif event[0] == "step":
                    on_step(event[1], event[2])
                elif event[0] == "preview":
                    on_preview(event[1], event[2])
                else:
                    _, outcomes, seconds = event
                    self.calls_by_replica[replica] += 1
                    self.hops.append(time.perf_counter() - started - seconds)
                    return outcomes
        finally:
            if replica is not None:
                self.running[replica] -= 1
            if told:
                self.board.forget.remote(token)
        raise Unavailable("the Ray replica ended the call without a result")

    def interrupt(self) -> None:
        pass  # each running call's `stop` reaches its replica through the board

    def metrics(self) -> dict:
        hop = statistics.median(self.hops) * 1000 if self.hops else None
        return {"backend": "ray", "replicas": self.replicas, "retried_calls": self.retried,
                "calls_by_replica": dict(self.calls_by_replica),
                "running_by_replica": {name: calls for name, calls in self.running.items() if calls},
                "median_hop_ms": hop}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            serve.delete(APP_NAME)
            if self.started_ray:
                serve.shutdown()
                ray.shutdown()
        except Exception as error:  # the cluster may be gone already; the server is going away regardless
            log.warning("Ray Serve did not shut down cleanly: %s", error)
