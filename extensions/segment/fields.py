"""/segment's parameters (gradio_client) and its REST body's fields, declared once."""

from models.fields import Field
from models.segment import MAX_POINTS

IMAGE = Field("image", "image", rest="image", label="Picture", help="the picture to select in (base64 on REST)")
POINTS = Field("points", "args", rest="points", label="Points",
               help=f"[[x, y], ...]: the clicked pixels, 1 to {MAX_POINTS} (or that list as JSON text)")
LABELS = Field("labels", "args", rest="labels", label="Labels",
               help="one per point: 1 includes it, 0 excludes it (at least one 1); none: every point 1")
BODY = (IMAGE, POINTS, LABELS)
