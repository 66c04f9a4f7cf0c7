"""Batching on against off: 8 users send one compatible request each at the same moment (different prompts and
seeds), on the demo model at 64 px and on the SD 1.5 architecture (random weights) at 128 px; throughput as images
per second, interleaved rounds. Then, per sampler, how far batching moves the pixels from each image's solo result.

    python -m bench.batching
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time

import numpy as np

from bench.common import median_ratio
from models.manager import PipelineManager
from models.request import GenerationRequest
from models.sampler_names import SAMPLER_NAMES
from service.studio import StudioService

USERS = 8


def users_at_once(service: StudioService, size: int, steps: int, round_: int) -> float:
    """Seconds until all USERS requests, sent together, are answered."""
    errors: list[Exception] = []

    def user(index: int) -> None:
        try:
            service.run("txt2img", {"prompt": f"shape {index}", "seed": 1000 * round_ + index, "width": size,
                                    "height": size, "steps": steps})
        except Exception as error:  # noqa: BLE001 - raised below
            errors.append(error)

    threads = [threading.Thread(target=user, args=(index,)) for index in range(USERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def throughput(manager: PipelineManager, size: int, steps: int, rounds: int, max_batch: int = 4) -> dict:
    folder = tempfile.mkdtemp()
    services = {"off": StudioService(manager, folder, max_batch=1),
                "on": StudioService(manager, folder, max_batch=max_batch, batch_wait=0.01)}
    times: dict[str, list[float]] = {name: [] for name in services}
    for round_ in range(rounds + 1):  # the first round warms up
        for name, service in services.items():
            seconds = users_at_once(service, size, steps, round_)
            if round_:
                times[name].append(seconds)
    for service in services.values():
        service.close()
    return {"on": USERS / statistics.median(times["on"]), "off": USERS / statistics.median(times["off"]),
            "ratio": median_ratio(times["off"], times["on"])}


def sampler_drift(manager: PipelineManager, steps: int = 8) -> dict[str, int]:
    """Per sampler, the largest pixel difference (in 1/255) between 4 batched images and their solo results."""
    drift = {}
    for sampler in SAMPLER_NAMES:
        requests = [GenerationRequest("txt2img", f"shape {i}", negative_prompt="blurry" if i % 2 else "",
                                      seed=100 + 7 * i, width=64, height=64, steps=steps, sampler=sampler)
                    for i in range(4)]
        together = manager.generate_together(requests)
        drift[sampler] = max(int(np.abs(np.asarray(manager.generate(request).images[0], dtype=int)
                                        - np.asarray(joint.images[0], dtype=int)).max())
                             for request, joint in zip(requests, together))
    return drift


def main(rounds: int = 3) -> dict:
    from bench.sd15_random import cached

    figures = {}
    demo = PipelineManager.load("demo", device="cpu")
    figures["demo 64 px"] = throughput(demo, 64, 8, rounds)
    sd15 = PipelineManager.load(str(cached(inpainting=False)), device="cpu")
    figures["SD 1.5 128 px"] = throughput(sd15, 128, 4, rounds)
    for name, figure in figures.items():
        print(f"batching  {USERS} users, {name}: on {figure['on']:.2f} images/s, off {figure['off']:.2f} images/s "
              f"({figure['ratio']:.2f}x)")
    drift = sampler_drift(demo)
    figures["drift"] = drift
    print("batching  largest pixel drift from solo, per sampler (1/255): "
          + ", ".join(f"{name} {value}" for name, value in drift.items()))
    return figures


if __name__ == "__main__":
    main()
