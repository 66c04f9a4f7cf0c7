"""Grids of images with their legend, as A1111's scripts draw them: the column labels above, the row labels to the
left, black text on white, each label wrapped to its cell. Cells keep their pixels (a cell of the grid is the image
as it was made)."""

from __future__ import annotations

import math
import textwrap

from PIL import Image, ImageDraw, ImageFont

MIN_FONT = 14  # px: small cells (the demo model's 64 px) still get readable labels
PADDING = 6


def image_grid(images: list[Image.Image | None], columns: int, margin: int = 0) -> Image.Image:
    """`images` row by row, `columns` to a row, `margin` px between them; None (a job that failed or did not run)
    leaves its cell blank."""
    width, height = next(image.size for image in images if image is not None)
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * width + (columns - 1) * margin, rows * height + (rows - 1) * margin), "white")
    for index, image in enumerate(images):
        if image is not None:
            place = ((index % columns) * (width + margin), (index // columns) * (height + margin))
            grid.paste(image.convert("RGB"), place)
    return grid


def with_legend(grid: Image.Image, cell: tuple[int, int], columns: list[str], rows: list[str],
                margin: int = 0) -> Image.Image:
    """`grid` (cells of `cell` size, `margin` apart) with `columns`' labels over its columns and `rows`' to the left
    of its rows (an empty list: no labels on that side)."""
    font = ImageFont.load_default(size=max(MIN_FONT, (cell[0] + cell[1]) // 25))
    line = font.getbbox("Ag")[3] + 2
    column_lines = [_wrapped(label, font, cell[0]) for label in columns]
    row_width = max([0, *(font.getlength(text) for label in rows for text in label.split("\n"))])
    left = math.ceil(row_width) + 2 * PADDING if any(rows) else 0
    top = max([0, *(len(lines) for lines in column_lines)]) * line + 2 * PADDING if any(columns) else 0
    framed = Image.new("RGB", (grid.width + left, grid.height + top), "white")
    framed.paste(grid, (left, top))
    draw = ImageDraw.Draw(framed)
    for index, lines in enumerate(column_lines):
        centre = left + index * (cell[0] + margin) + cell[0] / 2
        for number, text in enumerate(lines):
            y = top - PADDING - (len(lines) - number) * line
            draw.text((centre - font.getlength(text) / 2, y), text, fill="black", font=font)
    for index, label in enumerate(rows):
        middle = top + index * (cell[1] + margin) + cell[1] / 2
        draw.text((PADDING, middle - line / 2), label, fill="black", font=font)
    return framed


def _wrapped(label: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """The label in lines no wider than `width` (a word longer than that stays whole)."""
    if not label:
        return []
    characters = max(1, int(width / max(1.0, font.getlength("n"))))
    return textwrap.wrap(label, characters) or [label]
