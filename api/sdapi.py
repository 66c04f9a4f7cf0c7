"""AUTOMATIC1111's REST API (/sdapi/v1/...) and sd-webui-controlnet's (/controlnet/...), with their paths, field
names and response shapes, so existing clients (webuiapi, Krita and Photoshop plugins, chat bots) work unchanged.
Generations go through the Gradio queue (api/queued.py); the rest reads the service directly."""

from __future__ import annotations

import base64
import io
import time

from fastapi import APIRouter, Depends, HTTPException

from api.edge import basic_auth, http_error, json_body
from api.payloads import decode_image, encode_png, job_from_payload, response
from api.queued import QueueFull, QueuedEndpoints
from extensions.controlnet import preprocessors
from models.samplers import SAMPLER_NAMES, SCHEDULE_TYPES, split_name
from service.infotext import parse_infotext, read_png_infotext
from service.pnginfo import read_infotext
from service.studio import StudioService


def build_router(service: StudioService, queued: QueuedEndpoints, credentials: tuple[str, str] | None) -> APIRouter:
    router = APIRouter(dependencies=[Depends(basic_auth(credentials))] if credentials else [])

    def generate(route: str, payload: dict) -> dict:
        try:
            job = job_from_payload(payload, route)
            if "sd_model_checkpoint" in (payload.get("override_settings") or {}):
                _switch(service, payload["override_settings"]["sd_model_checkpoint"])
            files, seeds, warnings = [], [], []
            for batch in range(job.n_iter):
                kwargs = dict(job.kwargs)
                if batch and isinstance(kwargs.get("seed"), int) and kwargs["seed"] >= 0:
                    kwargs["seed"] += batch * int(kwargs.get("batch_size", 1))
                elif batch and seeds:  # a random first seed: the next batches follow it, as A1111 does
                    kwargs["seed"] = seeds[-1] + 1
                batch_files, batch_seeds, batch_warnings = queued.run(job.endpoint, kwargs, job.images)
                files, seeds, warnings = files + batch_files, seeds + batch_seeds, warnings + batch_warnings
        except ValueError as error:
            raise http_error(error) from None
        except QueueFull as error:
            raise HTTPException(503, detail=f"the queue is full, try again later ({error})") from None
        infotexts = [read_png_infotext(path) or "" for path in files]
        return response([encode_png(path) for path in files], infotexts, seeds, payload, job, warnings)

    @router.post("/sdapi/v1/txt2img")
    def txt2img(payload: dict = Depends(json_body)) -> dict:
        return generate("txt2img", payload)

    @router.post("/sdapi/v1/img2img")
    def img2img(payload: dict = Depends(json_body)) -> dict:
        return generate("img2img", payload)

    @router.get("/sdapi/v1/sd-models")
    def sd_models() -> list[dict]:
        """The model in use, then the checkpoints one may switch to (names, never server paths)."""
        manager = service.manager
        listed = [{"title": _model_title(service), "model_name": manager.source.name, "hash": manager.model_hash,
                   "sha256": None, "filename": manager.source.name, "config": None}]
        return listed + [{"title": name, "model_name": name, "hash": None, "sha256": None, "filename": name,
                          "config": None} for name in service.checkpoints() if name != manager.source.name]

    @router.get("/sdapi/v1/samplers")
    def samplers() -> list[dict]:
        names = dict.fromkeys(split_name(name)[0] for name in SAMPLER_NAMES)
        return [{"name": name, "aliases": [], "options": {}} for name in names]

    @router.get("/sdapi/v1/schedulers")
    def schedulers() -> list[dict]:
        return [{"name": kind.lower(), "label": kind, "aliases": None, "default_rho": None, "need_inner_model": False}
                for kind in SCHEDULE_TYPES]

    @router.get("/sdapi/v1/loras")
    def loras() -> list[dict]:
        if service.loras is None:
            return []
        library = service.loras.library
        return [{"name": name, "alias": name, "path": library.resolve(name).relative_to(library.folder).as_posix(),
                 "metadata": {}} for name in library.names()]

    @router.post("/sdapi/v1/refresh-loras")
    def refresh_loras() -> None:
        if service.loras is not None:
            service.loras.library.names()  # rescans the folder

    @router.get("/sdapi/v1/options")
    def get_options() -> dict:
        return {"sd_model_checkpoint": _model_title(service), "sd_checkpoint_hash": service.manager.model_hash,
                "samples_format": "png", "outdir_samples": ""}  # A1111's "the default folder"; no server path

    @router.post("/sdapi/v1/options")
    def set_options(options: dict = Depends(json_body)) -> dict:
        if "sd_model_checkpoint" in options:
            try:
                _switch(service, options["sd_model_checkpoint"])
            except ValueError as error:
                raise http_error(error) from None
        return {"ignored_fields": sorted(key for key in options if key != "sd_model_checkpoint")}

    @router.get("/sdapi/v1/progress")
    def progress() -> dict:
        state = service.state
        done = state.step / state.steps if state.running and state.steps else 0.0
        elapsed = time.monotonic() - state.started if state.running else 0.0
        eta = elapsed / done - elapsed if done else 0.0
        return {
            "progress": done, "eta_relative": eta, "current_image": None, "textinfo": None,
            "state": {"skipped": False, "interrupted": state.interrupted, "job": "generate" if state.running else "",
                      "job_count": int(state.running), "job_timestamp": "", "job_no": state.job_count,
                      "sampling_step": state.step, "sampling_steps": state.steps},
        }

    @router.post("/sdapi/v1/interrupt")
    def interrupt() -> None:
        service.interrupt()

    @router.get("/sdapi/v1/scripts")
    def scripts() -> dict:  # webuiapi looks here for ControlNet
        names = ["controlnet"] if service.controlnets is not None else []
        return {"txt2img": names, "img2img": names}

    @router.post("/sdapi/v1/png-info")
    def png_info(payload: dict = Depends(json_body)) -> dict:
        try:
            text = read_infotext(decode_image(payload.get("image"), "image")) or ""
        except ValueError as error:
            raise http_error(error) from None
        prompt, negative, parameters = parse_infotext(text) if text else ("", "", {})
        return {"info": text, "items": {"parameters": text} if text else {},
                "parameters": {"Prompt": prompt, "Negative prompt": negative, **parameters} if text else {}}

    @router.get("/controlnet/model_list")
    def controlnet_models() -> dict:
        if service.controlnets is None:
            return {"model_list": []}
        library = service.controlnets.library
        return {"model_list": [library.infotext_name(name) for name in library.list_names()]}

    @router.get("/controlnet/module_list")
    def controlnet_modules() -> dict:
        return {"module_list": preprocessors.available()}

    @router.post("/controlnet/detect")
    def controlnet_detect(payload: dict = Depends(json_body)) -> dict:
        # Pixel perfect unless the client turns it off: each map at its image's own resolution, whatever
        # controlnet_processor_res says (A1111 clients send 512 by default, which blanks small images' edges).
        pixel_perfect = payload.get("controlnet_pixel_perfect", True)
        if not isinstance(pixel_perfect, bool):
            raise http_error(ValueError(f"controlnet_pixel_perfect must be true or false, got {pixel_perfect!r}"))
        try:
            images = payload.get("controlnet_input_images") or payload.get("controlnet_images") or []
            maps = [service.control_map(decode_image(image, f"controlnet_input_images[{index}]"),
                                        payload.get("controlnet_module", "none"),
                                        payload.get("controlnet_processor_res", 512),
                                        _threshold(payload.get("controlnet_threshold_a")),
                                        _threshold(payload.get("controlnet_threshold_b")),
                                        pixel_perfect=pixel_perfect)
                    for index, image in enumerate(images)]
        except ValueError as error:
            raise http_error(error) from None
        info = "Success"
        if pixel_perfect and "controlnet_processor_res" in payload:
            info += ("; pixel perfect: each map was detected at its image's own resolution, not at "
                     "controlnet_processor_res (send controlnet_pixel_perfect: false to use it)")
        return {"images": [_png_base64(image) for image in maps], "info": info}

    return router


def _switch(service: StudioService, title) -> None:
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"sd_model_checkpoint must be a model name, got {title!r}")
    name = title.split(" [")[0].strip()  # "name [hash]" as /sd-models lists it
    if name != service.manager.source.name:
        service.switch_model(name)


def _model_title(service: StudioService) -> str:
    manager = service.manager
    return f"{manager.source.name} [{manager.model_hash}]" if manager.model_hash else manager.source.name


def _threshold(value):
    return None if value in (None, -1) else value


def _png_base64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
