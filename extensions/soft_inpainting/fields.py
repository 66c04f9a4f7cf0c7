"""Soft inpainting's fields, under A1111's names: its switch and six settings (their infotext keys are A1111's
"Soft inpainting ..." entries; REST takes them as `alwayson_scripts["soft inpainting"].args`, in this order)."""

from __future__ import annotations

from dataclasses import dataclass

from models.fields import Field

ENABLED = Field("soft_inpainting", "switch", False, label="Soft inpainting", infotext="Soft inpainting enabled",
                help="grey mask values are partial strength and the seam blends by how much each area changed")
SCHEDULE_BIAS = Field("soft_schedule_bias", "number", 1.0, minimum=0.0, maximum=8.0, step=0.1, label="Schedule bias",
                      infotext="Soft inpainting schedule bias",
                      help="shifts when the original is preserved: above 1 early in the denoising, below 1 late")
PRESERVATION_STRENGTH = Field("soft_preservation_strength", "number", 0.5, minimum=0.05, maximum=8.0, step=0.05,
                              label="Preservation strength", infotext="Soft inpainting preservation strength",
                              help="how strongly partially masked content is preserved")
TRANSITION_CONTRAST_BOOST = Field("soft_transition_contrast_boost", "number", 4.0, minimum=1.0, maximum=32.0,
                                  step=0.5, label="Transition contrast boost",
                                  infotext="Soft inpainting transition contrast boost",
                                  help="restores the contrast a blend of the two loses in partially masked areas")
MASK_INFLUENCE = Field("soft_mask_influence", "number", 0.0, minimum=0.0, maximum=1.0, step=0.05,
                       label="Mask influence", infotext="Soft inpainting mask influence",
                       help="how strongly the mask biases the difference threshold")
DIFFERENCE_THRESHOLD = Field("soft_difference_threshold", "number", 0.5, minimum=0.0, maximum=8.0, step=0.25,
                             label="Difference threshold", infotext="Soft inpainting difference threshold",
                             help="how much an area may change before the original is no longer blended in")
DIFFERENCE_CONTRAST = Field("soft_difference_contrast", "number", 2.0, minimum=0.0, maximum=8.0, step=0.25,
                            label="Difference contrast", infotext="Soft inpainting difference contrast",
                            help="how sharp the change is between blended and not blended")
SETTINGS = (SCHEDULE_BIAS, PRESERVATION_STRENGTH, TRANSITION_CONTRAST_BOOST, MASK_INFLUENCE, DIFFERENCE_THRESHOLD,
            DIFFERENCE_CONTRAST)
FIELDS = (ENABLED, *SETTINGS)


@dataclass(frozen=True)
class SoftSettings:
    """The request's "soft_inpainting" part: present when it is on."""

    schedule_bias: float = SCHEDULE_BIAS.default
    preservation_strength: float = PRESERVATION_STRENGTH.default
    transition_contrast_boost: float = TRANSITION_CONTRAST_BOOST.default
    mask_influence: float = MASK_INFLUENCE.default
    difference_threshold: float = DIFFERENCE_THRESHOLD.default
    difference_contrast: float = DIFFERENCE_CONTRAST.default

    @classmethod
    def from_fields(cls, fields) -> SoftSettings:
        return cls(*(field.check(fields.get(field.name, field.default)) for field in SETTINGS))

    def infotext(self) -> dict:
        """A1111's entries: every setting, after "Soft inpainting enabled: True"."""
        return {ENABLED.infotext: True, **{field.infotext: value for field, value in zip(SETTINGS, self.values())}}

    def values(self) -> tuple[float, ...]:
        return (self.schedule_bias, self.preservation_strength, self.transition_contrast_boost, self.mask_influence,
                self.difference_threshold, self.difference_contrast)
