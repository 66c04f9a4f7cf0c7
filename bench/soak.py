"""Soak: the real app on the demo model (with the shipped LoRA and ControlNet) under mixed traffic from a few
client threads, for --minutes or --requests, whichever ends first. UI-like gradio_client calls, REST through
`webuiapi` and plain HTTP, with and without a LoRA tag and a ControlNet unit, plus interrupts and cancellations
at a low rate. Every result with pixels that was not interrupted is compared with the same request run alone
at the start. Prints a table and writes JSON under bench/results/; exits 1 if a pixel check failed or an error
is unexplained.

    python -m bench.soak [--minutes 15] [--requests N] [--clients 3] [--seeds 2]
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SEEDS = (11, 22, 33, 44)
PROMPT = "a large red circle on a blue background"
LORA_TAG = " <lora:shapes-pastel:0.8>"
SIZE = 64
UI_GENERATIONS = ("ui txt2img", "ui img2img", "ui inpaint")
REST_GENERATIONS = ("rest txt2img", "rest img2img")
DETECTS = ("ui controlnet_detect", "rest controlnet/detect")
# kind -> weight in the mixed traffic
MIX = {"ui txt2img": 3, "ui img2img": 2, "ui inpaint": 2, "rest txt2img": 3, "rest img2img": 2,
       "ui controlnet_detect": 1, "rest controlnet/detect": 1, "rest png-info": 1, "rest progress": 1,
       "rest options": 1, "rest interrupt": 0.4, "ui interrupt": 0.4, "ui cancel": 0.8}


@dataclass(frozen=True)
class Key:
    """One distinct request: its pixels must always be the same."""
    kind: str
    seed: int = 0
    steps: int = 0
    lora: bool = False
    controlnet: bool = False

    def __str__(self) -> str:
        extras = "".join((" +lora" if self.lora else "", " +controlnet" if self.controlnet else ""))
        return f"{self.kind} seed {self.seed} steps {self.steps}{extras}" if self.steps else self.kind


@dataclass
class Tally:
    served: Counter = field(default_factory=Counter)  # kind -> requests answered
    latencies: dict = field(default_factory=lambda: defaultdict(list))  # kind -> seconds
    checks_passed: int = 0
    checks_failed: list = field(default_factory=list)  # "key: max difference"
    interrupted: Counter = field(default_factory=Counter)  # kind -> results marked interrupted (not checked)
    cancelled: int = 0  # UI jobs cancelled before they finished (not checked)
    explained: Counter = field(default_factory=Counter)  # "kind: reason" -> count
    unexplained: Counter = field(default_factory=Counter)  # "kind: Error: message" -> count
    rss_mib: dict = field(default_factory=dict)  # moment -> this process's RSS (the server runs in it)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass
class Budget:
    """--minutes and --requests: whichever runs out first."""
    seconds: float
    requests: int | None
    started: float = field(default_factory=time.monotonic)
    taken: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> bool:
        with self.lock:
            if self.fraction() >= 1:
                return False
            self.taken += 1
            return True

    def fraction(self) -> float:
        by_time = (time.monotonic() - self.started) / self.seconds
        return max(by_time, self.taken / self.requests if self.requests else 0.0)


@dataclass
class Inputs:
    """The files and images every request draws on."""
    picture: Image.Image
    picture_file: str
    mask_file: str
    tagged_png: bytes  # a PNG with an infotext, for png-info


class Clients:
    """One thread's connections: gradio_client, webuiapi and plain HTTP."""

    def __init__(self, url: str, downloads: str):
        import webuiapi
        from gradio_client import Client

        self.url = url
        self.gradio = Client(url, verbose=False, download_files=downloads, analytics_enabled=False)
        host, port = url.removeprefix("http://").split(":")
        self.rest = webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a")
        self.http = requests.Session()


# -- the requests ------------------------------------------------------------------------------------------


def prompt(key: Key) -> str:
    return PROMPT + (LORA_TAG if key.lora else "")


def ui_inputs(key: Key, inputs: Inputs) -> dict:
    from gradio_client import handle_file

    values = {"prompt": prompt(key), "seed": key.seed, "steps": key.steps, "width": SIZE, "height": SIZE,
              "api_name": "/" + key.kind.removeprefix("ui ")}
    if key.kind != "ui txt2img":
        values.update(image=handle_file(inputs.picture_file), strength=0.6)
    if key.kind == "ui inpaint":
        values["mask"] = handle_file(inputs.mask_file)
    if key.controlnet:
        values["controlnet_units"] = [{"module": "canny", "model": "shapes-canny", "image": encoded(inputs.picture),
                                       "weight": 0.8, "threshold_a": 100, "threshold_b": 200}]
    return values


def ui_result(outputs) -> tuple[np.ndarray, bool]:
    gallery, _, warnings = outputs
    return pixels(gallery[0]["image"]), "interrupted" in warnings


def ui_generate(clients: Clients, key: Key, inputs: Inputs) -> tuple[np.ndarray, bool]:
    return ui_result(clients.gradio.predict(**ui_inputs(key, inputs)))


def rest_generate(clients: Clients, key: Key, inputs: Inputs) -> tuple[np.ndarray, bool]:
    import webuiapi

    units = [webuiapi.ControlNetUnit(image=inputs.picture, module="canny", model="shapes-canny", weight=0.8,
                                     threshold_a=100, threshold_b=200, pixel_perfect=True)] if key.controlnet else []
    # a fresh alwayson_scripts each call: webuiapi otherwise writes the units into its mutable default
    values = {"prompt": prompt(key), "seed": key.seed, "steps": key.steps, "width": SIZE, "height": SIZE,
              "controlnet_units": units, "alwayson_scripts": {}}
    if key.kind == "rest txt2img":
        result = clients.rest.txt2img(**values)
    else:
        result = clients.rest.img2img(images=[inputs.picture], denoising_strength=0.6, **values)
    return np.asarray(result.image), any("interrupted" in warning for warning in result.info.get("warnings", []))


def ui_detect(clients: Clients, key: Key, inputs: Inputs) -> tuple[np.ndarray, bool]:
    from gradio_client import handle_file

    return pixels(clients.gradio.predict(image=handle_file(inputs.picture_file), module="canny",
                                         api_name="/controlnet_detect")), False


def rest_detect(clients: Clients, key: Key, inputs: Inputs) -> tuple[np.ndarray, bool]:
    body = {"controlnet_module": "canny", "controlnet_input_images": [encoded(inputs.picture)]}
    answer = checked(clients.http.post(f"{clients.url}/controlnet/detect", json=body, timeout=120)).json()
    return pixels(io.BytesIO(base64.b64decode(answer["images"][0]))), False


RUNNERS = {**dict.fromkeys(UI_GENERATIONS, ui_generate), **dict.fromkeys(REST_GENERATIONS, rest_generate),
           "ui controlnet_detect": ui_detect, "rest controlnet/detect": rest_detect}


def png_info(clients: Clients, inputs: Inputs) -> None:
    body = {"image": base64.b64encode(inputs.tagged_png).decode()}
    answer = checked(clients.http.post(f"{clients.url}/sdapi/v1/png-info", json=body, timeout=60)).json()
    if not answer["info"].startswith(PROMPT):
        raise AssertionError(f"png-info read {answer['info'][:80]!r}")


def plain_request(kind: str, clients: Clients, inputs: Inputs) -> None:
    """The kinds without pixels: png-info, progress, options and the interrupts."""
    route, name = kind.split()
    if name == "png-info":
        png_info(clients, inputs)
    elif name == "interrupt":
        interrupt(clients, route)
    else:
        checked(clients.http.get(f"{clients.url}/sdapi/v1/{name}", timeout=30))


def interrupt(clients: Clients, route: str) -> None:
    """Wait (up to 3 s) until a job runs, then interrupt it."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if checked(clients.http.get(f"{clients.url}/sdapi/v1/progress", timeout=30)).json()["state"]["job"]:
            break
        time.sleep(0.05)
    if route == "rest":
        checked(clients.http.post(f"{clients.url}/sdapi/v1/interrupt", timeout=30))
    else:
        clients.gradio.predict(api_name="/interrupt")


def cancel(clients: Clients, key: Key, inputs: Inputs, rng: random.Random) -> tuple[np.ndarray, bool] | None:
    """Submit a UI generation and cancel it soon after; its result (None when cancelled in time)."""
    job = clients.gradio.submit(**ui_inputs(key, inputs))
    time.sleep(rng.uniform(0, 0.4))
    job.cancel()
    try:
        return ui_result(job.result(timeout=300))
    except CancelledError:
        return None
    except KeyError as error:  # gradio_client's answer for a job cancelled while it ran: an empty result
        if str(error).endswith("Response received: {}\""):
            return None
        raise


# -- traffic ---------------------------------------------------------------------------------------------


def all_keys(seeds: int) -> list[Key]:
    generations = [Key(kind, seed, steps=4 + 2 * (index % 3), lora=lora, controlnet=controlnet)
                   for index, (kind, seed, lora, controlnet) in enumerate(itertools.product(
                       UI_GENERATIONS + REST_GENERATIONS, SEEDS[:seeds], (False, True), (False, True)))]
    return generations + [Key(kind) for kind in DETECTS]


def record_solo(keys: list[Key], clients: Clients, inputs: Inputs) -> dict[Key, np.ndarray]:
    """Each key once, alone: the pixels every later run of it must equal."""
    solo = {}
    for key in keys:
        image, was_interrupted = RUNNERS[key.kind](clients, key, inputs)
        if was_interrupted:
            raise RuntimeError(f"{key} was interrupted while running alone")
        solo[key] = image
    return solo


def one_request(kind: str, clients: Clients, keys: list[Key], solo: dict, inputs: Inputs, rng: random.Random,
                tally: Tally) -> None:
    key = pick_key(kind, keys, rng)
    started = time.perf_counter()
    try:
        if kind in RUNNERS:
            result = RUNNERS[kind](clients, key, inputs)
        elif kind == "ui cancel":
            result = cancel(clients, key, inputs, rng)
        else:
            result = plain_request(kind, clients, inputs)
    except Exception as error:  # noqa: BLE001 - every error is tallied, explained or not
        with tally.lock:
            reason = explanation(error)
            if reason:
                tally.explained[f"{kind}: {reason}"] += 1
            else:
                tally.unexplained[f"{kind}: {type(error).__name__}: {str(error)[:300]}"] += 1
        return
    seconds = time.perf_counter() - started
    with tally.lock:
        tally.served[kind] += 1
        tally.latencies[kind].append(seconds)
        if kind == "ui cancel" and result is None:
            tally.cancelled += 1
        elif result is not None and result[1]:
            tally.interrupted[kind] += 1
        elif result is not None:
            check(tally, key, result[0], solo[key])


def pick_key(kind: str, keys: list[Key], rng: random.Random) -> Key | None:
    """A random request of this kind (a cancel cancels a UI generation); None for kinds without pixels."""
    kind = rng.choice(UI_GENERATIONS) if kind == "ui cancel" else kind
    return rng.choice([key for key in keys if key.kind == kind]) if kind in RUNNERS else None


def check(tally: Tally, key: Key, image: np.ndarray, expected: np.ndarray) -> None:
    if image.shape == expected.shape and np.array_equal(image, expected):
        tally.checks_passed += 1
    else:
        difference = np.abs(image.astype(int) - expected).max() if image.shape == expected.shape else "shape"
        tally.checks_failed.append(f"{key}: max difference {difference}")


def explanation(error: Exception) -> str | None:
    from gradio_client.utils import QueueError

    if isinstance(error, QueueError) or (isinstance(error, RuntimeError) and error.args[:1] == (503,)):
        return "queue full (503)"
    if isinstance(error, requests.HTTPError) and error.response.status_code == 503:
        return "queue full (503)"
    return None


def client_thread(index: int, url: str, folder: str, keys: list[Key], solo: dict, inputs: Inputs, budget: Budget,
                  tally: Tally) -> None:
    rng = random.Random(index)
    try:
        clients = Clients(url, f"{folder}/downloads")
    except Exception as error:  # noqa: BLE001
        with tally.lock:
            tally.unexplained[f"client {index}: {type(error).__name__}: {error}"] += 1
        return
    kinds, weights = list(MIX), list(MIX.values())
    while budget.take():
        one_request(rng.choices(kinds, weights)[0], clients, keys, solo, inputs, rng, tally)
    clients.gradio.close()


def run_traffic(url: str, folder: str, args, keys: list[Key], solo: dict, inputs: Inputs, tally: Tally) -> float:
    """The mixed phase; RSS at its start, middle and end; returns its duration."""
    budget = Budget(args.minutes * 60, args.requests)
    tally.rss_mib["start"] = rss_mib()
    threads = [threading.Thread(target=client_thread, args=(index, url, folder, keys, solo, inputs, budget, tally),
                                daemon=True) for index in range(args.clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if "middle" not in tally.rss_mib and budget.fraction() >= 0.5:
            tally.rss_mib["middle"] = rss_mib()
        time.sleep(0.2)
    tally.rss_mib.setdefault("middle", rss_mib())
    tally.rss_mib["end"] = rss_mib()
    return time.monotonic() - budget.started


# -- helpers ---------------------------------------------------------------------------------------------


def pixels(source) -> np.ndarray:
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"))


def encoded(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def checked(response: requests.Response) -> requests.Response:
    response.raise_for_status()
    return response


def rss_mib() -> float:
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def make_inputs(folder: str) -> Inputs:
    from training.shapes import Scene, Shape, render

    picture = render(Scene((Shape("circle", "red", "large"),), "blue"), SIZE)
    picture.save(f"{folder}/picture.png")
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(f"{folder}/mask.png")
    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", f"{PROMPT}\nSteps: 4, Sampler: Euler a, Seed: 11, Size: {SIZE}x{SIZE}")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=text)
    return Inputs(picture, f"{folder}/picture.png", f"{folder}/mask.png", buffer.getvalue())


def start_app(folder: str, queue_size: int):
    import app
    from testing.ports import free_port

    config = app.parse_config(
        ["--model", "demo", "--device", "cpu", "--port", str(free_port()), "--api", "on",
         "--lora-dir", str(ROOT / "models" / "Lora"), "--controlnet-dir", str(ROOT / "models" / "ControlNet"),
         "--output-dir", f"{folder}/outputs", "--queue-size", str(queue_size)],
        environ={},
    )
    server, _ = app.start_in_background(config)
    return server, f"http://{config.host}:{config.port}"


# -- the report ------------------------------------------------------------------------------------------


def report(tally: Tally, args, solo_runs: int, solo_seconds: float, seconds: float) -> dict:
    kinds = sorted(tally.served)
    return {
        "settings": {"minutes": args.minutes, "requests": args.requests, "clients": args.clients,
                     "seeds": args.seeds, "queue_size": args.queue_size, "size": SIZE},
        "solo": {"runs": solo_runs, "seconds": round(solo_seconds, 1)},
        "seconds": round(seconds, 1),
        "served": {kind: tally.served[kind] for kind in kinds},
        "latency_ms": {kind: {"p50": round(float(np.percentile(tally.latencies[kind], 50)) * 1000),
                              "p99": round(float(np.percentile(tally.latencies[kind], 99)) * 1000)} for kind in kinds},
        "pixel_checks": {"passed": tally.checks_passed, "failed": len(tally.checks_failed),
                         "failures": tally.checks_failed},
        "interrupted": dict(tally.interrupted),
        "cancelled": tally.cancelled,
        "errors": {"explained": dict(tally.explained), "unexplained": dict(tally.unexplained)},
        "rss_mib": tally.rss_mib,
        "passed": not tally.checks_failed and not tally.unexplained,
    }


def print_report(figures: dict) -> None:
    print(f"soak: {sum(figures['served'].values())} requests in {figures['seconds']} s "
          f"({figures['settings']['clients']} clients), after {figures['solo']['runs']} solo runs "
          f"in {figures['solo']['seconds']} s")
    print(f"{'kind':<24}{'served':>8}{'interrupted':>13}{'p50 ms':>9}{'p99 ms':>9}")
    for kind, count in figures["served"].items():
        latency = figures["latency_ms"][kind]
        print(f"{kind:<24}{count:>8}{figures['interrupted'].get(kind, 0):>13}{latency['p50']:>9}{latency['p99']:>9}")
    checks = figures["pixel_checks"]
    print(f"solo-pixel checks: {checks['passed']} passed, {checks['failed']} failed; "
          f"not checked: {sum(figures['interrupted'].values())} interrupted, {figures['cancelled']} cancelled")
    for failure in checks["failures"]:
        print(f"  FAILED {failure}")
    for label in ("explained", "unexplained"):
        for error, count in figures["errors"][label].items():
            print(f"{label} error x{count}: {error}")
    rss = figures["rss_mib"]
    print(f"RSS (MiB, server and clients in one process): start {rss['start']}, middle {rss['middle']}, "
          f"end {rss['end']}")
    print("PASSED" if figures["passed"] else "FAILED")


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--requests", type=int, default=None, help="stop after this many mixed requests")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2, choices=range(1, len(SEEDS) + 1),
                        help="seeds per request shape (each key is run alone once first)")
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help="default: bench/results/soak-<time>.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import app

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = parse_args(argv)
    tally = Tally()
    with tempfile.TemporaryDirectory() as folder:
        server, url = start_app(folder, args.queue_size)
        try:
            inputs, keys = make_inputs(folder), all_keys(args.seeds)
            started = time.monotonic()
            solo = record_solo(keys, Clients(url, f"{folder}/downloads"), inputs)
            solo_seconds = time.monotonic() - started
            seconds = run_traffic(url, folder, args, keys, solo, inputs, tally)
        finally:
            logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # the cut event streams, quietly
            app.stop_in_background(server)
    figures = report(tally, args, len(keys), solo_seconds, seconds)
    print_report(figures)
    path = args.json or RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {path}")
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
