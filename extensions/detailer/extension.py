"""A detailer compatible with ADetailer: after the job's pictures are made (after hires fix, in the same job), each
unit finds faces (or what its detector finds) and inpaints each one at the job's size, pasting it back, so small
faces get the model's full resolution. Its units are the request's "detailer" part; REST takes ADetailer's
`alwayson_scripts.ADetailer.args` ([enabled, skip_img2img, {ad_*}, ...]) and serves /adetailer/v1/*; the infotext
has ADetailer's entries, read back by PNG Info; an accordion in txt2img and img2img."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from extensions.base import (
    SOLO,
    Extension,
    Panel,
    PreparedRequest,
    Route,
    Settings,
    TabContext,
    alwayson_args,
    rename_words,
)
from extensions.detailer import detection
from extensions.detailer.fields import (
    AD_MODEL,
    MAX_UNITS,
    ORDINALS,
    SKIP_IMG2IMG,
    UNIT_FIELDS,
    DetailerPart,
    DetailerUnit,
    detail_prompts,
)
from models.fields import KINDS, Field
from models.infotext import read_value
from models.request import Pass
from models.validate import brief

SCRIPT = "ADetailer"  # its name among alwayson_scripts (any case) and in /sdapi/v1/scripts
API_VERSION = "25.3.0"  # the ADetailer release whose API (args, routes, ad_* names) this follows
UNITS = Field("detailer_units", "list", [], items=UNIT_FIELDS, rest=f"alwayson_scripts.{SCRIPT}.args",
              label="ADetailer units",
              help=f"ADetailer's args: [enabled, skip_img2img, unit, ...] (each unit an object of ad_* settings; at "
                   f"most {MAX_UNITS})")


class Detailer(Extension):
    name = "detailer"
    fields = (UNITS, SKIP_IMG2IMG)
    modes = ("txt2img", "img2img")
    script = SCRIPT

    def __init__(self, annotator_dir: Path | None = None):
        self.annotator_dir = annotator_dir  # where MediaPipe's face detectors are

    @classmethod
    def from_settings(cls, settings: Settings) -> Detailer:
        return cls(settings.annotator_dir)

    def detectors(self) -> list[str]:
        return list(detection.detectors(self.annotator_dir))

    def install(self, manager) -> None:
        self.manager = manager
        manager.pipeline_hooks.append(self._hook)

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> DetailerPart | None:
        raw = fields.get(UNITS.name)
        if not raw:
            return None
        if not isinstance(raw, (list, tuple)) or len(raw) > MAX_UNITS:
            raise ValueError(f"detailer_units must be a list of at most {MAX_UNITS} units, got {brief(raw)}")
        units = tuple(DetailerUnit.parse(index, unit, warnings) for index, unit in enumerate(raw))
        for index, unit in enumerate(units):
            if unit.active and unit.ad_model not in self.detectors():
                raise ValueError(f"ADetailer unit {index}: ad_model {unit.ad_model!r} is not a detector here; "
                                 f"choose one of None, {', '.join(self.detectors())}")
            if unit.active:  # a LoRA its prompt names: checked now, not mid-run
                for prompt in detail_prompts(unit.ad_prompt, fields.get("prompt") or ""):
                    try:
                        self.services.prompt_parts(prompt)
                    except ValueError as error:
                        raise ValueError(f"ADetailer unit {index}: ad_prompt: {error}") from None
        active = tuple(unit for unit in units if unit.active)
        skip = mode == "img2img" and SKIP_IMG2IMG.check(fields.get(SKIP_IMG2IMG.name, False))
        return DetailerPart(active, skip) if active else None

    def batch_key(self, request):
        return SOLO if request.part(self.name) is not None else None  # its passes follow each picture's own finds

    def passes(self, request) -> list[Pass]:
        """For what the job costs: one detection per unit and picture (a face), as most pictures have."""
        part = request.part(self.name)
        if part is None:
            return []
        return [Pass(*unit.size(request), unit.pass_steps(request))
                for unit in part.units for _ in range(request.batch_size)]

    def prepare(self, job: PreparedRequest) -> None:
        part = job.request.part(self.name)
        if part is None:
            return
        notes: list[str] = []  # written by the passes; the job's warnings once its pictures are made
        job.request = job.request.with_part(self.name, dataclasses.replace(part, notes=notes))
        job.finish.append(lambda images: (job.warnings.extend(notes), images)[1])
        for index, unit in enumerate(part.units):
            job.infotext.update(unit.infotext(index))

    def _hook(self, pipe, request, arguments: dict, parameters: dict):
        part = request.part(self.name)
        if part is None:
            return pipe, arguments
        from extensions.detailer.pipeline import Detailing  # diffusers: on the model's side

        return Detailing(pipe, part, request, self.manager, self.services.prompt_parts, self.annotator_dir), arguments

    # -- infotext and REST -----------------------------------------------------------------------------------

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        """ADetailer's entries, unit by unit ("ADetailer model", "ADetailer model 2nd", ...)."""
        units = []
        for suffix in ORDINALS:
            if AD_MODEL.infotext + suffix not in entries:
                break
            unit: dict = {}
            for field in UNIT_FIELDS:
                value = entries.pop(field.infotext + suffix, None)
                if value is not None:
                    read_value(unit, field.name, field.infotext + suffix, value, KINDS[field.kind][2], warnings)
            units.append(unit)
        entries.pop("ADetailer version", None)
        return {UNITS.name: units} if units else {}

    def from_rest(self, payload: dict, endpoint: str, fields: dict) -> str:
        """ADetailer's args: [enabled, skip_img2img, unit, ...], the two flags optional (older clients send the
        units alone)."""
        for args in alwayson_args(payload, SCRIPT):
            if not isinstance(args, list):
                raise ValueError(f"alwayson_scripts.{SCRIPT}.args must be a list ([enabled, skip_img2img, unit, "
                                 f"...]), got {brief(args)}")
            flags = []
            while args and isinstance(args[0], bool) and len(flags) < 2:
                flags, args = [*flags, args[0]], args[1:]
            if (flags[0] if flags else True) and args:
                fields[UNITS.name] = args
                fields[SKIP_IMG2IMG.name] = flags[1] if len(flags) > 1 else False
        return endpoint

    def in_rest_words(self, message: str) -> str:
        return rename_words(message, {UNITS.name: f"alwayson_scripts.{SCRIPT}.args",
                                      SKIP_IMG2IMG.name: f"alwayson_scripts.{SCRIPT}.args[1]"})

    def rest_routes(self) -> list[Route]:
        return [Route("GET", "/adetailer/v1/ad_model", lambda: {"ad_model": ["None", *self.detectors()]}),
                Route("GET", "/adetailer/v1/version", lambda: {"version": API_VERSION})]

    def script_arguments(self) -> tuple[Field, ...]:
        return UNIT_FIELDS

    def panel(self, tab: TabContext) -> Panel | None:
        if tab.mode not in self.modes:
            return None
        from extensions.detailer.panel import detailer_panel

        return detailer_panel(tab, ["None", *self.detectors()])

