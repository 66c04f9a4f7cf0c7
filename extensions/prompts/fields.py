"""The prompts extension's field (the prompt and the negative prompt themselves are core fields)."""

from __future__ import annotations

from models.fields import Field

CLIP_SKIP = Field("clip_skip", "whole", 1, minimum=1, maximum=12, step=1, label="Clip skip",
                  setting="CLIP_stopping_at_last_layers", infotext="Clip skip",
                  help="the text encoder's output N layers from its last (2: A1111's anime models)")
