"""The REST routes that read or set the app's state: models, samplers, schedulers, options, progress, interrupt,
scripts and PNG info."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from api.edge import http_error, json_body
from api.generation import switch
from api.options import Options
from models.images import decode_image, png_base64
from models.infotext import parse_infotext
from models.sampler_names import SAMPLER_NAMES, SCHEDULE_TYPES, aliases, split_name
from service.pnginfo import read_infotext
from service.studio import StudioService


def add_routes(router: APIRouter, service: StudioService, options: Options, flags: dict) -> None:
    @router.get("/sdapi/v1/sd-models")
    def sd_models() -> list[dict]:
        """The model in use, then the checkpoints one may switch to (names, never server paths); beside A1111's
        keys, each model's family ("SDXL", "SD 1.x", "SD 2.x v-prediction") where it can be told."""
        manager, families = service.manager, service.checkpoint_families()
        listed = [{"title": model_title(service), "model_name": manager.source.name, "hash": manager.model_hash,
                   "sha256": None, "filename": manager.source.name, "config": None, "family": manager.family.name}]
        return listed + [{"title": name, "model_name": name, "hash": None, "sha256": None, "filename": name,
                          "config": None, "family": families.get(name)}
                         for name in service.checkpoints() if name != manager.source.name]

    @router.get("/sdapi/v1/samplers")
    def samplers() -> list[dict]:
        names = dict.fromkeys(split_name(name)[0] for name in SAMPLER_NAMES)
        return [{"name": name, "aliases": aliases(name), "options": {}} for name in names]

    @router.get("/sdapi/v1/schedulers")
    def schedulers() -> list[dict]:
        return [{"name": kind.lower(), "label": kind, "aliases": None, "default_rho": None, "need_inner_model": False}
                for kind in SCHEDULE_TYPES]

    @router.get("/sdapi/v1/options")
    def get_options() -> dict:
        return {"sd_model_checkpoint": model_title(service), "sd_checkpoint_hash": service.manager.model_hash,
                "samples_format": "png", "outdir_samples": "",  # A1111's "the default folder"; no server path
                **options.values()}

    @router.post("/sdapi/v1/options")
    def set_options(body: dict = Depends(json_body)) -> None:
        try:
            checked = options.check(body)
            if "sd_model_checkpoint" in body:
                switch(service, body["sd_model_checkpoint"])
        except ValueError as error:
            raise http_error(error) from None
        options.write(checked)

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

    @router.post("/sdapi/v1/skip")
    def skip() -> None:
        """A1111's skip ends the running image and goes on with its batch's next; here a call makes its batch's
        images together, so the call stops as Interrupt stops it."""
        service.interrupt()

    @router.get("/sdapi/v1/cmd-flags")
    def cmd_flags() -> dict:
        """The app's options as it was started (no credentials and no server paths), A1111's where they have one."""
        return dict(flags)

    @router.get("/sdapi/v1/hypernetworks")
    def hypernetworks() -> list:
        return []  # not supported: hypernetworks went out of use with SD 1.x's LoRAs (docs/rest.md)

    @router.post("/sdapi/v1/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        service.checkpoints()  # the folder is read again on every listing

    @router.post("/sdapi/v1/unload-checkpoint")
    def unload_checkpoint() -> None:
        """The device freed of the model's weights until the next job (or reload-checkpoint); waits for the running
        job."""
        service.manager.unload()

    @router.post("/sdapi/v1/reload-checkpoint")
    def reload_checkpoint() -> None:
        service.manager.reload()

    @router.get("/sdapi/v1/memory")
    def memory() -> dict:
        return memory_facts()

    @router.get("/sdapi/v1/script-info")
    def script_info() -> list[dict]:
        """The scripts /sdapi/v1/scripts names, with their arguments as their fields declare them."""
        always_on = [{"name": extension.script, "is_alwayson": True, "is_img2img": tab == "img2img",
                      "args": [_argument(field) for field in extension.script_arguments()]}
                     for tab in ("txt2img", "img2img") for extension in _always_on(service, tab)]
        return always_on + [{"name": script.title.lower(), "is_alwayson": False, "is_img2img": tab == "img2img",
                             "args": [_argument(field) for field in script.arguments]}
                            for tab, some in _scripts(service).items() for script in some]

    @router.get("/sdapi/v1/scripts")
    def scripts() -> dict:  # webuiapi looks here for ControlNet; A1111 lists its scripts' titles in lower case
        return {tab: [*(script.title.lower() for script in some),
                      *(extension.script for extension in _always_on(service, tab))]
                for tab, some in _scripts(service).items()}

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


def _argument(field) -> dict:
    """A script argument as A1111's script-info describes it."""
    return {"label": field.label or field.name, "value": field.default, "minimum": field.minimum,
            "maximum": field.maximum, "step": field.step, "choices": list(field.choices) or None}


def memory_facts() -> dict:
    """A1111's /memory: the process's RAM, and the GPU's when there is one (bytes)."""
    import psutil
    import torch

    ram = psutil.virtual_memory()
    facts: dict = {"ram": {"free": ram.available, "used": psutil.Process().memory_info().rss, "total": ram.total}}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        active = {"current": torch.cuda.memory_allocated(), "peak": torch.cuda.max_memory_allocated()}
        facts["cuda"] = {"system": {"free": free, "used": total - free, "total": total}, "active": active}
    else:
        facts["cuda"] = {"error": "no CUDA device"}
    return facts


def _always_on(service: StudioService, tab: str) -> list:
    """The extensions that are A1111 always-on scripts of a tab (img2img's take inpaint jobs too)."""
    return [extension for extension in service.extensions if extension.script and
            (tab in extension.modes or tab == "img2img" and "inpaint" in extension.modes)]


def _scripts(service: StudioService) -> dict[str, list]:
    """Every extension's selectable scripts, by A1111's tab."""
    every = [script for extension in service.extensions for script in extension.scripts()]
    return {tab: [script for script in every if tab in script.modes] for tab in ("txt2img", "img2img")}
