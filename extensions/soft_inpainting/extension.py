"""Soft inpainting (A1111 1.8's, Forge's built-in): grey mask values are partial strength, the latents are blended
with the original's at every step by the soft mask, and the final picture takes each pixel from the original or the
result by how much its area changed, so seams vanish. Its settings are the request's "soft_inpainting" part; REST
takes A1111's `alwayson_scripts["soft inpainting"].args`; the infotext has A1111's entries, read back by PNG Info.

The inpaint extension reads whether this part is there (its name is the switch's): under it, the mask's grey values
reach the model and the paste-back keeps the original only where the mask is 0."""

from __future__ import annotations

from collections.abc import Mapping

from extensions.base import Extension, alwayson_args, rename_words
from extensions.soft_inpainting.fields import ENABLED, FIELDS, SETTINGS, SoftSettings
from models.fields import Field, read_entries
from models.validate import brief

SCRIPT = "soft inpainting"  # its name among A1111's alwayson_scripts (any case)
REST_ARGS = Field("soft_inpainting_args", "args", rest=f"alwayson_scripts.{SCRIPT}.args",
                  help="A1111's soft inpainting: [enabled, " + ", ".join(
                      field.label.lower() for field in SETTINGS) + "]")


class SoftInpaint(Extension):
    name = ENABLED.name
    fields = FIELDS
    modes = ("inpaint",)
    rest_body = (REST_ARGS,)
    script = SCRIPT

    def install(self, manager) -> None:
        manager.pipeline_hooks.append(self._hook)

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> SoftSettings | None:
        if not ENABLED.check(fields.get(ENABLED.name, ENABLED.default)):
            return None
        return SoftSettings.from_fields(fields)

    def prepare(self, job) -> None:
        settings = job.request.part(self.name)
        if settings is not None:
            job.infotext.update(settings.infotext())

    def _hook(self, pipe, request, arguments: dict, parameters: dict):
        settings = request.part(self.name)
        if settings is None or request.mode != "inpaint":
            return pipe, arguments
        from extensions.soft_inpainting.pipeline import SoftInpainting  # torch and diffusers: on the model's side

        return SoftInpainting(pipe, settings), arguments

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        fields = read_entries(FIELDS, entries, warnings)
        if not fields.get(ENABLED.name):
            return {ENABLED.name: False} if ENABLED.name in fields else {}
        return {**{field.name: field.default for field in SETTINGS}, **fields}

    def from_rest(self, payload: dict, endpoint: str, fields: dict) -> str:
        """A1111's positional args: [enabled, schedule bias, preservation strength, transition contrast boost,
        mask influence, difference threshold, difference contrast]; those left out keep their defaults."""
        for args in alwayson_args(payload, SCRIPT):
            if not isinstance(args, list) or len(args) > len(FIELDS):
                raise ValueError(f'alwayson_scripts["{SCRIPT}"].args must be a list of at most {len(FIELDS)} '
                                 f"values ([enabled, {', '.join(field.name for field in SETTINGS)}]), "
                                 f"got {brief(args)}")
            fields.update(zip((field.name for field in FIELDS), args))
        return endpoint

    def script_arguments(self) -> tuple[Field, ...]:
        return FIELDS  # its positional args

    def in_rest_words(self, message: str) -> str:
        names = {field.name: f'alwayson_scripts["{SCRIPT}"].args[{index}]' for index, field in enumerate(FIELDS)}
        return rename_words(message, names)

    def panel(self, tab):
        if tab.mode != "inpaint":
            return None
        from extensions.soft_inpainting.panel import soft_inpainting_panel

        return soft_inpainting_panel()
