"""The REST API's documentation (/openapi.json, /docs, /redoc), served only beside the REST API and behind its
credentials: FastAPI's own docs routes would be open to anyone, whatever the app's auth."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from api.edge import basic_auth


def build_docs_router(server: FastAPI, credentials: tuple[str, str] | None) -> APIRouter:
    router = APIRouter(dependencies=[Depends(basic_auth(credentials))] if credentials else [],
                       include_in_schema=False)

    @router.get("/openapi.json")
    def openapi() -> dict:
        return server.openapi()

    @router.get("/docs")
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{server.title} - API")

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{server.title} - API")

    return router
