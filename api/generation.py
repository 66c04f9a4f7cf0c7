"""/sdapi/v1/txt2img and /sdapi/v1/img2img: an A1111 body becomes typed requests (api/payloads.py, then the
service's builder) that wait in the service's one job queue beside the UI's and gradio_client's, `n_iter` batches
with the seed advancing by batch; the answer is A1111's. A client that goes away has its job cancelled: removed from
the queue, or stopped after its current step."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from api.bodies import documented
from api.edge import http_error, json_body
from api.options import Options
from api.payloads import encode_png, response, rest_call
from models.infotext import read_png_infotext
from service.queue import Cancelled, polled
from service.studio import Generation, StudioService


def add_routes(router: APIRouter, service: StudioService, options: Options) -> None:
    async def generate(endpoint: str, payload: dict, client: Request) -> dict:
        settings = payload.get("override_settings")
        if options.written() and (settings is None or isinstance(settings, dict)):  # written settings, under its own
            payload = {**payload, "override_settings": {**options.written(), **(settings or {})}}
        try:
            call = await run_in_threadpool(rest_call, payload, endpoint, service.extensions)
            if "sd_model_checkpoint" in (payload.get("override_settings") or {}):
                await run_in_threadpool(switch, service, payload["override_settings"]["sd_model_checkpoint"])
            files, seeds, warnings = [], [], list(call.warnings)
            for batch in range(call.n_iter):
                fields = dict(call.fields)
                if batch and isinstance(fields.get("seed"), int) and fields["seed"] >= 0:
                    fields["seed"] += batch * int(fields.get("batch_size", 1))
                elif batch and seeds:  # a random first seed: the next batches follow it, as A1111 does
                    fields["seed"] = seeds[-1] + 1
                generation = await _run(service, call.endpoint, fields, client)
                files, seeds = files + generation.files, seeds + generation.seeds
                warnings += generation.warnings
        except Exception as error:
            raise http_error(error, service.extensions, "the job") from None
        infotexts = [read_png_infotext(path) or "" for path in files]
        return response([encode_png(path) for path in files], infotexts, seeds, payload, call, warnings)

    @router.post("/sdapi/v1/txt2img", **documented("txt2img", service.extensions))
    async def txt2img(client: Request, payload: dict = Depends(json_body)) -> dict:
        return await generate("txt2img", payload, client)

    @router.post("/sdapi/v1/img2img", **documented("img2img", service.extensions))
    async def img2img(client: Request, payload: dict = Depends(json_body)) -> dict:
        return await generate("img2img", payload, client)


async def _run(service: StudioService, endpoint: str, fields: dict, client: Request) -> Generation:
    """One job through the queue; cancelled as soon as the client is gone (or the server shuts down)."""
    job = await run_in_threadpool(lambda: service.submit(*service.build(endpoint, fields)))
    async with contextlib.aclosing(polled(job, service.queue)) as polls:
        async for _ in polls:
            if await client.is_disconnected():
                raise Cancelled("the client went away")
    return job.outcome()


def switch(service: StudioService, title) -> None:
    """sd_model_checkpoint: a model by the title /sd-models lists ("name [hash]") or by name."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"sd_model_checkpoint must be a model name, got {title!r}")
    name = title.split(" [")[0].strip()
    if name != service.manager.source.name:
        service.switch_model(name)
