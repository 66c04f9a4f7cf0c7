"""What every HTTP request meets before a route reads it: a bound on the body's size (for the whole server, the
Gradio routes included), strict JSON for the REST bodies, and one mapping of our errors to HTTP answers.

- A body over MAX_BODY_BYTES is answered 413 before it is read (Content-Length), or as soon as it grows past
  the limit (chunked).
- JSON bodies: NaN and Infinity (which Python's json accepts) are refused naming the field that holds them, and
  so is nesting too deep for the parser; a body that is not an object is refused.
- ValueError is 422 and models.limits.TooLarge 413, with the message naming the field in A1111's words; the
  queue's errors are 503.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.responses import JSONResponse

from extensions.base import Extension, rename_words
from models.limits import MAX_BODY_BYTES, TooLarge
from service.queue import queue_message

# our core field names -> A1111's, for messages that reach REST clients (extensions rename theirs)
A1111_FIELDS = {"guidance_scale": "cfg_scale", "strength": "denoising_strength", "sampler": "sampler_name"}


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, before the app reads any of it."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(scope, receive, send)
        if declared is not None:
            return await self.app(scope, receive, send)
        # no length given (chunked): read the body here, up to the limit, then hand it on
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._refuse(scope, receive, send)
        body = [b"".join(chunks)]

        async def replay():
            # the body once, then the real channel (streaming responses wait on it for the disconnect)
            if body:
                return {"type": "http.request", "body": body.pop(), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        detail = f"the request body is over {self.limit // 2**20} MB, the most accepted"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


async def json_body(request: Request) -> dict:
    """The request's JSON object (a FastAPI dependency for the REST routes)."""
    raw = await request.body()
    try:
        payload = json.loads(raw or b"null", parse_constant=NonFinite, parse_float=_finite_float)
    except RecursionError:
        raise HTTPException(422, detail="the request body is nested too deeply to read") from None
    except ValueError as error:
        raise HTTPException(422, detail=f"the request body is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise HTTPException(422, detail=f"the request body must be a JSON object, got {type(payload).__name__}")
    where = _non_finite(payload)
    if where is not None:
        raise HTTPException(422, detail=f"{where[0]} must be a finite number, got {where[1]}")
    return payload


class NonFinite(str):
    """Stands for NaN, Infinity or -Infinity in a parsed body (or a number too large for a float, such as 1e400),
    so the field holding it can be named."""


def _finite_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text)


def _non_finite(payload) -> tuple[str, str] | None:
    """(path, constant) of the first NaN/Infinity in the body, walked without recursion (bodies may nest deeply)."""
    pending = [("", payload)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, NonFinite):
            return path or "the request body", str(value)
        if isinstance(value, dict):
            pending += [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
        elif isinstance(value, list):
            pending += [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    return None


def in_a1111_words(message: str, extensions: Sequence[Extension] = ()) -> str:
    """A message of ours with A1111's field names: cfg_scale for guidance_scale, ..."""
    for extension in extensions:
        message = extension.in_rest_words(message)
    return rename_words(message, A1111_FIELDS)


def http_error(error: Exception, extensions: Sequence[Extension] = (), what: str = "the job") -> Exception:
    """The one mapping of our errors to HTTP answers: a refused input is 413 over a limit, else 422, in A1111's field
    names; the queue's errors are 503 (`what`: the job they befell); any other error stays as it is (a 500, whose
    message goes to the log only)."""
    if isinstance(error, ValueError):
        return HTTPException(413 if isinstance(error, TooLarge) else 422, detail=in_a1111_words(str(error),
                                                                                                extensions))
    message = queue_message(error, what)
    return error if message is None else HTTPException(503, detail=message)


def basic_auth(credentials: tuple[str, str]):
    """A FastAPI dependency: HTTP basic auth with these credentials (401 otherwise), compared in constant time."""
    security = HTTPBasic()

    def check(given: HTTPBasicCredentials = Depends(security)) -> None:
        user_ok = secrets.compare_digest(given.username.encode(), credentials[0].encode())
        password_ok = secrets.compare_digest(given.password.encode(), credentials[1].encode())
        if not (user_ok and password_ok):
            raise HTTPException(401, detail="wrong user name or password", headers={"WWW-Authenticate": "Basic"})

    return check
