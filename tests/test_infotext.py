"""A1111 infotext: exact format, quoting, parsing ours and A1111's, the PNG `parameters` chunk."""

from __future__ import annotations

import random
import re
import time

from PIL import Image

from models.infotext import format_infotext, parameter_pairs, parse_infotext, read_png_infotext, save_png

# A1111's own pattern for the parameter line (modules/infotext_utils.py), the reference parameter_pairs must agree
# with; it backtracks quadratically, so it only ever runs here, on short lines.
A1111_PATTERN = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')

A1111_SAMPLE = (
    "masterpiece, 1girl, <lora:detail:0.6>\n"
    "Negative prompt: lowres, bad anatomy\n"
    'Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3563187419, Size: 512x768, '
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.5, '
    'Lora hashes: "detail: 62f5e0e1f3a0", Version: v1.10.1'
)


def test_format_matches_a1111_exactly():
    text = format_infotext(
        "a cat",
        "blurry",
        {"Steps": 20, "Sampler": "Euler a", "Schedule type": "Automatic", "CFG scale": 7.0, "Seed": 1,
         "Size": "512x512", "Model hash": "abc123def0", "Model": "sd", "Denoising strength": None},
    )
    assert text == (
        "a cat\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512, "
        "Model hash: abc123def0, Model: sd"
    )


def test_no_negative_prompt_line_when_empty_and_values_with_separators_are_quoted():
    text = format_infotext("a, b", "", {"Steps": 5, "Sampler": "Euler", "CFG scale": 7.5, "Note": 'x: "y", z'})
    assert text == 'a, b\nSteps: 5, Sampler: Euler, CFG scale: 7.5, Note: "x: \\"y\\", z"'
    assert parse_infotext(text) == ("a, b", "", {"Steps": "5", "Sampler": "Euler", "CFG scale": "7.5",
                                                  "Note": 'x: "y", z'})


def test_parses_a1111_infotext():
    prompt, negative, parameters = parse_infotext(A1111_SAMPLE)
    assert prompt == "masterpiece, 1girl, <lora:detail:0.6>"
    assert negative == "lowres, bad anatomy"
    assert parameters["Seed"] == "3563187419" and parameters["Size"] == "512x768"
    assert parameters["Lora hashes"] == "detail: 62f5e0e1f3a0"
    assert parameters["Version"] == "v1.10.1"


def test_multiline_prompts_round_trip():
    text = format_infotext("line one\nline two", "neg one\nneg two", {"Steps": 3, "Sampler": "DDIM", "Seed": 2})
    assert parse_infotext(text) == ("line one\nline two", "neg one\nneg two",
                                    {"Steps": "3", "Sampler": "DDIM", "Seed": "2"})


def test_png_carries_the_parameters_chunk(tmp_path):
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "a" / "img.png", A1111_SAMPLE)
    assert read_png_infotext(path) == A1111_SAMPLE


def test_parameter_pairs_agree_with_a1111s_pattern_on_every_kind_of_line():
    pieces = ["a", "Z", "7", "_", "é", " ", "\t", ":", ": ", ",", ", ", '"', "\\", "-", "/", "Steps", "x: y"]
    rng = random.Random(0)
    lines = [A1111_SAMPLE.split("\n")[-1], 'Lora hashes: "a: 1, b: 2", Steps: 3', 'K: "", L: "x"y, M: "\\"q"']
    lines += ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 24))) for _ in range(30_000)]
    for line in lines:
        assert parameter_pairs(line) == A1111_PATTERN.findall(line), line


def test_parsing_is_linear_in_the_text_even_for_the_worst_lines():
    """One long run of a key character took A1111's pattern 2.3 s at 16 KB and 67 s at 128 KB, the server stalled."""
    worst = ["a" * 1_000_000, '"' + "a" * 1_000_000, 'a: "' + "\\a" * 500_000, "a: b, " * 170_000,
             "a-" * 500_000 + ":"]
    for line in worst:
        started = time.perf_counter()
        parse_infotext("prompt\n" + line)
        assert time.perf_counter() - started < 1.0, line[:20]
