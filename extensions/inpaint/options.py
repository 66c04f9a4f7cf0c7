"""The inpaint settings A1111 shows under the mask (blur, invert, area, padding, masked content), validated once
here so the tab, the API and the geometry code all refuse the same bad values with the same messages."""

from __future__ import annotations

from dataclasses import dataclass

from models.validate import boolean, one_of, whole_number

INPAINT_AREAS = ("Whole picture", "Only masked")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")  # A1111's order (its index is the API value)
MASK_BLUR_RANGE = (0, 64)
PADDING_RANGE = (0, 256)


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
        boolean("invert_mask", self.invert_mask)
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

