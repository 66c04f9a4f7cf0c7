"""A1111's refiner: another SDXL model takes over the denoising at a fraction of the steps, as the `Refiner`
extension."""

from extensions.refiner.extension import Refiner

__all__ = ["Refiner"]
