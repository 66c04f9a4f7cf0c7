"""AUTOMATIC1111's prompt emphasis, read the way its parser reads it (modules/prompt_parser.py,
parse_prompt_attention): the prompt as (text, weight) pieces.

- `(x)` multiplies the weight of x by 1.1, `[x]` divides it by 1.1, `(x:w)` multiplies it by w; nesting multiplies.
- `\\(`, `\\)`, `\\[`, `\\]` and `\\\\` are the literal characters; a backslash before anything else vanishes.
- A bracket that never closes applies to the rest of the prompt; a closing one that never opened is text, and so
  is `:w)` outside round brackets.
- `BREAK` (a word of its own) ends a chunk: it is the piece ("BREAK", -1). Inside brackets its weight is
  multiplied like any other piece, and it is then the plain word, as in A1111.
- Neighbouring pieces with the same weight are joined; an empty prompt is one empty piece.
- Brackets nested more than MAX_NESTING deep are refused (A1111 has no bound).
"""

from __future__ import annotations

import re

ROUND, SQUARE = 1.1, 1 / 1.1
# A closing bracket rescales every piece it encloses, so the work grows with pieces x nesting depth: hostile
# nesting (16,000 brackets deep, within the prompt's length bound) would take minutes. People nest a handful deep.
MAX_NESTING = 100
BREAK = ("BREAK", -1.0)
_ESCAPED = "()[]\\"
_SPECIAL = "\\()[]:"
_WEIGHT = re.compile(r":\s*([+-]?[.\d]+)\s*\)")
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse(text: str) -> list[tuple[str, float]]:
    pieces: list[list] = []  # [text, weight], mutable while brackets close
    round_open: list[int] = []  # where each open bracket's pieces start
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    def add_text(part: str) -> None:
        for index, between in enumerate(_BREAK.split(part)):
            if index:
                pieces.append(list(BREAK))
            pieces.append([between, 1.0])

    position = 0
    while position < len(text):
        char = text[position]
        if char == "\\":
            following = text[position + 1: position + 2]
            literal = following if following and following in _ESCAPED else ""
            pieces.append([literal, 1.0])
            position += 1 + len(literal)
        elif char in "([":
            if len(round_open) + len(square_open) == MAX_NESTING:
                raise ValueError(f"prompt: brackets nested more than {MAX_NESTING} deep, at character {position}")
            (round_open if char == "(" else square_open).append(len(pieces))
            position += 1
        elif char == ":" and (weight := _WEIGHT.match(text, position)) is not None and round_open:
            scale(round_open.pop(), _number(weight.group(1), weight.group(0)))
            position = weight.end()
        elif char == ")" and round_open:
            scale(round_open.pop(), ROUND)
            position += 1
        elif char == "]" and square_open:
            scale(square_open.pop(), SQUARE)
            position += 1
        elif char in _SPECIAL:  # a bracket that closes nothing, a ":" that weighs nothing: text
            run = _WEIGHT.match(text, position) if char == ":" else None
            end = run.end() if run is not None else position + 1
            add_text(text[position:end])
            position = end
        else:
            end = position + 1
            while end < len(text) and text[end] not in _SPECIAL:
                end += 1
            add_text(text[position:end])
            position = end
    for start in round_open:
        scale(start, ROUND)
    for start in square_open:
        scale(start, SQUARE)
    if not pieces:
        return [("", 1.0)]
    joined = [pieces[0]]
    for piece in pieces[1:]:
        if piece[1] == joined[-1][1]:
            joined[-1][0] += piece[0]
        else:
            joined.append(piece)
    return [(piece_text, weight) for piece_text, weight in joined]


def _number(text: str, written: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"prompt: the weight in {written!r} is not a number") from None
