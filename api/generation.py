"""/sdapi/v1/txt2img and /sdapi/v1/img2img: an A1111 body becomes calls of our endpoints (api/payloads.py), which run
through the Gradio queue (api/queued.py), `n_iter` batches with the seed advancing by batch; the answer is A1111's."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from api.edge import http_error, json_body
from api.payloads import encode_png, job_from_payload, response
from api.queued import QueueFull, QueuedEndpoints
from models.infotext import read_png_infotext
from service.studio import StudioService


def add_routes(router: APIRouter, service: StudioService, queued: QueuedEndpoints) -> None:
    def generate(route: str, payload: dict) -> dict:
        try:
            job = job_from_payload(payload, route, service.extensions)
            if "sd_model_checkpoint" in (payload.get("override_settings") or {}):
                switch(service, payload["override_settings"]["sd_model_checkpoint"])
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
            raise http_error(error, service.extensions) from None
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


def switch(service: StudioService, title) -> None:
    """sd_model_checkpoint: a model by the title /sd-models lists ("name [hash]") or by name."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"sd_model_checkpoint must be a model name, got {title!r}")
    name = title.split(" [")[0].strip()
    if name != service.manager.source.name:
        service.switch_model(name)
