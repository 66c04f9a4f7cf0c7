"""The REST routes that read or set the app's state: models, samplers, schedulers, options, progress, interrupt,
scripts and PNG info."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from api.edge import http_error, json_body
from api.generation import switch
from models.images import decode_image, png_base64
from models.infotext import parse_infotext
from models.sampler_names import SAMPLER_NAMES, SCHEDULE_TYPES, split_name
from service.pnginfo import read_infotext
from service.studio import StudioService


def add_routes(router: APIRouter, service: StudioService) -> None:
    @router.get("/sdapi/v1/sd-models")
    def sd_models() -> list[dict]:
        """The model in use, then the checkpoints one may switch to (names, never server paths)."""
        manager = service.manager
        listed = [{"title": model_title(service), "model_name": manager.source.name, "hash": manager.model_hash,
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

    @router.get("/sdapi/v1/options")
    def get_options() -> dict:
        return {"sd_model_checkpoint": model_title(service), "sd_checkpoint_hash": service.manager.model_hash,
                "samples_format": "png", "outdir_samples": ""}  # A1111's "the default folder"; no server path

    @router.post("/sdapi/v1/options")
    def set_options(options: dict = Depends(json_body)) -> dict:
        if "sd_model_checkpoint" in options:
            try:
                switch(service, options["sd_model_checkpoint"])
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
            "progress": done, "eta_relative": eta, "textinfo": None,
            "current_image": png_base64(state.current_image) if state.running and state.current_image else None,
            "state": {"skipped": False, "interrupted": state.interrupted, "job": "generate" if state.running else "",
                      "job_count": int(state.running), "job_timestamp": "", "job_no": state.calls_started,
                      "sampling_step": state.step, "sampling_steps": state.steps},
        }

    @router.get("/studio/v1/queue")
    def queue() -> dict:
        """The job queue's state and how many jobs each diffusers call ran (this app's own; not A1111's)."""
        return service.queue_metrics()

    @router.post("/sdapi/v1/interrupt")
    def interrupt() -> None:
        service.interrupt()

    @router.get("/sdapi/v1/scripts")
    def scripts() -> dict:  # webuiapi looks here for ControlNet
        names = [extension.script for extension in service.extensions if extension.script]
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


def model_title(service: StudioService) -> str:
    manager = service.manager
    return f"{manager.source.name} [{manager.model_hash}]" if manager.model_hash else manager.source.name
