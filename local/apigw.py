"""What API Gateway does in front of the functions, for the local runner and the tests: the
route table read from template.yaml, and HTTP API payload-format-2.0 events.

    router = Router.from_template(Path("template.yaml"), repo_root)
    match = router.match("GET", "/chats/42/messages")   # Match(function, route_key, params) or None
    event = build_event("GET", "/chats/42/messages", route_key=match.route_key,
                        path_parameters=match.params, headers={...}, cookies=[...], body=b"...")
    result = router.handler(match.function)(event, context)
"""
from __future__ import annotations

import base64
import importlib.util
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl

import yaml


class _CfnLoader(yaml.SafeLoader):
    """Loads CloudFormation YAML: short-form intrinsics (!Ref, !Sub, ...) become {"Fn": value}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "application/xml",
               "application/javascript", "+json", "+xml")


def is_text(content_type: str | None) -> bool:
    ct = (content_type or "").lower()
    return any(t in ct for t in _TEXT_TYPES)


@dataclass(frozen=True)
class Route:
    method: str
    path: str          # as in the template: /chats/{chat_id}/messages
    function: str      # logical id: ChatsFunction
    regex: re.Pattern

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Match:
    function: str
    route_key: str
    params: dict[str, str]


@dataclass(frozen=True)
class Function:
    name: str          # logical id
    code_dir: Path
    handler: str       # module.attribute


def _compile(path: str) -> re.Pattern:
    pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
    return re.compile(f"^{pattern}$")


class Router:
    def __init__(self, routes: list[Route], functions: dict[str, Function], root: Path):
        self.routes, self.functions, self.root = routes, functions, root
        self._handlers: dict[str, Callable] = {}
        self._load_lock = threading.Lock()

    @classmethod
    def from_template(cls, template: Path, root: Path) -> "Router":
        doc = load_template(template)
        routes, functions = [], {}
        for name, res in (doc.get("Resources") or {}).items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            props = res.get("Properties") or {}
            functions[name] = Function(name, root / props["CodeUri"], props.get("Handler", "app.handler"))
            for event in (props.get("Events") or {}).values():
                if event.get("Type") != "HttpApi":
                    continue
                ep = event.get("Properties") or {}
                method, path = ep["Method"].upper(), ep["Path"]
                routes.append(Route(method, path, name, _compile(path)))
        # Literal segments win over parameters, as in API Gateway (/chats/x/messages before /chats/{id}).
        routes.sort(key=lambda r: (r.path.count("{"), -len(r.path)))
        return cls(routes, functions, root)

    def match(self, method: str, path: str) -> Match | None:
        for route in self.routes:
            m = route.regex.match(path)
            if m and route.method == method.upper():
                return Match(route.function, route.route_key, m.groupdict())
        return None

    def allowed_methods(self, path: str) -> list[str]:
        return sorted({r.method for r in self.routes if r.regex.match(path)})

    def handler(self, function: str) -> Callable:
        """The function's Lambda handler, its module imported once (a warm container)."""
        if function not in self._handlers:
            with self._load_lock:
                if function not in self._handlers:
                    self._handlers[function] = self._import(self.functions[function])
        return self._handlers[function]

    def _import(self, fn: Function) -> Callable:
        module_name, _, attr = fn.handler.rpartition(".")
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        unique = f"iflychat_fn_{fn.name}"
        spec = importlib.util.spec_from_file_location(unique, fn.code_dir / f"{module_name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
        return getattr(module, attr)


def build_event(method: str, path: str, *, route_key: str, path_parameters: dict[str, str] | None = None,
                raw_query: str = "", headers: dict[str, str] | None = None, cookies: list[str] | None = None,
                body: bytes | None = None, source_ip: str = "127.0.0.1", stage: str = "$default") -> dict[str, Any]:
    """An API Gateway HTTP API payload-2.0 event, as Lambda receives it."""
    hdrs: dict[str, str] = {}
    jar = list(cookies or [])
    for key, value in (headers or {}).items():
        k = key.lower()
        if k == "cookie":  # API Gateway moves cookies into their own array
            jar.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        hdrs[k] = f"{hdrs[k]},{value}" if k in hdrs else value
    now = time.time()
    request_id = str(uuid.uuid4())
    hdrs.setdefault("host", "127.0.0.1")
    hdrs.setdefault("x-forwarded-proto", "http")
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": hdrs["host"],
            "domainPrefix": hdrs["host"].split(".")[0],
            "http": {"method": method.upper(), "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": hdrs.get("user-agent", "")},
            "requestId": request_id,
            "routeKey": route_key,
            "stage": stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if jar:
        event["cookies"] = jar
    if raw_query:
        params: dict[str, str] = {}
        for k, v in parse_qsl(raw_query, keep_blank_values=True):
            params[k] = f"{params[k]},{v}" if k in params else v
        event["queryStringParameters"] = params
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body is not None and body != b"":
        if is_text(hdrs.get("content-type")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
    return event
