"""The Ray Serve backend on a local cluster, on the demo model: 8 users at once (8 steps, no batching, so
each job is one call) with 1 replica against 2, one CPU each, at 64 and 128 px; and the Ray hop's cost per request
(a call's time outside its replica: routing, the stream of steps, moving the images) against the local backend.

    python -m bench.ray_scaling
"""

from __future__ import annotations

import statistics
import tempfile

import ray

import app
from bench.batching import USERS, users_at_once
from service.studio import StudioService

SIZES = (64, 128)


def ray_service(replicas: int, folder: str) -> StudioService:
    from extensions import create
    from models.manager import PipelineManager

    config = app.parse_config(["--model", "demo", "--device", "cpu", "--backend", "ray", "--replicas", str(replicas),
                               "--max-batch", "1", "--output-dir", f"{folder}/outputs", "--lora-dir", f"{folder}/Lora",
                               "--controlnet-dir", f"{folder}/ControlNet", "--embeddings-dir", f"{folder}/emb"],
                              environ={})
    manager = PipelineManager.load("demo", device="cpu")
    return StudioService(manager, config.output_dir, create(config.extension_settings()),
                         backend=app.backend_for(config))


def main(rounds: int = 3) -> dict:
    folder = tempfile.mkdtemp()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": str(app.ROOT)}})
    figures: dict[str, float] = {}
    try:
        times: dict[tuple[int, int], list[float]] = {}
        for replicas in (1, 2):
            service = ray_service(replicas, folder)
            users_at_once(service, 64, 8, 0)  # warm-up: every replica has run once
            for size in SIZES:
                times[replicas, size] = [users_at_once(service, size, 8, round_) for round_ in range(1, rounds + 1)]
            print(f"ray  {replicas} replicas: calls by replica {service.backend.metrics()['calls_by_replica']}")
            if replicas == 1:  # one request at a time: nothing waits at Ray's router
                service.backend.hops.clear()
                for _ in range(20):
                    service.run("txt2img", {"prompt": "x", "seed": 1, "steps": 1, "width": 64, "height": 64})
                figures["hop ms"] = service.backend.metrics()["median_hop_ms"]
            service.close()
    finally:
        ray.shutdown()
    for size in SIZES:
        one, two = (USERS / statistics.median(times[replicas, size]) for replicas in (1, 2))
        figures[f"{size} px ratio"] = two / one
        print(f"ray  {USERS} users at once, {size} px: 1 replica {one:.2f} images/s, 2 replicas {two:.2f} images/s "
              f"({two / one:.2f}x)")
    print(f"ray  the hop's cost per request (outside the replica): {figures['hop ms']:.1f} ms")
    return figures


if __name__ == "__main__":
    main()
