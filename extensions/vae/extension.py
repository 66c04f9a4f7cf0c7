"""A VAE chosen per request, as A1111's "SD VAE": `Automatic` (the model's own) or one from the VAE folder
(library.py), by the UI's dropdown, gradio_client's `vae`, REST's `override_settings.sd_vae` or PNG Info's `VAE`.

The chosen VAE goes into the request's own view of the pipeline (a pipeline hook, before ControlNet's, which builds
on the view's components), so it encodes and decodes that request only and the shared pipelines never change: the
next request without one has the model's VAE by construction. Written in the infotext as A1111 does: `VAE hash:
0123456789, VAE: name`.

Big images: the hook also switches the VAE's tiling for the request's size (models/vae_tiling.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from extensions.base import Extension, Route, Settings
from extensions.vae.fields import VAE
from extensions.vae.library import AUTOMATIC, VaeLibrary
from models.vae_tiling import tile_for


@dataclass(frozen=True)
class VaePart:
    name: str


class Vae(Extension):
    name = "vae"
    fields = (VAE,)
    modes = ("txt2img", "img2img", "inpaint", "outpaint")

    def __init__(self, folder: str | Path):
        self.library = VaeLibrary(folder)

    @classmethod
    def from_settings(cls, settings: Settings) -> Vae:
        settings.vae_dir.mkdir(parents=True, exist_ok=True)  # so users see where to drop VAEs
        return cls(settings.vae_dir)

    def install(self, manager) -> None:
        manager.pipeline_hooks.append(self._hook)

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> VaePart | None:
        name = self.library.check_name(fields.get(VAE.name, VAE.default))
        return VaePart(name) if name != AUTOMATIC else None

    def _hook(self, pipe, request, arguments: dict, parameters: dict):
        part = request.part(self.name)
        own = pipe.vae
        vae = own
        if part is not None:
            vae = self.library.load(part.name, own).to(device=own.device, dtype=own.dtype)
            parameters["VAE hash"] = self.library.short_hash(part.name)
            parameters[VAE.infotext] = part.name
        tile_for(vae, request.width, request.height)
        if vae is not own:
            pipe = type(pipe)(**{**pipe.components, "vae": vae})
            pipe.set_progress_bar_config(disable=True)
        return pipe, arguments

    # -- infotext and REST ---------------------------------------------------------------------------------

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        entries.pop("VAE hash", None)
        name = entries.pop(VAE.infotext, None)
        if name is None:
            return {}
        if name not in self.library.names():
            warnings.append(f"VAE: {name!r} is not in the VAE folder; using Automatic")
            return {"vae": AUTOMATIC}
        return {"vae": name}

    def from_rest(self, payload: dict, endpoint: str, fields: dict) -> str:
        settings = payload.get("override_settings")
        if isinstance(settings, dict) and VAE.setting in settings:
            name = settings[VAE.setting]  # A1111: "Automatic", "None" (the model's own too) or the file's name
            fields[VAE.name] = AUTOMATIC if name in ("None", None) else (
                name.removesuffix(".safetensors") if isinstance(name, str) else name)
        return endpoint

    def in_rest_words(self, message: str) -> str:
        return message.replace("vae ", "override_settings.sd_vae ", 1) if message.startswith("vae ") else message

    def rest_routes(self) -> list[Route]:
        def listing() -> list[dict]:
            return [{"model_name": name, "filename": path.relative_to(self.library.folder).as_posix()}
                    for name, path in self.library.entries().items()]

        return [Route("GET", "/sdapi/v1/sd-vae", listing)]

    def panel(self, tab):
        from extensions.vae.panel import vae_panel

        return vae_panel(self, tab)

