"""LoRA's one declared value: a tag's weight (the tags themselves are in the prompt, a core field)."""

from __future__ import annotations

from models.fields import Field

# A tag's weight, <lora:name:weight>: A1111 takes any; the picker's slider spans what is commonly useful.
WEIGHT = Field("weight", "number", 1.0, minimum=-10, maximum=10, ui_range=(-2, 2), step=0.05, label="weight",
               help="in the prompt as <lora:name:weight>")
