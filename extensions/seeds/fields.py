"""The variation seed's fields, under A1111's names."""

from __future__ import annotations

from models.fields import Field
from models.request import MAX_SEED, seed_value
from models.validate import integer

RESIZE_RANGE = (64, 2048)


def _resize_side(name: str, value) -> int:
    value = integer(name, value)
    if value not in (-1, 0) and not RESIZE_RANGE[0] <= value <= RESIZE_RANGE[1]:
        raise ValueError(f"{name} must be 0 or -1 (off) or from {RESIZE_RANGE[0]} to {RESIZE_RANGE[1]}, got {value}")
    return value


SUBSEED = Field("subseed", "int", -1, minimum=-1, maximum=MAX_SEED, label="Variation seed (-1: random)",
                rest="subseed", infotext="Variation seed", validator=seed_value,
                help="the seed whose noise the image's noise turns towards; image i of a batch uses subseed + i")
SUBSEED_STRENGTH = Field("subseed_strength", "number", 0.0, minimum=0, maximum=1, step=0.01,
                         label="Variation strength", rest="subseed_strength", infotext="Variation seed strength",
                         help="0: the seed's noise (off); 1: the variation seed's")
SEED_RESIZE_FROM_W = Field("seed_resize_from_w", "int", -1, minimum=-1, maximum=RESIZE_RANGE[1], step=8,
                           ui_range=(0, RESIZE_RANGE[1]), label="Resize seed from width", rest="seed_resize_from_w",
                           validator=_resize_side,
                           help="draw the seed's noise as at this width, so that a picture keeps its layout at "
                                "another size (0 or -1: off)")
SEED_RESIZE_FROM_H = Field("seed_resize_from_h", "int", -1, minimum=-1, maximum=RESIZE_RANGE[1], step=8,
                           ui_range=(0, RESIZE_RANGE[1]), label="Resize seed from height", rest="seed_resize_from_h",
                           validator=_resize_side, help="as the width (0 or -1: off)")
SEED_FIELDS = (SUBSEED, SUBSEED_STRENGTH, SEED_RESIZE_FROM_W, SEED_RESIZE_FROM_H)
RESIZE_INFOTEXT = "Seed resize from"  # one entry for both sides: "Seed resize from: 512x768"
