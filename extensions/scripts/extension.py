"""A1111's scripts: a request that names one (`script_name`, any case, with A1111's positional `script_args`) runs
the script's jobs instead of its own, through the one job queue, and gets the script's images (a grid) before
theirs. The scripts here are the X/Y/Z plot, the prompt matrix and prompts from file or textbox; other extensions
bring theirs (SD upscale comes with the upscalers), all listed by /sdapi/v1/scripts and /sdapi/v1/script-info and in
each tab's Script dropdown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from extensions.base import SOLO, Extension, Script, ScriptPlan, Settings
from extensions.scripts.fields import MAX_ARGS, MAX_JOBS, SCRIPT_ARGS, SCRIPT_NAME
from extensions.scripts.prompt_matrix import PromptMatrix
from extensions.scripts.prompts_from_file import PromptsFromFile
from extensions.scripts.xyz import XyzPlot
from models.request import tab_of
from models.validate import brief

NONE = "None"  # the dropdown's "no script"


@dataclass(frozen=True)
class ScriptsPart:
    plan: ScriptPlan


class Scripts(Extension):
    name = "scripts"
    fields = (SCRIPT_NAME, SCRIPT_ARGS)
    modes = ("txt2img", "img2img", "inpaint")

    def __init__(self, max_jobs: int = MAX_JOBS):
        self.own = (XyzPlot(max_jobs), PromptMatrix(max_jobs), PromptsFromFile(max_jobs))

    @classmethod
    def from_settings(cls, settings: Settings) -> Scripts:
        return cls(settings.max_script_jobs)

    def scripts(self) -> tuple[Script, ...]:
        return self.own

    def available(self, mode: str) -> list[Script]:
        """Every extension's scripts for `mode`'s tab."""
        every = self.services.scripts() if self.services is not None else list(self.own)
        return [script for script in every if tab_of(mode) in script.modes]

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> ScriptsPart | None:
        name = SCRIPT_NAME.check(fields.get(SCRIPT_NAME.name) or "").strip()
        if not name or name == NONE:
            return None
        scripts = self.available(mode)
        script = next((script for script in scripts if script.title.lower() == name.lower()), None)
        if script is None:
            raise ValueError(f"script_name: no script {brief(name)} for {tab_of(mode)}; the scripts: "
                             f"{', '.join(script.title for script in scripts)}")
        args = fields.get(SCRIPT_ARGS.name)
        args = [] if args is None else args
        if not isinstance(args, list) or len(args) > MAX_ARGS:
            raise ValueError(f"script_args must be a list of at most {MAX_ARGS} arguments, got {brief(args)}")
        own = {key: value for key, value in fields.items() if key not in (SCRIPT_NAME.name, SCRIPT_ARGS.name)}
        return ScriptsPart(script.plan(mode, own, args, warnings))

    def batch_key(self, request):
        return SOLO if request.part(self.name) is not None else None

    def script_plan(self, request) -> ScriptPlan | None:
        part = request.part(self.name)
        return part.plan if part is not None else None

    def panel(self, tab):
        from extensions.scripts.panel import scripts_panel

        return scripts_panel(self, tab)
