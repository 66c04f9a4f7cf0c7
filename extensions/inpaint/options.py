"""The inpaint settings A1111 shows under the mask (blur, mode, area, padding, masked content), declared once here:
the tab, the API and the geometry code all refuse the same bad values with the same messages."""

from __future__ import annotations

from dataclasses import dataclass

from models.fields import Field

INPAINT_AREAS = ("Whole picture", "Only masked")
# A1111's order (its index is the API value), then LaMa's fill (4, as the lama-cleaner masked content extension adds)
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing", "lama")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")  # A1111's words for invert_mask off / on

MASK_BLUR = Field("mask_blur", "whole", 4, minimum=0, maximum=64, step=1, label="Mask blur", rest="mask_blur",
                  infotext="Mask blur", help="pixels of the mask's edge blended between kept and repainted")
INVERT_MASK = Field("invert_mask", "switch", False, label="Mask mode", infotext="Mask mode",
                    help="repaint what is not masked (A1111's Inpaint not masked)")
INPAINT_AREA = Field("inpaint_area", "choice", "Whole picture", choices=INPAINT_AREAS, label="Inpaint area",
                     infotext="Inpaint area", help="Only masked: the masked area at the full generation size")
PADDING = Field("padding", "whole", 32, minimum=0, maximum=256, step=4, label="Only masked padding, pixels",
                rest="inpaint_full_res_padding", infotext="Masked area padding",
                help="context kept around the mask with Only masked")
MASKED_CONTENT_FIELD = Field("masked_content", "choice", "original", choices=MASKED_CONTENT, label="Masked content",
                             infotext="Masked content",
                             help="what the masked area starts from: fill / latent noise / latent nothing matter "
                                  "for 4-channel models; lama: LaMa's fill (its weights in the annotator folder)")
FIELDS = (MASK_BLUR, INVERT_MASK, INPAINT_AREA, PADDING, MASKED_CONTENT_FIELD)


@dataclass(frozen=True)
class InpaintOptions:
    mask_blur: int = MASK_BLUR.default
    invert_mask: bool = INVERT_MASK.default  # A1111's "Mask mode: Inpaint not masked"
    inpaint_area: str = INPAINT_AREA.default
    padding: int = PADDING.default  # "Only masked padding, pixels": context kept around the mask's bounding box
    masked_content: str = MASKED_CONTENT_FIELD.default

    def __post_init__(self) -> None:
        for field in FIELDS:  # frozen: the values in their proper types go in through object.__setattr__
            object.__setattr__(self, field.name, field.check(getattr(self, field.name)))

    @property
    def only_masked(self) -> bool:
        return self.inpaint_area == "Only masked"

    def infotext(self) -> dict[str, str | int]:
        """The entries A1111 writes into the PNG parameters; defaults it leaves out are left out here too."""
        entries: dict[str, str | int] = {MASK_BLUR.infotext: self.mask_blur}
        if self.only_masked:
            entries[INPAINT_AREA.infotext] = "Only masked"
            entries[PADDING.infotext] = self.padding
        if self.masked_content != MASKED_CONTENT_FIELD.default:
            entries[MASKED_CONTENT_FIELD.infotext] = self.masked_content
        if self.invert_mask:
            entries[INVERT_MASK.infotext] = MASK_MODES[1]
        return entries
