"""The tiling extension's field: A1111's Tiling."""

from __future__ import annotations

from models.fields import Field

TILING = Field("tiling", "switch", False, label="Tiling", rest="tiling", infotext="Tiling",
               help="a picture that repeats seamlessly: each side continues the opposite one")
