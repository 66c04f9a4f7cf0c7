"""A1111's prompt matrix: `a castle|at night|in the rain` makes one image for each combination of the parts after
the first (4 here), each the job that prompt makes alone, as a grid labelled by the parts it has.

Arguments, positional as A1111's: put the variable parts at the start, a different seed for each image, which prompt
the parts are in ("positive" or "negative"), how the parts join ("comma" or "space"), grid margins (px).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extensions.base import Cell, Script, ScriptPlan
from extensions.scripts.grid import image_grid, with_legend
from extensions.scripts.values import fixed_seed, with_entries
from models.fields import Field
from models.validate import brief

TITLE = "Prompt matrix"
ARGUMENTS = (
    Field("put_at_start", "switch", False, label="Put variable parts at start of prompt"),
    Field("different_seeds", "switch", False, label="Use different seed for each picture"),
    Field("prompt_type", "choice", "positive", choices=("positive", "negative"), label="Select prompt"),
    Field("variations_delimiter", "choice", "comma", choices=("comma", "space"), label="Select joining char"),
    Field("margin_size", "int", 0, minimum=0, maximum=500, label="Grid margins (px)"),
)


class PromptMatrix(Script):
    title = TITLE
    arguments = ARGUMENTS

    def plan(self, mode: str, fields: Mapping[str, Any], args: list, warnings: list[str]) -> ScriptPlan:
        values = [*args, *(field.default for field in ARGUMENTS[len(args):])][:len(ARGUMENTS)]
        for index, (field, value) in enumerate(zip(ARGUMENTS, values)):
            try:
                values[index] = field.check(value)
            except ValueError as error:
                raise ValueError(f"script_args[{index}]: {error}") from None
        at_start, different_seeds, prompt_type, delimiter, margin = values
        key = "prompt" if prompt_type == "positive" else "negative_prompt"
        parts = (fields.get(key) or "").split("|")
        options = [part.strip().strip(",") for part in parts[1:]]
        if not options:
            raise ValueError(f"{key}: a prompt matrix needs parts after '|', got {brief(fields.get(key) or '')}")
        if 2 ** len(options) > self.max_jobs:
            raise ValueError(f"{key}: {len(options)} parts make {2 ** len(options)} prompts; at most {self.max_jobs} "
                             "(--max-script-jobs)")
        joiner = ", " if delimiter == "comma" else " "
        seed = fixed_seed(fields.get("seed"))
        jobs = []
        for number in range(2 ** len(options)):
            chosen = [option for bit, option in enumerate(options) if number & (1 << bit)]
            text = joiner.join([*chosen, parts[0]] if at_start else [parts[0], *chosen])
            jobs.append((mode, {**fields, key: text, "seed": seed + (number if different_seeds else 0),
                                "batch_size": 1}, None))
        across = (len(options) + 1) // 2  # the first parts vary across the columns, the others down the rows

        def compose(cells: list[Cell]) -> list:
            first = next(cell for cell in cells if cell.images)
            grid = image_grid([cell.images[0] if cell.images else None for cell in cells], 2 ** across, margin)
            columns = [_label(options[:across], number) for number in range(2 ** across)]
            rows = [_label(options[across:], number) for number in range(2 ** (len(options) - across))]
            grid = with_legend(grid, first.images[0].size, columns, rows if len(options) > 1 else [], margin)
            return [(grid, with_entries(first.infotexts[0], {"Script": TITLE}))]

        return ScriptPlan(TITLE, lambda: jobs, compose, size=len(jobs))


def _label(options: list[str], number: int) -> str:
    """The parts a column (or row) has, and those it has not (struck: "-")."""
    return " ".join(f"+{option}" if number & (1 << bit) else f"-{option}" for bit, option in enumerate(options))
