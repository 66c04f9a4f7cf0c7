"""The VAE extension's field: A1111's SD VAE."""

from __future__ import annotations

from extensions.vae.library import AUTOMATIC
from models.fields import Field

VAE = Field("vae", "choice", AUTOMATIC, label="SD VAE", setting="sd_vae", infotext="VAE",
            help="Automatic: the model's own; or a VAE from the VAE folder by name (GET /sdapi/v1/sd-vae lists them)")
