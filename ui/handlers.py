"""Gradio-facing handlers: translate component values into service calls and service errors into gr.Error.

Parameter names are the API's keyword names (`gradio_client` calls `/txt2img` with `prompt=`, `seed=`, ...).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
from pathlib import Path

import gradio as gr
from PIL import Image

from models.zerogpu import duration_from_call, gpu
from service.studio import Generation, StudioService

log = logging.getLogger(__name__)

MASK_MODES = ("Inpaint masked", "Inpaint not masked")  # A1111's words for invert_mask off / on


class Handlers:
    def __init__(self, service: StudioService):
        self.service = service
        # On a ZeroGPU Space each generation holds a GPU for a duration estimated from its own arguments;
        # elsewhere gpu() returns the method itself.
        for mode in ("txt2img", "img2img", "inpaint", "outpaint"):
            method = getattr(self, mode)
            setattr(self, mode, gpu(method, duration_from_call(method, mode)))

    def txt2img(
        self, prompt, negative_prompt, seed, steps, guidance_scale, width, height, sampler, batch_size,
        controlnet_units=None, progress=gr.Progress(),
    ):
        return self._run(
            "txt2img", progress, prompt=prompt, negative_prompt=negative_prompt, seed=seed, steps=steps,
            guidance_scale=guidance_scale, width=width, height=height, sampler=sampler, batch_size=batch_size,
            controlnet_units=controlnet_units,
        )

    def img2img(
        self, prompt, image, negative_prompt, seed, steps, guidance_scale, width, height, sampler, batch_size,
        strength, controlnet_units=None, progress=gr.Progress(),
    ):
        return self._run(
            "img2img", progress, prompt=prompt, image=image, negative_prompt=negative_prompt, seed=seed,
            steps=steps, guidance_scale=guidance_scale, width=width, height=height, sampler=sampler,
            batch_size=batch_size, strength=strength, controlnet_units=controlnet_units,
        )

    def inpaint(
        self, prompt, image, mask, negative_prompt, seed, steps, guidance_scale, width, height, sampler,
        batch_size, strength, mask_blur, invert_mask, inpaint_area, padding, masked_content, controlnet_units=None,
        progress=gr.Progress(),
    ):
        return self._run(
            "inpaint", progress, prompt=prompt, image=image, mask=mask, negative_prompt=negative_prompt,
            seed=seed, steps=steps, guidance_scale=guidance_scale, width=width, height=height, sampler=sampler,
            batch_size=batch_size, strength=strength, mask_blur=mask_blur, invert_mask=invert_mask,
            inpaint_area=inpaint_area, padding=padding, masked_content=masked_content,
            controlnet_units=controlnet_units,
        )

    def inpaint_editor(
        self, prompt, editor, mask_upload, negative_prompt, seed, steps, guidance_scale, width, height,
        sampler, batch_size, strength, mask_blur, mask_mode, inpaint_area, padding, masked_content,
        controlnet_units=None, progress=gr.Progress(),
    ):
        """The inpaint tab: the mask is what was painted in the editor, unless a mask image was uploaded."""
        image, painted = editor_image_and_mask(editor)
        return self.inpaint(
            prompt, image, mask_upload if mask_upload is not None else painted, negative_prompt, seed, steps,
            guidance_scale, width, height, sampler, batch_size, strength, mask_blur, mask_mode == MASK_MODES[1],
            inpaint_area, padding, masked_content, controlnet_units, progress,
        )

    def controlnet_detect(self, image, module, processor_res=512, threshold_a=None, threshold_b=None,
                          pixel_perfect=True):
        """The preprocessor's map of an image (/controlnet_detect); pixel perfect: at the image's own resolution."""
        try:
            return map_file(self.service.control_map(image, module, processor_res, threshold_a, threshold_b,
                                                     pixel_perfect))
        except ValueError as error:
            raise gr.Error(str(error)) from None

    def preview(self, image, module, processor_res, threshold_a, threshold_b, pixel_perfect, resize_mode, width,
                height, tab_image=None):
        """A unit's Preview button: the map the generation will use, from the unit's image, else the tab's (an
        editor gives its background). It is fitted to the generation size, Width x Height; in inpaint, where the
        map is fitted to the picture and then cropped like it, to the picture's size."""
        picture = None
        if isinstance(tab_image, dict):
            tab_image = picture = editor_image_and_mask(tab_image)[0]
        if image is None and tab_image is None:
            raise gr.Error("Preview: upload a control image first")
        size = picture.size if picture is not None else (width, height)
        try:
            return map_file(self.service.control_map(image if image is not None else tab_image, module,
                                                     processor_res, threshold_a, threshold_b, pixel_perfect,
                                                     resize_mode, size))
        except ValueError as error:
            raise gr.Error(str(error)) from None

    def outpaint(
        self, prompt, image, left, right, up, down, overlap, fill, negative_prompt, seed, steps, guidance_scale,
        width, height, sampler, batch_size, strength, progress=gr.Progress(),
    ):
        return self._run(
            "outpaint", progress, prompt=prompt, image=image, left=left, right=right, up=up, down=down,
            overlap=overlap, fill=fill, negative_prompt=negative_prompt, seed=seed, steps=steps,
            guidance_scale=guidance_scale, width=width, height=height, sampler=sampler, batch_size=batch_size,
            strength=strength,
        )

    def outpaint_editor(
        self, prompt, editor, left, right, up, down, overlap, fill, negative_prompt, seed, steps, guidance_scale,
        width, height, sampler, batch_size, strength, progress=gr.Progress(),
    ):
        """The inpaint tab's Outpaint button: extends the picture in the editor (its painted mask is not used)."""
        image, _ = editor_image_and_mask(editor)
        return self.outpaint(
            prompt, image, left, right, up, down, overlap, fill, negative_prompt, seed, steps, guidance_scale,
            width, height, sampler, batch_size, strength, progress,
        )

    def interrupt(self) -> None:
        self.service.interrupt()

    def _run(self, mode: str, progress: gr.Progress, **inputs):
        def on_step(done: int, total: int) -> None:
            progress((done, total), desc="Sampling", unit="steps")

        try:
            if mode == "outpaint":
                result = self.service.outpaint(on_step=on_step, **inputs)
            else:
                result = self.service.generate(mode, on_step=on_step, **inputs)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        except Exception as error:  # never a bare stack trace for the user; the log keeps it
            log.exception("%s failed", mode)
            raise gr.Error(f"{mode} failed: {type(error).__name__}: {error}") from None
        for warning in result.warnings:
            gr.Warning(warning)
        return _outputs(result)


def _outputs(result: Generation):
    gallery = [(str(servable(path)), f"seed {seed}") for path, seed in zip(result.files, result.seeds)]
    return gallery, result.infotexts[0] if result.infotexts else "", "\n".join(result.warnings), result.infotexts


def editor_image_and_mask(editor) -> tuple[Image.Image | None, Image.Image | None]:
    """gr.ImageEditor gives {"background", "layers", "composite"}; the painted mask is the layers' alpha."""
    if not editor or editor.get("background") is None:
        return None, None
    background = editor["background"]
    mask = Image.new("L", background.size, 0)
    for layer in editor.get("layers") or []:
        if layer is not None and layer.mode == "RGBA":
            alpha = layer.getchannel("A").resize(background.size)
            mask.paste(255, mask=alpha.point(lambda a: 255 if a > 0 else 0))
    return background.convert("RGB"), mask


def select_infotext(infotexts: list[str], event: gr.SelectData) -> str:
    return infotexts[event.index] if infotexts and event.index < len(infotexts) else ""


def servable(path: Path) -> Path:
    """A saved image as Gradio may hand it out. Gradio copies results into its cache (under a content hash) from
    the working directory or the temp folder only; the output folder is not served as such, so no client can
    fetch images by their predictable names. From an output folder elsewhere, a copy in the temp folder."""
    resolved = Path(path).resolve()
    if any(resolved.is_relative_to(Path(folder).resolve()) for folder in (os.getcwd(), tempfile.gettempdir())):
        return path
    return _content_file(resolved.read_bytes(), resolved.name)


def map_file(image: Image.Image) -> str:
    """A control map as a PNG file named by its content. Returned as a PIL image, Gradio would rewrite one cache
    file in place for every equal map, and a client downloading it meanwhile could get it empty."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return str(_content_file(buffer.getvalue(), "map.png"))


def _content_file(data: bytes, name: str) -> Path:
    """`data` as temp/sd-studio/<its hash>/<name>, written whole before it is renamed into place (one file for
    equal contents, however often they come)."""
    path = Path(tempfile.gettempdir()) / "sd-studio" / hashlib.sha256(data).hexdigest()[:32] / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{name}.{threading.get_ident()}.part")
        part.write_bytes(data)
        os.replace(part, path)
    return path
