"""A1111's variation seeds (subseed, its strength, seed resize from), as the `Seeds` extension."""

from extensions.seeds.extension import Seeds

__all__ = ["Seeds"]
