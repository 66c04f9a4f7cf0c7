"""A field of a request, declared once: its name, kind, default, bounds, A1111 names and words for people. Everything
else is built from the declaration: the check every request goes through (models/request.py, the extensions'
parts), the UI's control (extensions/panel.py's `control`), the gradio_client endpoint's parameter, the REST body's
documented property (api/bodies.py) and the infotext entry read back (`read_entries`).

    STEPS = Field("steps", "int", 20, minimum=1, maximum=150, step=1, label="Sampling steps", rest="steps",
                  infotext="Steps")

No torch and no gradio here: requests are checked before any model is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from models.infotext import read_value
from models.validate import boolean, brief, in_range, integer, multiple_of_8, one_of, text, whole_number


def _int(field: Field, value):
    """A whole number, then its range: "steps must be a whole number, got 'x'", "... must be from 1 to 150"."""
    value = integer(field.name, value)
    return value if field.minimum is None else in_range(field.name, value, (field.minimum, field.maximum))


def _fraction(field: Field, value):
    """In (minimum, maximum]: a denoising strength of 0 would denoise nothing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not field.minimum < value <= field.maximum:
        raise ValueError(f"{field.name} must be in ({field.minimum:g}, {field.maximum:g}], got {brief(value)}")
    return float(value)


def _choice(field: Field, value):
    return one_of(field.name, value, field.choices) if field.choices else text(field.name, value)


# kind -> (its check, its JSON schema type, its infotext converter)
KINDS: dict[str, tuple[Callable[[Field, Any], Any], dict, str | None]] = {
    "int": (_int, {"type": "integer"}, "whole"),
    "whole": (lambda field, value: whole_number(field.name, value, field.minimum, field.maximum),
              {"type": "integer"}, "whole"),
    "number": (lambda field, value: in_range(field.name, value, (field.minimum, field.maximum)),
               {"type": "number"}, "number"),
    "fraction": (_fraction, {"type": "number"}, "number"),
    "size": (lambda field, value: multiple_of_8(field.name, value, field.minimum, field.maximum),
             {"type": "integer", "multipleOf": 8}, "whole"),
    "switch": (lambda field, value: boolean(field.name, value), {"type": "boolean"}, "boolean"),
    "text": (lambda field, value: text(field.name, value), {"type": "string"}, "text"),
    "choice": (_choice, {"type": "string"}, "text"),
    # read by the code that takes them: images are decoded within bounds, lists and objects by their extension
    "image": (lambda field, value: value, {"type": "string", "format": "byte"}, None),
    "images": (lambda field, value: value, {"type": "array", "items": {"type": "string", "format": "byte"}}, None),
    "list": (lambda field, value: value, {"type": "array", "items": {"type": "object"}}, None),
    "names": (lambda field, value: value, {"type": "array", "items": {"type": "string"}}, None),
    "object": (lambda field, value: value, {"type": "object"}, None),
    "args": (lambda field, value: value, {"type": "array", "items": {}}, None),  # positional, of any types
}


@dataclass(frozen=True)
class Field:
    name: str  # the request's key and the gradio_client keyword
    kind: str  # a key of KINDS
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()  # a choice's values (empty: the extension's library decides)
    step: float | None = None  # the UI control's step
    ui_range: tuple[float, float] | None = None  # the UI control's range where it is narrower than the accepted one
    label: str = ""  # the UI's words
    help: str = ""  # one line for people: the UI control's info, the API's description
    rest: str | None = None  # its name in A1111's request bodies (None: not there as it is)
    setting: str | None = None  # its name in A1111's override_settings
    infotext: str | None = None  # its key in A1111's infotext
    validator: Callable[[str, Any], Any] | None = None  # (name, value) -> value: a check of its own, else the kind's
    items: tuple[Field, ...] = ()  # a list's objects: their fields (ControlNet units)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def check(self, value):
        """The value in its proper type (JSON and sliders send 512.0 for 512), or ValueError naming the field and the
        value; nothing is clamped."""
        if self.validator is not None:
            return self.validator(self.name, value)
        return KINDS[self.kind][0](self, value)

    @property
    def control_range(self) -> tuple[float, float] | None:
        """What a slider spans: the UI range, else the accepted one."""
        if self.ui_range is not None:
            return self.ui_range
        return (self.minimum, self.maximum) if self.minimum is not None and self.maximum is not None else None

    def describe(self) -> str:
        """The help line with the bounds and the default: what the API's documentation says of the field."""
        parts = [self.help] if self.help else []
        if self.kind == "fraction":
            parts.append(f"more than {_shown(self.minimum)}, at most {_shown(self.maximum)}")
        elif self.minimum is not None and self.maximum is not None:
            parts.append(f"{_shown(self.minimum)} to {_shown(self.maximum)}"
                         + (", a multiple of 8" if self.kind == "size" else ""))
        elif self.minimum is not None:
            parts.append(f"at least {_shown(self.minimum)}")
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        return "; ".join(parts)

    def json_schema(self) -> dict:
        """Its JSON schema as the REST body documents it (type, default, bounds, choices, description)."""
        schema = dict(KINDS[self.kind][1])
        if self.minimum is not None:
            schema["exclusiveMinimum" if self.kind == "fraction" else "minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.items:
            schema["items"] = {"type": "object", "properties": {item.name: item.json_schema() for item in self.items}}
        if self.default is not None:
            schema["default"] = self.default
        schema["description"] = self.describe()
        return schema


def _shown(number: float) -> str:
    """A bound as people write it: 4294967295, 1.5, 1e-07."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def by_name(fields: Iterable[Field]) -> dict[str, Field]:
    return {field.name: field for field in fields}


def defaults(fields: Iterable[Field]) -> dict[str, Any]:
    return {field.name: field.default for field in fields}


def read_entries(fields: Iterable[Field], entries: dict[str, str], warnings: list[str], keep: bool = False) -> dict:
    """The fields whose infotext entries are in `entries`, read as their kind; the entries are taken out (`keep`:
    left for other readers, as "Denoising strength" is for hires fix and img2img). A value that does not read is left
    out with a warning."""
    found: dict = {}
    for field in fields:
        converter = KINDS[field.kind][2]
        if field.infotext in entries and converter is not None:
            value = entries[field.infotext] if keep else entries.pop(field.infotext)
            read_value(found, field.name, field.infotext, value, converter, warnings)
    return found


def from_rest(fields: Iterable[Field], payload: Mapping, settings: Mapping) -> dict:
    """The fields A1111 clients send under the same meaning: by their body names (null: not given; a dotted name is
    nested, and its extension reads it) and by their override_settings names."""
    found = {}
    for field in fields:
        if field.rest and "." not in field.rest and payload.get(field.rest) is not None:
            found[field.name] = payload[field.rest]
        if field.setting and field.setting in settings:
            found[field.name] = settings[field.setting]
    return found
