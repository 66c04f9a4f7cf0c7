"""A1111's soft inpainting, as the `SoftInpaint` extension."""

from extensions.soft_inpainting.extension import SoftInpaint

__all__ = ["SoftInpaint"]
