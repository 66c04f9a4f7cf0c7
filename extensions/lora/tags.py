"""A1111's prompt syntax for LoRAs: `<lora:name:weight>`, the weight optional (1.0)."""

from __future__ import annotations

import re
from typing import NamedTuple

TAG = re.compile(r"<lora:([^:<>]+)(?::([^:<>]*))?>")


class LoraTag(NamedTuple):  # a plain (name, weight) pair, as GenerationRequest.loras holds them
    name: str
    weight: float = 1.0


def parse_tags(prompt: str) -> tuple[str, tuple[LoraTag, ...]]:
    """The prompt without its tags (what reaches the text encoder) and the tags, in order.

    A name given twice gets the sum of its weights, as A1111 applies both tags.
    """
    weights: dict[str, float] = {}
    for match in TAG.finditer(prompt):
        name, weight = match.group(1).strip(), match.group(2)
        if not name:
            raise ValueError(f"prompt: LoRA tag {match.group(0)!r} has no name")
        try:
            value = 1.0 if weight is None or not weight.strip() else float(weight)
        except ValueError:
            raise ValueError(f"prompt: LoRA tag {match.group(0)!r} has weight {weight!r}, not a number") from None
        weights[name] = weights.get(name, 0.0) + value
    return _without_tags(prompt), tuple(LoraTag(name, weight) for name, weight in weights.items())


def format_tags(tags: list[LoraTag] | tuple[LoraTag, ...]) -> str:
    return " ".join(f"<lora:{tag.name}:{tag.weight:g}>" for tag in tags)


def replace_tags(prompt: str, tags: list[LoraTag] | tuple[LoraTag, ...]) -> str:
    """The prompt with its tags replaced by `tags`, appended at the end (the UI picker keeps them in step)."""
    return " ".join(part for part in (_without_tags(prompt), format_tags(tags)) if part)


def _without_tags(prompt: str) -> str:
    return re.sub(r"[ \t]{2,}", " ", TAG.sub("", prompt)).strip()
