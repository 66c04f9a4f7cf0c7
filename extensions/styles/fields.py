"""The styles extension's field."""

from __future__ import annotations

from models.fields import Field

STYLES = Field("styles", "names", [], label="Styles", rest="styles",
               help="saved styles (styles.csv, GET /sdapi/v1/prompt-styles) added to the prompts, in order")
