"""The refiner's fields, under A1111's names (its txt2img / img2img bodies, and its infotext's "Refiner" entries)."""

from __future__ import annotations

from models.fields import Field

REFINER_CHECKPOINT = Field("refiner_checkpoint", "text", "", label="Refiner", rest="refiner_checkpoint",
                           infotext="Refiner",
                           help="an SDXL refiner (or SDXL model) from the checkpoint folder, or a Hub id, that takes "
                                "over the denoising at the switch (empty: none)")
REFINER_SWITCH_AT = Field("refiner_switch_at", "number", 0.8, minimum=0.01, maximum=1.0, step=0.01,
                          label="Switch at", rest="refiner_switch_at", infotext="Refiner switch at",
                          help="the fraction of the steps the model runs before the refiner takes over")
