"""The REST bodies as pydantic models, built from the fields' declarations (models/fields.py) under their A1111
names, so that /openapi.json documents every property of /sdapi/v1/txt2img, /img2img and the extensions' routes with
its type, default, bounds and description (and schema-driven clients and fuzzers can use it).

The models document; the fields' own checks enforce, on the strictly parsed body (api/edge.py's json_body), with
the same bounds and with messages that name the field and the value. A dotted A1111 name is nested
("alwayson_scripts.controlnet.args"); a field's `setting` is a property of override_settings.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import pydantic

from api.payloads import body_fields
from models.fields import Field

TITLES = {"txt2img": "StableDiffusionTxt2ImgProcessingAPI", "img2img": "StableDiffusionImg2ImgProcessingAPI"}
_TYPES = {"int": int, "whole": int, "size": int, "number": float, "fraction": float, "switch": bool, "text": str,
          "image": str, "images": list[str],
          "names": list[str], "object": dict[str, Any], "args": list[Any]}


def body_model(title: str, fields: Sequence[Field]) -> type[pydantic.BaseModel]:
    """A pydantic model of a body whose properties are these fields by their A1111 names; unknown properties are
    allowed (A1111 clients send many this app ignores)."""
    tree: dict = {}  # name -> a Field, or an object's properties by name (its own Field, if declared, under OWN)
    for field in fields:
        if field.setting:
            tree.setdefault("override_settings", {})[field.setting] = field
        if field.rest:
            *parents, leaf = field.rest.split(".")
            node = tree
            for parent in parents:
                node = node.setdefault(parent, {})
            if isinstance(node.get(leaf), dict):  # an object with properties of its own: this describes it
                node[leaf][OWN] = field
            else:
                node[leaf] = field
    return _model(title, tree)


OWN = ""  # the key of an object's own declaration among its properties


def _model(title: str, tree: dict) -> type[pydantic.BaseModel]:
    definitions = {name: _property(f"{title}_{name}", value) for name, value in tree.items() if name != OWN}
    return pydantic.create_model(title, __config__=pydantic.ConfigDict(extra="allow"), **definitions)


def _property(title: str, value) -> tuple:
    if isinstance(value, dict):  # an object of named properties (override_settings, alwayson_scripts.controlnet)
        own = value.get(OWN)
        return _model(title, value), pydantic.Field(default=None, description=own.describe() if own else None)
    field: Field = value
    if field.items:
        kind: Any = list[_model(f"{title}_item", {item.name: item for item in field.items})]
    elif field.kind == "choice" and field.choices:
        kind = Literal[field.choices]
    else:
        kind = _TYPES.get(field.kind, Any)
    bounds: dict = {}
    if field.minimum is not None:
        bounds["gt" if field.kind == "fraction" else "ge"] = field.minimum
    if field.maximum is not None:
        bounds["le"] = field.maximum
    if field.kind == "size":
        bounds["multiple_of"] = 8
    return kind, pydantic.Field(default=copy.deepcopy(field.default), description=field.describe(), **bounds)


def openapi_body(model: type[pydantic.BaseModel]) -> dict:
    """A route's `openapi_extra`: the model's JSON schema as its request body, its definitions inlined (the
    document's components hold FastAPI's own models only)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:  # the definition, with what the reference says beside it (default, description)
                siblings = {key: inline(item) for key, item in node.items() if key != "$ref"}
                return {**inline(definitions[node["$ref"].rsplit("/", 1)[-1]]), **siblings}
            return {key: inline(item) for key, item in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


def documented(route: str, extensions) -> dict:
    """The keyword arguments of /sdapi/v1/<route>'s decorator that document its body."""
    return {"openapi_extra": openapi_body(body_model(TITLES[route], body_fields(route, extensions)))}


def body_documentation(path: str, fields: Sequence[Field]) -> dict:
    """The same for an extension's route with a body of these fields."""
    title = "".join(part.capitalize() for part in path.replace("-", "/").split("/") if part) + "Body"
    return {"openapi_extra": openapi_body(body_model(title, fields))}
