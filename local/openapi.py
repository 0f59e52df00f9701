"""One OpenAPI document for the whole API, merged from every function's FastAPI app (the routes
template.yaml gives API Gateway). The checked-in openapi.json is this command's output; a test
regenerates it and fails on drift.

    python -m local.openapi > openapi.json        (or: make openapi)

The local runner serves merged() at /openapi.json and docs_html() at /docs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from local.apigw import InProcess

ROOT = Path(__file__).resolve().parent.parent
TITLE = "IFlyChat API"
VERSION = "1.0.0"


def merged(functions: InProcess | None = None) -> dict[str, Any]:
    """Every function's paths and component schemas in one document. Two apps defining the
    same schema name differently, or the same path and method, is an error."""
    functions = functions or InProcess(ROOT / "template.yaml")
    doc: dict[str, Any] = {"openapi": None, "info": {"title": TITLE, "version": VERSION}, "paths": {},
                           "components": {"schemas": {}}}
    for name in sorted(functions.template.functions):
        handler = functions.handler(name)
        app = getattr(handler, "app", None)
        if app is None or not hasattr(app, "openapi"):
            continue  # not an HTTP function (an S3-triggered one, say)
        part = app.openapi()
        doc["openapi"] = doc["openapi"] or part["openapi"]
        for path, operations in part.get("paths", {}).items():
            into = doc["paths"].setdefault(path, {})
            for method, operation in operations.items():
                if method in into:
                    raise ValueError(f"{method.upper()} {path} is defined by two functions")
                into[method] = {**operation, "tags": [name.removesuffix("Function").lower()]}
        for section, entries in part.get("components", {}).items():  # schemas, securitySchemes
            into = doc["components"].setdefault(section, {})
            for key, body in entries.items():
                if into.setdefault(key, body) != body:
                    raise ValueError(f"components.{section}.{key} differs between functions")
    doc["paths"] = dict(sorted(doc["paths"].items()))
    doc["components"] = {k: dict(sorted(v.items())) for k, v in sorted(doc["components"].items())}
    return doc


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def docs_html(openapi_url: str = "/openapi.json") -> str:
    """The /docs page: Swagger UI (loaded by the browser from its CDN) on openapi_url."""
    ui = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{TITLE} - docs</title>
<link rel="stylesheet" href="{ui}/swagger-ui.css"></head>
<body><div id="ui"></div><script src="{ui}/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "{openapi_url}", dom_id: "#ui", withCredentials: true}});</script>
</body></html>
"""


if __name__ == "__main__":
    sys.stdout.write(render(merged()))
