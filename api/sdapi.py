"""AUTOMATIC1111's REST API (/sdapi/v1/...) and the extensions' routes (sd-webui-controlnet's /controlnet/...), with
their paths, field names and response shapes, so existing clients (webuiapi, Krita and Photoshop plugins, chat bots)
work unchanged. One router, from route groups: generation (through the service's job queue: api/generation.py), the
listings and options (api/listings.py), progress and interrupt, PNG info, and each extension's own routes."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api import generation, listings
from api.bodies import body_documentation
from api.edge import basic_auth, http_error, json_body
from api.options import Options
from extensions.base import Route
from service.studio import StudioService


def build_router(service: StudioService, credentials: tuple[str, str] | None, flags: dict | None = None) -> APIRouter:
    router = APIRouter(dependencies=[Depends(basic_auth(credentials))] if credentials else [])
    options = Options(service.extensions)  # A1111's settings, for the REST requests after they are written
    generation.add_routes(router, service, options)
    listings.add_routes(router, service, options, flags or {})
    for extension in service.extensions:
        for route in extension.rest_routes():
            _add(router, route, service)
    return router


def _add(router: APIRouter, route: Route, service: StudioService) -> None:
    """An extension's route, with the same body parsing, documentation and error answers as ours."""
    def guarded(call):
        try:
            return call()
        except Exception as error:
            raise http_error(error, service.extensions, route.path) from None

    if route.method == "POST" and route.takes_body:
        def handler(payload: dict = Depends(json_body)):
            return guarded(lambda: route.handler(payload))
    else:
        def handler():
            return guarded(route.handler)
    documentation = body_documentation(route.path, route.body) if route.body else {}
    router.add_api_route(route.path, handler, methods=[route.method], **documentation)
