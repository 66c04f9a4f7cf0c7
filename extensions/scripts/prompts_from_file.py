"""A1111's prompts from file or textbox: one job per line, a line either a prompt or A1111's options
(`--prompt "a cat" --negative_prompt "blurry" --steps 10 --seed 5 ...`), each the job those settings make alone.

Arguments, positional as A1111's: iterate the seed every line, the same random seed for every line, where the typed
prompt goes ("start" or "end"; A1111 1.7+), the lines.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from extensions.base import Script, ScriptPlan
from extensions.scripts.values import fixed_seed
from models.fields import Field
from models.validate import brief

TITLE = "Prompts from file or textbox"
ARGUMENTS = (
    Field("checkbox_iterate", "switch", False, label="Iterate seed every line"),
    Field("checkbox_iterate_batch", "switch", False, label="Use same random seed for all lines"),
    Field("prompt_position", "choice", "start", choices=("start", "end"), label="Insert prompts at the"),
    Field("prompt_txt", "text", "", label="List of prompt inputs"),
)
# A1111's options in a line -> our fields (None: read and left alone, as A1111's saving options are here)
OPTIONS = {"prompt": "prompt", "negative_prompt": "negative_prompt", "styles": "styles", "seed": "seed",
           "subseed": "subseed", "subseed_strength": "subseed_strength", "seed_resize_from_h": "seed_resize_from_h",
           "seed_resize_from_w": "seed_resize_from_w", "sampler_name": "sampler", "sampler_index": "sampler",
           "batch_size": "batch_size", "steps": "steps", "cfg_scale": "guidance_scale", "width": "width",
           "height": "height", "tiling": "tiling", "denoising_strength": "strength", "sd_model": "sd_model",
           "n_iter": None, "restore_faces": None, "outpath_samples": None, "outpath_grids": None,
           "prompt_for_display": None, "do_not_save_samples": None, "do_not_save_grid": None}
NUMBERS = {"seed", "subseed", "seed_resize_from_h", "seed_resize_from_w", "batch_size", "steps", "width", "height",
           "n_iter"}
DECIMALS = {"subseed_strength", "cfg_scale", "denoising_strength"}


class PromptsFromFile(Script):
    title = TITLE
    arguments = ARGUMENTS

    def plan(self, mode: str, fields: Mapping[str, Any], args: list, warnings: list[str]) -> ScriptPlan:
        if len(args) == 3:  # before A1111 1.7: no prompt position
            args = [args[0], args[1], "start", args[2]]
        if len(args) != 4:
            raise ValueError(f"script_args: prompts from file takes 4 arguments (iterate seed, same seed, prompt "
                             f"position, the lines), got {len(args)}")
        values = []
        for index, (field, value) in enumerate(zip(ARGUMENTS, args)):
            try:
                values.append(field.check(value))
            except ValueError as error:
                raise ValueError(f"script_args[{index}]: {error}") from None
        iterate, same_seed, position, text = values  # the text within a prompt's bound (its field's check)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise ValueError("script_args[3]: give at least one line")
        if len(lines) > self.max_jobs:
            raise ValueError(f"script_args[3]: {len(lines)} lines; at most {self.max_jobs} (--max-script-jobs)")
        seed = fixed_seed(fields.get("seed")) if iterate or same_seed else fields.get("seed", -1)
        jobs = []
        for number, line in enumerate(lines):
            options = _options(line, number + 1) if line.startswith("--") else {"prompt": line}
            job = {**fields, "seed": seed}
            model = options.pop("sd_model", None)
            for name in ("prompt", "negative_prompt"):
                typed = fields.get(name) or ""
                if name in options and typed:
                    options[name] = f"{options[name]} {typed}" if position == "start" else f"{typed} {options[name]}"
            job.update(options)
            jobs.append((mode, job, model))
            if iterate:
                seed += int(job.get("batch_size") or 1)
        return ScriptPlan(TITLE, lambda: jobs, lambda cells: [], size=len(jobs))


def _options(line: str, number: int) -> dict:
    """A line of A1111's `--name value` options as our fields (a flag without a value is true)."""
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise ValueError(f"script_args[3]: line {number}: {error}") from None
    found: dict = {}
    while words:
        name = words.pop(0)
        if not name.startswith("--") or name[2:] not in OPTIONS:
            raise ValueError(f"script_args[3]: line {number}: unknown option {brief(name)}; the options: "
                             f"{', '.join('--' + option for option in OPTIONS)}")
        value: Any = True if not words or words[0].startswith("--") else words.pop(0)
        key = name[2:]
        try:
            if key in NUMBERS:
                value = int(value)
            elif key in DECIMALS:
                value = float(value)
            elif key == "styles":
                value = [style.strip() for style in str(value).split(",") if style.strip()]
            elif key == "tiling":
                value = value is True or str(value).lower() in ("true", "1", "yes")
        except ValueError:
            raise ValueError(f"script_args[3]: line {number}: --{key} must be a number, got {value!r}") from None
        if OPTIONS[key] is not None:
            found[OPTIONS[key]] = value
    return found
