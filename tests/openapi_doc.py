"""The API's merged OpenAPI document, built from each function's own `app.openapi()` for the
routes template.yaml gives it. One small helper so a generator landing on main can replace it."""
from __future__ import annotations

import copy
import sys
from typing import Any

from local.apigw import InProcess


def function_app(functions: InProcess, name: str):
    functions.handler(name)  # imports the function once, as a warm container
    return sys.modules[f"iflychat_fn_{name}"].app


def merged_openapi(functions: InProcess) -> dict[str, Any]:
    doc: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": "IFlyChat API", "version": "1"},
                           "paths": {}, "components": {"schemas": {}}}
    for route in functions.template.routes:
        spec = function_app(functions, route.function).openapi()
        operation = spec["paths"][route.path][route.method.lower()]
        doc["paths"].setdefault(route.path, {})[route.method.lower()] = copy.deepcopy(operation)
        doc["components"]["schemas"].update(copy.deepcopy(spec.get("components", {}).get("schemas", {})))
    return doc


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its top-level $ref (and single-branch anyOf with null) followed."""
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema
