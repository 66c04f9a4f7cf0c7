"""A1111's Tiling: pictures that repeat seamlessly, as the `Tiling` extension."""

from extensions.tiling.extension import Tiling

__all__ = ["Tiling"]
