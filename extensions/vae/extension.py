"""A VAE chosen per request, as A1111's "SD VAE": `Automatic` (the model's own) or one from the VAE folder
(library.py), by the UI's dropdown, gradio_client's `vae`, REST's `override_settings.sd_vae` or PNG Info's `VAE`.

The chosen VAE goes into the request's own view of the pipeline (a pipeline hook, before ControlNet's, which builds
on the view's components), so it encodes and decodes that request only and the shared pipelines never change: the
next request without one has the model's VAE by construction. Written in the infotext as A1111 does: `VAE hash:
0123456789, VAE: name`.

Big images: above 1024x1024 pixels the VAE encodes and decodes in tiles of 512 px (diffusers' tiled VAE, with
its blended overlaps), so a 2048x2048 decode needs about the memory of a 512 px one. Set on every request, so it
never carries over; at or below that size nothing changes (and pixels equal plain diffusers').
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from extensions.base import Extension, Route
from extensions.vae.library import AUTOMATIC, VaeLibrary

TILED_ABOVE = 1024 * 1024  # pixels: a bigger image goes through the VAE in tiles
TILE = 512  # px of a tile (SD 1.5's VAE's own; the demo model's would be 64)


@dataclass(frozen=True)
class VaePart:
    name: str


class Vae(Extension):
    name = "vae"
    fields = {"vae": AUTOMATIC}
    modes = ("txt2img", "img2img", "inpaint", "outpaint")
    rest_settings = frozenset({"sd_vae"})

    def __init__(self, folder: str | Path):
        self.library = VaeLibrary(folder)

    @classmethod
    def from_config(cls, config) -> Vae:
        config.vae_dir.mkdir(parents=True, exist_ok=True)  # so users see where to drop VAEs
        return cls(config.vae_dir)

    def install(self, manager) -> None:
        manager.pipeline_hooks.append(self._hook)

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> VaePart | None:
        name = self.library.check_name(fields.get("vae", AUTOMATIC))
        return VaePart(name) if name != AUTOMATIC else None

    def _hook(self, pipe, request, arguments: dict, parameters: dict):
        part = request.part(self.name)
        own = pipe.vae
        vae = own
        if part is not None:
            vae = self.library.load(part.name, own).to(device=own.device, dtype=own.dtype)
            parameters["VAE hash"] = self.library.short_hash(part.name)
            parameters["VAE"] = part.name
        tiled(vae, request.width * request.height > TILED_ABOVE)
        if vae is not own:
            pipe = type(pipe)(**{**pipe.components, "vae": vae})
            pipe.set_progress_bar_config(disable=True)
        return pipe, arguments

    # -- infotext and REST ---------------------------------------------------------------------------------

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        entries.pop("VAE hash", None)
        name = entries.pop("VAE", None)
        if name is None:
            return {}
        if name not in self.library.names():
            warnings.append(f"VAE: {name!r} is not in the VAE folder; using Automatic")
            return {"vae": AUTOMATIC}
        return {"vae": name}

    def from_rest(self, payload: dict, route: str, fields: dict) -> str:
        settings = payload.get("override_settings")
        if isinstance(settings, dict) and "sd_vae" in settings:
            name = settings["sd_vae"]  # A1111: "Automatic", "None" (the model's own too) or the file's name
            fields["vae"] = AUTOMATIC if name in ("None", None) else (
                name.removesuffix(".safetensors") if isinstance(name, str) else name)
        return route

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


def tiled(vae, on: bool) -> None:
    """Tiled encoding and decoding on or off, in TILE px tiles."""
    vae.use_tiling = on
    if on:
        vae.tile_sample_min_size = TILE
        vae.tile_latent_min_size = TILE // 2 ** (len(vae.config.block_out_channels) - 1)
