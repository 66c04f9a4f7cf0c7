"""A1111's X/Y/Z plot: one job per combination of up to three axes' values (steps, CFG scale, sampler, a prompt's
word, the checkpoint, ...), each the job the same settings make alone, laid out as a labelled grid.

Arguments, positional as A1111's: x type, x values, x values (dropdown), the same for y and z, draw legend, include
lone images, include sub grids, keep -1 for seeds, then (as A1111's versions added them) margin size and csv mode.
An axis type is A1111's label ("Steps", "CFG Scale", "Prompt S/R", ...) or its index in A1111 1.10's list.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from extensions.base import Cell, Script, ScriptPlan
from extensions.scripts.grid import image_grid, with_legend
from extensions.scripts.values import MAX_VALUES, fixed_seed, joined_values, numbers, split_values, with_entries
from models.fields import Field
from models.request import tab_of
from models.sampler_names import join_name, split_name
from models.validate import brief

TITLE = "X/Y/Z plot"


@dataclass(frozen=True)
class Axis:
    label: str
    kind: Any  # int, float, str, or "order" (permutations of the values)
    apply: Callable[[dict, Any, list], str | None]  # sets a job's fields; returns the model it needs, if any
    show: Callable[[Any], str] | None = None  # the value as the legend writes it (default "Label: value")

    def legend(self, value) -> str:
        return self.show(value) if self.show is not None else f"{self.label}: {value}"


def _field(name: str) -> Callable[[dict, Any, list], None]:
    def apply(fields: dict, value, values: list) -> None:
        fields[name] = value
    return apply


def _search_replace(fields: dict, value: str, values: list) -> None:
    found = values[0]
    fields["prompt"] = (fields.get("prompt") or "").replace(found, value)
    fields["negative_prompt"] = (fields.get("negative_prompt") or "").replace(found, value)


def _order(fields: dict, value: tuple, values: list) -> None:
    """The prompt with the given words in this order, where they stood (A1111's Prompt order)."""
    prompt = fields.get("prompt") or ""
    places = sorted((prompt.find(word), word) for word in value if word in prompt)
    parts, rest = [], prompt
    for _, word in places:
        at = rest.find(word)
        parts.append(rest[:at])
        rest = rest[at + len(word):]
    fields["prompt"] = "".join(part + word for part, word in zip(parts, value)) + rest


def _schedule(fields: dict, value: str, values: list) -> None:
    fields["sampler"] = join_name(split_name(fields.get("sampler") or "Euler a")[0], value)


def _styles(fields: dict, value: str, values: list) -> None:
    fields["styles"] = [*(fields.get("styles") or []), *(name.strip() for name in value.split(",") if name.strip())]


def _checkpoint(fields: dict, value: str, values: list) -> str:
    return value


SUPPORTED = {axis.label: axis for axis in (
    Axis("Nothing", str, lambda fields, value, values: None, show=lambda value: ""),
    Axis("Seed", int, _field("seed")),
    Axis("Var. seed", int, _field("subseed")),
    Axis("Var. strength", float, _field("subseed_strength")),
    Axis("Steps", int, _field("steps")),
    Axis("Hires steps", int, _field("hr_second_pass_steps")),
    Axis("CFG Scale", float, _field("guidance_scale")),
    Axis("Prompt S/R", str, _search_replace, show=str),
    Axis("Prompt order", "order", _order, show=", ".join),
    Axis("Sampler", str, _field("sampler"), show=str),
    Axis("Hires sampler", str, _field("hr_sampler_name")),
    Axis("Checkpoint name", str, _checkpoint, show=str),
    Axis("Schedule type", str, _schedule),
    Axis("Clip skip", int, _field("clip_skip")),
    Axis("Denoising", float, _field("strength")),
    Axis("Hires upscaler", str, _field("hr_upscaler")),
    Axis("VAE", str, _field("vae")),
    Axis("Styles", str, _styles),
    Axis("Refiner checkpoint", str, _field("refiner_checkpoint"), show=str),
    Axis("Refiner switch at", float, _field("refiner_switch_at")),
)}
# A1111 1.10's axis lists, for types given by index (its txt2img and img2img tabs list different ones)
_BOTH = ["Checkpoint name", "Negative Guidance minimum sigma", "Sigma Churn", "Sigma min", "Sigma max", "Sigma noise",
         "Schedule type", "Schedule min sigma", "Schedule max sigma", "Schedule rho", "Eta", "Clip skip", "Denoising",
         "Initial noise multiplier", "Extra noise"]
_LATER = ["VAE", "Styles", "UniPC Order", "Face restore", "Token merging ratio", "Token merging ratio high-res",
          "Always discard next-to-last sigma", "SGM noise multiplier", "Refiner checkpoint", "Refiner switch at",
          "RNG source"]
A1111_AXES = {
    "txt2img": ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale", "Prompt S/R",
                "Prompt order", "Sampler", "Hires sampler", *_BOTH, "Hires upscaler", *_LATER],
    "img2img": ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "CFG Scale", "Image CFG Scale",
                "Prompt S/R", "Prompt order", "Sampler", *_BOTH, "Cond. Image Mask Weight", *_LATER],
}
_TXT2IMG_ONLY = {"Hires steps", "Hires sampler", "Hires upscaler"}

ARGUMENTS = (
    *(field for axis in "XYZ" for field in (
        Field(f"{axis.lower()}_type", "text", "Nothing" if axis != "X" else "Seed", label=f"{axis} type",
              help="an axis by A1111's label (Steps, CFG Scale, Sampler, Prompt S/R, ...) or its index"),
        Field(f"{axis.lower()}_values", "text", "", label=f"{axis} values",
              help="comma-separated; numbers also as 1-5, 1-9 (+2), 1-9 [3]"),
        Field(f"{axis.lower()}_values_dropdown", "names", [], label=f"{axis} values (list)",
              help="the values as a list (A1111's dropdown), used when the text is empty"))),
    Field("draw_legend", "switch", True, label="Draw legend"),
    Field("include_lone_images", "switch", False, label="Include sub images"),
    Field("include_sub_grids", "switch", False, label="Include sub grids"),
    Field("no_fixed_seeds", "switch", False, label="Keep -1 for seeds"),
    Field("margin_size", "int", 0, minimum=0, maximum=500, label="Grid margins (px)"),
    Field("csv_mode", "switch", False),  # A1111's text or dropdown values: here the text, else the list
)


class XyzPlot(Script):
    title = TITLE
    arguments = ARGUMENTS

    def plan(self, mode: str, fields: Mapping[str, Any], args: list, warnings: list[str]) -> ScriptPlan:
        tab = tab_of(mode)
        if len(args) < 9:
            raise ValueError(f"script_args: the X/Y/Z plot takes at least 9 arguments (x type, x values, x values "
                             f"list, the same for y and z), got {len(args)}")
        switches = [value for value in args[9:] if isinstance(value, bool)][:4]
        draw_legend, lone, sub_grids, no_fixed_seeds = switches + [True, False, False, False][len(switches):]
        margin = next((value for value in args[13:] if isinstance(value, int) and not isinstance(value, bool)), 0)
        if not 0 <= margin <= 500:
            raise ValueError(f"script_args: margin size must be from 0 to 500, got {margin}")
        axes = [self._axis(tab, args[3 * number], 3 * number) for number in range(3)]
        values = [self._values(axis, args[3 * number + 1], args[3 * number + 2], 3 * number + 1, fields)
                  for number, axis in enumerate(axes)]
        cells = len(values[0]) * len(values[1]) * len(values[2])
        if cells > self.max_jobs:
            raise ValueError(f"script_args: the X/Y/Z plot would have {cells} cells; at most {self.max_jobs} "
                             "(--max-script-jobs)")
        base = dict(fields)
        if not no_fixed_seeds:
            base["seed"] = fixed_seed(base.get("seed"))
            values = [[fixed_seed(value) for value in some] if axis.label in ("Seed", "Var. seed") else some
                      for axis, some in zip(axes, values)]
        xs, ys, zs = values
        jobs = []  # in the grid's order, x fastest (the runner groups them by checkpoint)
        for iz, iy, ix in itertools.product(range(len(zs)), range(len(ys)), range(len(xs))):
            job_fields, model = dict(base), None
            for axis, some, index in zip(axes, values, (ix, iy, iz)):
                model = axis.apply(job_fields, some[index], some) or model
            jobs.append((mode, job_fields, model))
        labels = [[axis.legend(value) for value in some] for axis, some in zip(axes, values)]
        entries = {"Script": TITLE}
        for letter, axis, raw in zip("XYZ", axes, (args[1], args[4], args[7])):
            if axis.label != "Nothing":
                entries[f"{letter} Type"], entries[f"{letter} Values"] = axis.label, _values_text(raw, args, letter)

        def compose(cells: list[Cell]) -> list:
            return _grids(cells, (len(xs), len(ys), len(zs)), labels, draw_legend, sub_grids, margin, entries)

        return ScriptPlan(TITLE, lambda: jobs, compose, keep_cells=lone, size=len(jobs))

    def choices(self, argument: str, mode: str) -> list[str] | None:
        if not argument.endswith("_type"):
            return None
        return [name for name in SUPPORTED if tab_of(mode) == "txt2img" or name not in _TXT2IMG_ONLY]

    @staticmethod
    def _axis(tab: str, kind, position: int) -> Axis:
        names = A1111_AXES[tab]
        if isinstance(kind, int) and not isinstance(kind, bool):
            if not 0 <= kind < len(names):
                raise ValueError(f"script_args[{position}]: axis index {kind} is not in A1111's {tab} list "
                                 f"(0 to {len(names) - 1})")
            kind = names[kind]
        if not isinstance(kind, str):
            raise ValueError(f"script_args[{position}]: an axis type is a label or an index, got {brief(kind)}")
        label = next((name for name in SUPPORTED if name.lower() == kind.strip().lower()), None)
        if label is None or tab == "img2img" and label in _TXT2IMG_ONLY:
            known = [name for name in SUPPORTED if tab == "txt2img" or name not in _TXT2IMG_ONLY]
            where = "is not available here" if kind in names else "is not an axis"
            raise ValueError(f"script_args[{position}]: axis {kind!r} {where}; the axes: {', '.join(known)}")
        return SUPPORTED[label]

    @staticmethod
    def _values(axis: Axis, text, listed, position: int, fields: Mapping) -> list:
        if axis.label == "Nothing":
            return [None]
        if listed and not (isinstance(text, str) and text.strip()):  # the dropdown's list (A1111's default mode)
            if not isinstance(listed, list) or not all(isinstance(value, str) for value in listed):
                raise ValueError(f"script_args[{position + 1}]: the values list must be a list of text, got "
                                 f"{brief(listed)}")
            text = joined_values(listed)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"script_args[{position}]: give {axis.label} at least one value")
        name = f"script_args[{position}] ({axis.label})"
        if axis.kind in (int, float):
            return numbers(name, text, axis.kind)
        found = split_values(text)
        if len(found) > MAX_VALUES:
            raise ValueError(f"{name}: more than {MAX_VALUES} values")
        if axis.kind == "order":
            if len(found) > 4:
                raise ValueError(f"{name}: at most 4 words to order ({len(found)}! orders otherwise)")
            return list(itertools.permutations(found))
        if axis.label == "Prompt S/R":
            prompts = f"{fields.get('prompt') or ''}\n{fields.get('negative_prompt') or ''}"
            if found[0] not in prompts:
                raise ValueError(f"{name}: did not find {found[0]!r} in the prompt or the negative prompt")
        return found


def _values_text(raw, args: list, letter: str) -> str:
    if isinstance(raw, str) and raw.strip():
        return raw
    listed = args["XYZ".index(letter) * 3 + 2]
    return joined_values(listed) if isinstance(listed, list) else ""


def _grids(cells: list[Cell], counts: tuple[int, int, int], labels: list[list[str]], legend: bool, sub_grids: bool,
           margin: int, entries: dict) -> list:
    """The plot's grid (the z values' grids side by side, each x across and y down), its infotext the first cell's
    with the plot's entries; with `sub_grids`, each z value's grid after it."""
    columns, rows, layers = counts
    first = next(cell for cell in cells if cell.images)
    size = first.images[0].size
    layer_grids = []
    for layer in range(layers):
        some = cells[layer * columns * rows:(layer + 1) * columns * rows]
        grid = image_grid([cell.images[0] if cell.images else None for cell in some], columns, margin)
        if legend:
            grid = with_legend(grid, size, labels[0] if columns > 1 or labels[0][0] else [],
                               labels[1] if rows > 1 or labels[1][0] else [], margin)
        layer_grids.append(grid)
    main = layer_grids[0]
    if layers > 1:
        main = image_grid(layer_grids, layers, margin)
        if legend:
            main = with_legend(main, layer_grids[0].size, labels[2], [], margin)
    infotext = with_entries(first.infotexts[0], entries)
    return [(main, infotext), *((grid, infotext) for grid in layer_grids if sub_grids and layers > 1)]
