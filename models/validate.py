"""The one set of value checks every request goes through, whichever interface it came from. Each returns the
value in its proper type (JSON and sliders send 512.0 for 512) or raises ValueError naming the field and the
value; nothing is clamped silently. No torch here: requests are validated before any model is touched."""

from __future__ import annotations

import difflib

from models.limits import check_text


def brief(value, limit: int = 100) -> str:
    """A value as a message shows it: its repr, cut at `limit` characters (a 20 MB value is not echoed back)."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown):,} characters)"


def integer(field: str, value) -> int:
    """A whole number: integral floats pass as ints; 4.5, True and "4" do not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be a whole number, got {brief(value)}")
    return value


def whole_number(field: str, value, low: int, high: int | None = None) -> int:
    """A whole number in [low, high] (no upper bound when high is None)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ValueError(f"{field} must be a whole number {bounds}, got {brief(value)}")
    return value


def in_range(field: str, value, bounds: tuple) -> float | int:
    """A number (int or float, not bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{field} must be from {bounds[0]} to {bounds[1]}, got {brief(value)}")
    return value


def multiple_of_8(field: str, value, low: int = 8, high: int | None = None) -> int:
    """A generation side: the VAE works on 8-pixel blocks, so anything else would be cropped or padded by the model."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value % 8 or value < low or (high and value > high):
        if high is None:
            raise ValueError(f"{field} must be a positive multiple of 8, got {brief(value)}")
        raise ValueError(f"{field} must be a multiple of 8 from {low} to {high}, got {brief(value)}")
    return value


def one_of(field: str, value, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(choices)}, got {brief(value)}")
    return value


def choice(field: str, value, choices: tuple[str, ...]) -> str:
    """One of `choices`, given by name or, as A1111's API also takes them, by index."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
        return choices[value]
    return one_of(field, value, choices)


def boolean(field: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be true or false, got {brief(value)}")
    return value


def text(field: str, value, limit: int | None = None) -> str:
    """Text within models.limits' bound (checked before anything else reads it)."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text, got {brief(value)}")
    return check_text(field, value) if limit is None else check_text(field, value, limit)


def did_you_mean(name: str, known, cutoff: float = 0.6) -> str:
    """"; did you mean 'x'?" naming the known names closest to a mistyped one (at most three), or "". A name in a
    subfolder ("other/pose") is also found by its last part ("pose", "Pose"). Case does not count."""
    known = list(known)
    by_last_part = [candidate for candidate in known if candidate.rsplit("/", 1)[-1].lower() == name.lower()]
    by_lower = {candidate.lower(): candidate for candidate in reversed(known)}
    close = by_last_part + [by_lower[match] for match in difflib.get_close_matches(name.lower(), by_lower, n=3,
                                                                                   cutoff=cutoff)
                            if by_lower[match] not in by_last_part]
    return f"; did you mean {' or '.join(map(repr, close[:3]))}?" if close else ""
