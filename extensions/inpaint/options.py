"""The inpaint settings A1111 shows under the mask (blur, invert, area, padding, masked content), validated once
here so the tab, the API and the geometry code all refuse the same bad values with the same messages."""

from __future__ import annotations

from dataclasses import dataclass

INPAINT_AREAS = ("Whole picture", "Only masked")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")  # A1111's order (its index is the API value)
MASK_BLUR_RANGE = (0, 64)
PADDING_RANGE = (0, 256)


def whole_number(field: str, value, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high]. JSON may deliver 4.0 for 4, so integral floats pass; 4.5 and True do not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ValueError(f"{field} must be a whole number {bounds}, got {value!r}")
    return value


def multiple_of_8(field: str, value) -> int:
    """A generation side: the VAE works on 8-pixel blocks, so anything else would be cropped or padded by the model."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 8 or value % 8:
        raise ValueError(f"{field} must be a positive multiple of 8, got {value!r}")
    return value


def one_of(field: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class InpaintOptions:
    mask_blur: int = 4
    invert_mask: bool = False  # A1111's "Mask mode: Inpaint not masked"
    inpaint_area: str = "Whole picture"
    padding: int = 32  # "Only masked padding, pixels": context kept around the mask's bounding box
    masked_content: str = "original"

    def __post_init__(self) -> None:
        # Frozen: the float-to-int normalisation has to go through object.__setattr__.
        object.__setattr__(self, "mask_blur", whole_number("mask_blur", self.mask_blur, *MASK_BLUR_RANGE))
        object.__setattr__(self, "padding", whole_number("padding", self.padding, *PADDING_RANGE))
        if not isinstance(self.invert_mask, bool):
            raise ValueError(f"invert_mask must be true or false, got {self.invert_mask!r}")
        one_of("inpaint_area", self.inpaint_area, INPAINT_AREAS)
        one_of("masked_content", self.masked_content, MASKED_CONTENT)

    @property
    def only_masked(self) -> bool:
        return self.inpaint_area == "Only masked"

    def infotext(self) -> dict[str, str | int]:
        """The entries A1111 writes into the PNG parameters; defaults it leaves out are left out here too."""
        entries: dict[str, str | int] = {"Mask blur": self.mask_blur}
        if self.only_masked:
            entries["Inpaint area"] = "Only masked"
            entries["Masked area padding"] = self.padding
        if self.masked_content != "original":
            entries["Masked content"] = self.masked_content
        if self.invert_mask:
            entries["Mask mode"] = "Inpaint not masked"
        return entries

