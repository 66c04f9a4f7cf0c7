"""Click to mask with Segment Anything (SAM), as the `Segment` extension."""

from extensions.segment.extension import Segment

__all__ = ["Segment"]
