"""Upscalers as a slice: the upscaler folder (library.py), tiled model runs (upscaling.py), the Extras tab
(panel.py), gradio_client's /upscale, and A1111's GET /sdapi/v1/upscalers and POST /sdapi/v1/extra-single-image.

An upscale shares the device with generations: it runs under the model's lock, after the running job."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from extensions.base import Extension, Route
from extensions.upscale.library import UpscalerLibrary
from extensions.upscale.upscaling import PIXEL_UPSCALERS, upscale
from models.images import decode_image, load_image, png_base64
from models.validate import in_range, whole_number

SCALE_RANGE = (1.0, 4.0)
MAX_RESULT_SIDE = 4096  # px: an upscaled picture's longest side


class Upscale(Extension):
    name = "upscale"
    modes = ()  # no generation fields of its own (yet): it serves the Extras tab and its routes
    tab_name = "extras"

    def __init__(self, folder: str | Path):
        self.library = UpscalerLibrary(folder)
        self.manager = None

    @classmethod
    def from_config(cls, config) -> Upscale:
        config.upscaler_dir.mkdir(parents=True, exist_ok=True)  # so users see where to drop models
        return cls(config.upscaler_dir)

    def install(self, manager) -> None:
        self.manager = manager

    def upscaler_names(self) -> list[str]:
        return [*PIXEL_UPSCALERS, *self.library.names()]

    def upscale(self, image, upscaler: str = "Lanczos", scale: float = 2.0,
                size: tuple[int, int] | None = None) -> Image.Image:
        """`image` larger by `scale`, or to `size` (width, height), with the upscaler of that name. Errors name
        the field and the value."""
        picture = load_image(image, "image")
        if picture is None:
            raise ValueError("image is required to upscale")
        names = self.upscaler_names()
        if not isinstance(upscaler, str) or upscaler not in names:
            raise ValueError(self.library.missing(str(upscaler), names))
        if size is None:
            scale = in_range("scale", scale, SCALE_RANGE)
            size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
            field = "scale"
        else:
            size = tuple(whole_number(name, side, 1) for name, side in zip(("width", "height"), size))
            field = "width and height"
        if max(size) > MAX_RESULT_SIDE:
            raise ValueError(f"{field}: the result would be {size[0]}x{size[1]} pixels; at most {MAX_RESULT_SIDE} "
                             "a side")
        with self.manager.lock:  # after the running generation: one job on the device at a time
            return upscale(picture, upscaler, size, self.library.load, self.manager.runtime.device)

    # -- REST, as A1111 ------------------------------------------------------------------------------------

    def rest_routes(self) -> list[Route]:
        return [Route("GET", "/sdapi/v1/upscalers", self._listing),
                Route("POST", "/sdapi/v1/extra-single-image", self._extra_single_image, takes_body=True)]

    def _listing(self) -> list[dict]:
        """A1111's shape; a model's scale is known once it has been loaded (spandrel reads it from the weights)."""
        pixel = [{"name": name, "model_name": None, "model_path": None, "model_url": None,
                  "scale": None if name == "None" else 4} for name in PIXEL_UPSCALERS]
        return pixel + [{"name": name, "model_name": name, "model_path": None, "model_url": None, "scale": None}
                        for name in self.library.names()]

    def _extra_single_image(self, payload: dict) -> dict:
        """resize_mode 0: by upscaling_resize; 1: to upscaling_resize_w x upscaling_resize_h. Face restoration and
        a second upscaler are not here: said in html_info when asked for."""
        if not isinstance(payload, dict):
            raise ValueError(f"the request body must be a JSON object, got {type(payload).__name__}")
        picture = decode_image(payload.get("image"), "image")
        mode = whole_number("resize_mode", payload.get("resize_mode", 0), 0, 1)
        upscaler = payload.get("upscaler_1", "None")
        if mode == 0:
            result = self.upscale(picture, upscaler, payload.get("upscaling_resize", 2))
        else:
            size = (payload.get("upscaling_resize_w", 512), payload.get("upscaling_resize_h", 512))
            result = self.upscale(picture, upscaler, size=size)
        unused = [name for name in ("gfpgan_visibility", "codeformer_visibility", "extras_upscaler_2_visibility")
                  if payload.get(name)]
        info = f"Postprocess upscale to: {result.width}x{result.height}, upscaler: {upscaler}"
        if unused:
            info += f"; not available here, ignored: {', '.join(unused)}"
        return {"html_info": f"<p>{info}</p>", "image": png_base64(result)}

    # -- gradio_client and the UI --------------------------------------------------------------------------

    def register_endpoints(self, image_file) -> None:
        from extensions.upscale.panel import upscale_endpoint

        upscale_endpoint(self, image_file)

    def tab(self, image_file):
        from extensions.upscale.panel import extras_tab

        return extras_tab(self, image_file)
