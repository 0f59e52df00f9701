"""What API Gateway does in front of the functions, in one place for the local runner, the tests
and the benchmark: the routes and CORS read from template.yaml, HTTP API payload-format-2.0
events, and payload-2.0 responses turned back into HTTP.

    template = load_template(Path("template.yaml"))
    route, params, allowed = match_route(template.routes, "GET", "/chats/42/messages")
    event = build_event("GET", "/chats/42/messages?limit=5", [("cookie", "a=b")], b"",
                        route=route, path_parameters=params)
    status, headers, body = to_http(handler(event, context))

`InProcess` imports each function's handler into this process (one module per function, kept
warm), which is what the tests and the benchmark call; the runner uses worker processes instead.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# template.yaml
# ---------------------------------------------------------------------------------------------
class CfnLoader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation short tags (!Ref, !Sub, !GetAtt, ...)."""


def _cfn_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


@dataclass(frozen=True)
class Function:
    name: str  # logical id, e.g. AuthFunction
    code_dir: Path
    handler: str  # e.g. app.handler
    timeout: float
    memory_mb: int
    s3_triggered: bool = False  # has S3 events (the file processor): the local S3's watch invokes it


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or ANY
    path: str  # e.g. /chats/{chat_id}/messages
    function: str

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def segments(self) -> list[str]:
        return self.path.strip("/").split("/") if self.path.strip("/") else []


@dataclass(frozen=True)
class CorsConfig:
    allow_origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    allow_headers: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None

    def origin_allowed(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.allow_origins or origin in self.allow_origins)


@dataclass
class Template:
    functions: dict[str, Function] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    cors: CorsConfig | None = None
    parameters: dict[str, str] = field(default_factory=dict)


def _camel_to_env(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def _resolve(value: Any, params: dict[str, str]) -> Any:
    """Resolve literals, !Ref <Parameter> and !Sub over parameters; None when it cannot."""
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict) and "Ref" in value:
        return params.get(value["Ref"])
    if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([\w:.]+)\}", lambda m: params.get(m.group(1), m.group(0)), value["Fn::Sub"])
    if isinstance(value, list):
        return [_resolve(v, params) for v in value]
    return None


def _as_list(value: Any, params: dict[str, str]) -> tuple[str, ...]:
    resolved = _resolve(value, params)
    if resolved is None:
        return ()
    items = resolved if isinstance(resolved, list) else [resolved]
    out: list[str] = []
    for item in items:
        if item is None:
            continue
        out.extend(p.strip() for p in str(item).split(",") if p.strip())
    return tuple(out)


def load_template(path: Path | str = REPO_ROOT / "template.yaml", env: dict[str, str] | None = None) -> Template:
    """Parse the SAM template into functions, routes and CORS.

    A parameter resolves from its environment variable - the one the Globals environment maps
    to `!Ref Parameter` (FRONTEND_ORIGIN for FrontendOrigin), else its UPPER_SNAKE name - and
    else from its Default.
    """
    path = Path(path)
    env = dict(os.environ) if env is None else env
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=CfnLoader) or {}
    root = path.parent
    resources = doc.get("Resources") or {}
    globals_fn = (doc.get("Globals") or {}).get("Function") or {}

    env_for_param: dict[str, str] = {}
    for var, val in ((globals_fn.get("Environment") or {}).get("Variables") or {}).items():
        if isinstance(val, dict) and isinstance(val.get("Ref"), str):
            env_for_param.setdefault(val["Ref"], var)
    params: dict[str, str] = {"AWS::Region": env.get("AWS_REGION", "us-east-1"), "AWS::AccountId": "123456789012",
                              "AWS::StackName": "iflychat-local"}
    for name, spec in (doc.get("Parameters") or {}).items():
        spec = spec or {}
        var = env_for_param.get(name, _camel_to_env(name))
        if env.get(var):
            params[name] = env[var]
        elif "Default" in spec:
            params[name] = str(spec["Default"])

    tpl = Template(parameters=params)
    for logical_id, res in resources.items():
        res = res or {}
        props = res.get("Properties") or {}
        if res.get("Type") == "AWS::Serverless::HttpApi" and props.get("CorsConfiguration"):
            cc = props["CorsConfiguration"]
            if isinstance(cc, dict):
                max_age = _resolve(cc.get("MaxAge"), params)
                tpl.cors = CorsConfig(
                    allow_origins=_as_list(cc.get("AllowOrigins"), params),
                    allow_credentials=str(_resolve(cc.get("AllowCredentials"), params)).lower() == "true",
                    allow_headers=_as_list(cc.get("AllowHeaders"), params),
                    allow_methods=tuple(m.upper() for m in _as_list(cc.get("AllowMethods"), params)),
                    expose_headers=_as_list(cc.get("ExposeHeaders"), params),
                    max_age=int(max_age) if max_age not in (None, "") else None,
                )
            elif cc is True:
                tpl.cors = CorsConfig(allow_origins=("*",), allow_headers=("*",), allow_methods=("*",))
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        http_events = [
            ev.get("Properties") or {} for ev in (props.get("Events") or {}).values()
            if (ev or {}).get("Type") == "HttpApi"
        ]
        http_events = [p for p in http_events if p.get("Path") and p.get("Method")]
        s3_triggered = any((ev or {}).get("Type") == "S3" for ev in (props.get("Events") or {}).values())
        if not http_events and not s3_triggered:
            continue
        code_uri = _resolve(props.get("CodeUri", globals_fn.get("CodeUri")), params)
        handler = _resolve(props.get("Handler", globals_fn.get("Handler")), params)
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            raise ValueError(f"{logical_id}: CodeUri and Handler must be plain strings for the local runner")
        tpl.functions[logical_id] = Function(
            name=logical_id,
            code_dir=(root / code_uri).resolve(),
            handler=handler,
            timeout=float(_resolve(props.get("Timeout", globals_fn.get("Timeout", 3)), params) or 3),
            memory_mb=int(_resolve(props.get("MemorySize", globals_fn.get("MemorySize", 128)), params) or 128),
            s3_triggered=s3_triggered,
        )
        for p in http_events:
            method = str(_resolve(p["Method"], params)).upper()
            tpl.routes.append(Route("ANY" if method in ("ANY", "*") else method, str(_resolve(p["Path"], params)), logical_id))
    return tpl


# ---------------------------------------------------------------------------------------------
# routing, events, responses
# ---------------------------------------------------------------------------------------------
def _match_path(route: Route, segments: list[str]) -> dict[str, str] | None:
    pattern = route.segments
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for pat, seg in zip(pattern, segments):
        if pat.startswith("{") and pat.endswith("}"):
            if seg == "":
                return None
            params[pat[1:-1]] = unquote(seg)
        elif pat != seg:
            return None
    return params


def match_route(routes: Iterable[Route], method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
    """(route, path parameters, allowed methods on this path). A literal segment beats a
    parameter, as in API Gateway; `route` is None when nothing matches the method."""
    segments = path.strip("/").split("/") if path.strip("/") else []
    candidates = []
    for route in routes:
        params = _match_path(route, segments)
        if params is not None:
            specificity = tuple(0 if s.startswith("{") else 1 for s in route.segments)
            candidates.append((specificity, route, params))
    candidates.sort(key=lambda c: c[0], reverse=True)
    allowed = sorted({c[1].method for c in candidates})
    for _, route, params in candidates:
        if route.method in (method.upper(), "ANY"):
            return route, params, allowed
    return None, {}, allowed


_TEXT_TYPES = {"application/json", "application/x-www-form-urlencoded", "application/xml", "application/javascript",
               "application/graphql", "application/x-ndjson"}


def is_text_content_type(content_type: str | None) -> bool:
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    return ct.startswith("text/") or ct in _TEXT_TYPES or ct.endswith("+json") or ct.endswith("+xml")


def build_event(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
    *,
    route: Route | None = None,
    path_parameters: dict[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
    request_id: str | None = None,
    now: float | None = None,
) -> dict:
    """An API Gateway HTTP API payload format 2.0 event for one HTTP request.

    `target` is the request target ("/chats/1/messages?limit=5"); `headers` the raw header pairs.
    """
    now = time.time() if now is None else now
    split = urlsplit(target)
    raw_path = split.path or "/"
    raw_query = split.query

    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    merged.setdefault("x-forwarded-for", source_ip)
    merged.setdefault("x-forwarded-proto", "http")
    host = merged.get("host", "127.0.0.1")
    if ":" in host:
        merged.setdefault("x-forwarded-port", host.rsplit(":", 1)[1])
    if body:
        merged["content-length"] = str(len(body))

    query: dict[str, str] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v

    route_key = route.route_key if route else "$default"
    stamp = datetime.fromtimestamp(now, tz=timezone.utc)
    domain = host.split(":", 1)[0]
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method.upper(),
                "path": raw_path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": request_id or str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": stamp.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body:
        text = None
        if is_text_content_type(merged.get("content-type")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is not None:
            event["body"] = text
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer"}


def to_http(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A payload-2.0 Lambda response as (status, header pairs, body bytes)."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # API Gateway's rule for a response without statusCode: 200 + the JSON of what came back
        return 200, [("Content-Type", "application/json")], json.dumps(result).encode()
    status = int(result["statusCode"])
    headers: list[tuple[str, str]] = []
    for k, v in (result.get("headers") or {}).items():
        if k.lower() not in _HOP_BY_HOP:
            headers.append((k, str(v)))
    for k, values in (result.get("multiValueHeaders") or {}).items():  # not in 2.0, tolerated
        if k.lower() not in _HOP_BY_HOP and not any(h[0].lower() == k.lower() for h in headers):
            headers.extend((k, str(v)) for v in values)
    for cookie in result.get("cookies") or []:
        headers.append(("Set-Cookie", cookie))
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        data = base64.b64decode(body)
    else:
        data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()
    return status, headers, data


class InProcess:
    """Every function of the template imported into this process, each once (a warm container)."""

    def __init__(self, template_path: Path = REPO_ROOT / "template.yaml"):
        self.template = load_template(template_path)
        self.root = Path(template_path).resolve().parent
        self._handlers: dict[str, Callable] = {}
        self._lock = threading.Lock()

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        return match_route(self.template.routes, method, path)

    def handler(self, function: str) -> Callable:
        if function not in self._handlers:
            with self._lock:
                if function not in self._handlers:
                    self._handlers[function] = self._import(self.template.functions[function])
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
