"""/sdapi/v1/txt2img and /sdapi/v1/img2img: an A1111 body becomes typed requests (api/payloads.py, then the
service's builder) that wait in the service's one job queue beside the UI's and gradio_client's, `n_iter` batches
with the seed advancing by batch; the answer is A1111's. A client that goes away has its job cancelled: removed from
the queue, or stopped after its current step."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api.edge import http_error, json_body
from api.payloads import encode_png, job_from_payload, response
from models.infotext import read_png_infotext
from service.queue import Cancelled, QueueFull, Unavailable
from service.studio import Generation, StudioService

POLL_SECONDS = 0.05


def add_routes(router: APIRouter, service: StudioService) -> None:
    async def generate(route: str, payload: dict, client: Request) -> dict:
        try:
            job = await run_in_threadpool(job_from_payload, payload, route, service.extensions)
            if "sd_model_checkpoint" in (payload.get("override_settings") or {}):
                await run_in_threadpool(switch, service, payload["override_settings"]["sd_model_checkpoint"])
            files, seeds, warnings = [], [], []
            for batch in range(job.n_iter):
                kwargs = dict(job.kwargs)
                if batch and isinstance(kwargs.get("seed"), int) and kwargs["seed"] >= 0:
                    kwargs["seed"] += batch * int(kwargs.get("batch_size", 1))
                elif batch and seeds:  # a random first seed: the next batches follow it, as A1111 does
                    kwargs["seed"] = seeds[-1] + 1
                generation = await _run(service, job.endpoint.strip("/"), kwargs, client)
                files, seeds = files + generation.files, seeds + generation.seeds
                warnings += generation.warnings
        except ValueError as error:
            raise http_error(error, service.extensions) from None
        except QueueFull as error:
            raise HTTPException(503, detail=f"the queue is full, try again later ({error})") from None
        except Unavailable as error:
            raise HTTPException(503, detail=f"the job could not run, try again ({error})") from None
        except Cancelled as error:
            raise HTTPException(503, detail=f"the job was cancelled ({error})") from None
        infotexts = [read_png_infotext(path) or "" for path in files]
        return response([encode_png(path) for path in files], infotexts, seeds, payload, job, warnings)

    @router.post("/sdapi/v1/txt2img")
    async def txt2img(client: Request, payload: dict = Depends(json_body)) -> dict:
        return await generate("txt2img", payload, client)

    @router.post("/sdapi/v1/img2img")
    async def img2img(client: Request, payload: dict = Depends(json_body)) -> dict:
        return await generate("img2img", payload, client)


async def _run(service: StudioService, mode: str, fields: dict, client: Request) -> Generation:
    """One job through the queue; cancelled as soon as the client is gone."""
    job = await run_in_threadpool(lambda: service.submit(*service.build(mode, fields)))
    try:
        while not job.wait(0):
            if await client.is_disconnected():
                raise Cancelled("the client went away")
            await asyncio.sleep(POLL_SECONDS)
    except (Cancelled, asyncio.CancelledError):  # the client left, or the server is shutting down
        service.queue.cancel(job)
        raise
    return job.outcome()


def switch(service: StudioService, title) -> None:
    """sd_model_checkpoint: a model by the title /sd-models lists ("name [hash]") or by name."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"sd_model_checkpoint must be a model name, got {title!r}")
    name = title.split(" [")[0].strip()
    if name != service.manager.source.name:
        service.switch_model(name)
