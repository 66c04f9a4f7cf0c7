"""The History tab with 10,000 PNGs in the output folder: the first page as a fresh app sees it (a new History, its
text cache empty), a filter that reads every file's text once, the same filter again (cached), and a later page.
Goal: the first page under 1 s.

    python -m bench.history
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench.common import interleaved
from models.infotext import save_png
from service.history import History

FILES = 10_000


def make_outputs(folder: Path, count: int) -> None:
    """`count` saved outputs over 10 days and the three modes, as service/saving.py writes them (64 px, infotext)."""
    image = Image.new("RGB", (64, 64), "navy")
    for index in range(count):
        mode = ("txt2img", "img2img", "inpaint")[index % 3]
        day = f"2026-11-{10 + index % 10:02d}"
        text = (f"a {('red', 'green', 'blue')[index % 3]} circle number {index}\nSteps: 20, Sampler: Euler a, "
                f"CFG scale: 7, Seed: {index}, Size: 64x64, Model: sd-shapes-inpainting")
        path = save_png(image, folder / f"{mode}-images" / day / f"{index:05d}-{index}.png", text)
        os.utime(path, ns=(index * 10**9, index * 10**9))


def timed(function, rounds: int = 3) -> float:
    """The median time of `function` (seconds)."""
    return statistics.median(interleaved({"run": function}, rounds, warmup=0)["run"])


def main(count: int = FILES) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        make_outputs(Path(folder), count)
        first = timed(lambda: History(folder).page())  # a fresh History each time: nothing cached
        history = History(folder)
        started = time.perf_counter()
        matches = history.page("green circle").total
        filter_cold = time.perf_counter() - started
        filter_warm = timed(lambda: history.page("green circle"))
        later = timed(lambda: history.page(number=200))
    figures = {"files": count, "first page s": first, "filter cold s": filter_cold, "filter warm s": filter_warm,
               "page 200 s": later, "matches": matches}
    print(f"history  {count} PNGs: first page {first * 1000:.0f} ms (goal under 1 s); a filter reading every file's "
          f"text {filter_cold:.2f} s, again (cached) {filter_warm * 1000:.0f} ms; page 200 {later * 1000:.0f} ms")
    return figures


if __name__ == "__main__":
    main()
