"""PNG Info's parse of the parameters text: the worst case of the largest text accepted (MAX_INFOTEXT_CHARS), read
by our one-pass `parameter_pairs`, beside A1111's own regular expression on shorter texts of the same shape (its
time grows with the square of the length, so it is measured at 2 and 8 KB only).

    python -m bench.png_text
"""

from __future__ import annotations

import re
import statistics
import time

from models.infotext import parameter_pairs
from models.limits import MAX_INFOTEXT_CHARS

A1111_PATTERN = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# text shapes, each a function of its length in characters
SHAPES = {
    "one run of a key character": lambda n: "a" * n,
    "keys without values": lambda n: "Steps: " * (n // 7),
    "an unclosed quote": lambda n: 'a: "' + "b" * (n - 4),
    "many pairs": lambda n: "a: b, " * (n // 6),
}


def seconds(parse, text: str, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        parse(text)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    print(f"PNG text parse: worst shapes at the largest accepted length ({MAX_INFOTEXT_CHARS:,} characters)")
    print(f"{'shape':<28} {'ours 64 KB':>12} {'A1111 2 KB':>12} {'A1111 8 KB':>12}")
    for name, make in SHAPES.items():
        ours = seconds(parameter_pairs, make(MAX_INFOTEXT_CHARS))
        theirs = [seconds(A1111_PATTERN.findall, make(n), rounds=1) for n in (2_048, 8_192)]
        print(f"{name:<28} {ours * 1000:>10.2f}ms {theirs[0] * 1000:>10.1f}ms {theirs[1] * 1000:>10.1f}ms")


if __name__ == "__main__":
    main()
