"""An ADetailer-compatible detailer, as the `Detailer` extension."""

from extensions.detailer.extension import Detailer

__all__ = ["Detailer"]
