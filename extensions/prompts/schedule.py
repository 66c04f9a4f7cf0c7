"""AUTOMATIC1111's prompt editing, read the way its schedule grammar reads it (modules/prompt_parser.py,
get_learned_conditioning_prompt_schedules): a prompt as the texts it has over the steps of a pass.

- `[from:to:when]` is `from` up to step `when`, then `to`; `[to:when]` adds `to` after step `when`; `[from::when]`
  removes `from` after it. `when` with a decimal point is a fraction of the pass's steps (`0.5`), without one a
  step (`10`); in hires fix's pass, fractions over 1 and steps past the first pass's count into it (`[a:b:1.5]`).
- `[a|b|c]` alternates every step: a, b, c, a, ... (an empty option is nothing).
- `(x)`, `(x:w)` and `[x]` stay in the text for the emphasis parser (syntax.py); what they enclose is scheduled.
- Brackets that make none of these at the top level are text; a `|` outside an alternation, or a broken bracket
  inside another, makes the whole prompt one text (A1111's parser fails there and schedules nothing).

A schedule is a list of (last step, text): text i is used while the step (counted from 0) is at most its last step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A1111's SIGNED_NUMBER (lark's common grammar): 3, -2, .5, 5., 1e2, 1.5E-1
_WHEN = re.compile(r"\s*([+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))\s*\]")
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")  # as lark's: "." is not a line break
MAX_DEPTH = 100  # brackets inside brackets; deeper is text, as syntax.py refuses it


class _NoParse(Exception):
    """A bracket that is none of the constructs where the grammar needs one."""


@dataclass
class _Scheduled:
    before: list
    after: list
    when: str
    step: int = 0  # `when` in steps of the pass, once collected


@dataclass
class _Alternate:
    options: list[list]


def schedule(prompt: str, steps: int, hires_steps: int | None = None) -> list[tuple[int, str]]:
    """`prompt`'s texts over a pass of `steps` steps (`hires_steps`: over hires fix's pass of that many, after a first
    pass of `steps`)."""
    pass_steps = hires_steps if hires_steps is not None else steps
    try:
        tree = _Parser(prompt).parse()
    except _NoParse:
        return [(pass_steps, prompt)]
    offsets = (steps, 1.0) if hires_steps is not None else (0, 0.0)
    ends = sorted({pass_steps, *_collect(tree, pass_steps, offsets)})
    return [(end, _text(tree, end)) for end in ends]


def edits(prompt: str) -> bool:
    """Whether `prompt` changes over the steps of some pass: it has a `[from:to:when]` or an `[a|b]`."""
    if "[" not in prompt or (":" not in prompt and "|" not in prompt):  # the common case, without parsing
        return False
    try:
        return _edited(_Parser(prompt).parse())
    except _NoParse:
        return False


def unreached(prompt: str, steps: int, hires_steps: int | None = None) -> list[str]:
    """The edits whose `when` falls outside the job's steps (A1111 runs them all the same: one text throughout),
    each as a note for the user."""
    if not edits(prompt):
        return []
    last = steps + (hires_steps or 0)  # steps count on into hires fix's pass, fractions up to 2
    notes = []
    for node in _scheduled(_Parser(prompt).parse()):
        value, fraction = float(node.when), "." in node.when
        if value > (2 if hires_steps else 1) if fraction else value > last:
            notes.append(f"[...:{node.when}] comes after the last step ({last}): its first text runs throughout")
        elif value <= 0:
            notes.append(f"[...:{node.when}] comes before the first step: its second text runs throughout")
    return notes


def _scheduled(nodes: list) -> list[_Scheduled]:
    found = []
    for node in nodes:
        if isinstance(node, _Scheduled):
            found += [node, *_scheduled(node.before), *_scheduled(node.after)]
        elif isinstance(node, _Alternate):
            found += [each for option in node.options for each in _scheduled(option)]
    return found


def _edited(nodes: list) -> bool:
    return any(isinstance(node, (_Scheduled, _Alternate)) or isinstance(node, list) and _edited(node)
               for node in nodes)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.constructs: dict[int, tuple[list, int] | None] = {}  # a bracket's place -> its nodes and end, or None

    def parse(self) -> list:
        """The top level: constructs, text, and brackets that make no construct kept as text."""
        nodes, at, text = [], 0, self.text
        while at < len(text):
            plain = _PLAIN.match(text, at)
            if plain is not None:
                nodes.append(plain.group())
                at = plain.end()
                continue
            if text[at] not in "[]():":
                raise _NoParse  # a "|" or a lone backslash: the grammar has no place for it
            construct = self._construct(at, 1) if text[at] in "([" else None
            if construct is None:  # a bracket or colon on its own: text
                nodes.append(text[at])
                at += 1
            else:
                nodes += construct[0]
                at = construct[1]
        return nodes

    def _construct(self, at: int, depth: int) -> tuple[list, int] | None:
        """The construct the bracket at `at` opens, or None; each is read once (hostile prompts stay linear)."""
        if at not in self.constructs:
            try:
                self.constructs[at] = (self._round if self.text[at] == "(" else self._square)(at + 1, depth)
            except _NoParse:
                self.constructs[at] = None
        return self.constructs[at]

    def _prompt(self, at: int, stops: str, depth: int) -> tuple[list, int]:
        """Nodes from `at` up to (not past) one of `stops` or the end; inside a construct every bracket must make
        one."""
        nodes, text = [], self.text
        while at < len(text) and text[at] not in stops:
            plain = _PLAIN.match(text, at)
            if plain is not None:
                nodes.append(plain.group())
                at = plain.end()
                continue
            construct = self._construct(at, depth + 1) if text[at] in "([" and depth < MAX_DEPTH else None
            if construct is None:
                raise _NoParse
            nodes += construct[0]
            at = construct[1]
        return nodes, at

    def _round(self, at: int, depth: int) -> tuple[list, int]:
        """`(x)` or `(x:y)`: kept as text around what it encloses."""
        inner, at = self._prompt(at, ":)", depth)
        nodes = ["(", *inner]
        if at < len(self.text) and self.text[at] == ":":
            weight, at = self._prompt(at + 1, ")", depth)
            nodes += [":", *weight]
        if at >= len(self.text) or self.text[at] != ")":
            raise _NoParse
        return [*nodes, ")"], at + 1

    def _square(self, at: int, depth: int) -> tuple[list, int]:
        """`[x]`, `[to:when]`, `[from:to:when]` or `[a|b|...]`."""
        first, at = self._prompt(at, ":|]", depth)
        if at >= len(self.text):
            raise _NoParse
        mark = self.text[at]
        if mark == "]":
            return ["[", *first, "]"], at + 1
        if mark == "|":
            options = [first]
            while at < len(self.text) and self.text[at] == "|":
                option, at = self._prompt(at + 1, "|]", depth)
                options.append(option)
            if at >= len(self.text):
                raise _NoParse
            return [_Alternate(options)], at + 1
        when = _WHEN.match(self.text, at + 1)
        if when is not None:
            return [_Scheduled([], first, when.group(1))], when.end()
        second, at = self._prompt(at + 1, ":]", depth)
        when = _WHEN.match(self.text, at + 1) if at < len(self.text) and self.text[at] == ":" else None
        if when is None:
            raise _NoParse
        return [_Scheduled(first, second, when.group(1))], when.end()


def _collect(nodes: list, steps: int, offsets: tuple[int, float]) -> list[int]:
    """The steps where the text changes; each scheduled node learns its step."""
    found = []
    for node in nodes:
        if isinstance(node, _Scheduled):
            value = float(node.when)
            value = (value - offsets[1]) * steps if "." in node.when else value - offsets[0]
            node.step = min(steps, int(value))
            if node.step >= 1:
                found.append(node.step)
            found += _collect(node.before, steps, offsets) + _collect(node.after, steps, offsets)
        elif isinstance(node, _Alternate):
            found += range(1, steps + 1)
            for option in node.options:
                found += _collect(option, steps, offsets)
    return found


def _text(nodes: list, step: int) -> str:
    """The text at `step` (counted from 1, as the schedule's ends are)."""
    parts = []
    for node in nodes:
        if isinstance(node, _Scheduled):
            parts.append(_text(node.before if step <= node.step else node.after, step))
        elif isinstance(node, _Alternate):
            parts.append(_text(node.options[(step - 1) % len(node.options)], step))
        else:
            parts.append(node)
    return "".join(parts)
