"""LeanRoute: an APIRoute for the hot endpoints (POST /v1/rank) that answers without
FastAPI's general dependency solving.

For an endpoint of the simple shape the hot endpoints have, FastAPI's per-request work
(solving the dependency tree, validating through its field wrappers, serialising the
answer) costs a rank request about as much CPU as a whole plain FastAPI endpoint does
(benchmarks/bench_plain_fastapi.py). A LeanRoute is declared like any route
(``@router.post(...)`` on an ``APIRouter(route_class=LeanRoute)``), so it is the one
definition of its endpoint: the routing table, the OpenAPI document (request body, answer
model, security scheme, error answers) and every request see the same route. Per request
it does what FastAPI would, in the same order, with the same error answers:

1. reads the body and parses it as JSON when the content type is ``application/json`` (or
   ``+json``), as FastAPI does (JSON that does not parse: 422 ``json_invalid``; any other
   content type: the raw bytes, which the body model refuses with 422);
2. calls the dependencies, in their order (the API-key check: 401, 403);
3. validates the body with the route's own body field (FastAPI's errors, at ``body``);
4. calls the endpoint, which returns a Response.

It handles only what it can do exactly as FastAPI would: an endpoint whose parameters
are one body model, the Request, and dependencies that take nothing but the Request (no
sub-dependencies, no ``yield``). A route with anything else (a query parameter, a
dependency with parameters of its own, a dependency added later to the router, ...)
is answered by FastAPI's own handler: a dependency is never skipped.
"""
from __future__ import annotations

import email.message
import inspect
import json
from typing import Any, Awaitable, Callable

import orjson
from fastapi import params
from fastapi._compat import Undefined
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import _validate_value_with_model_field
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.routing import APIRoute

try:  # FastAPI >= 0.13x builds an included route's handler under this context (its merged settings)
    from fastapi.routing import _effective_route_context_var
except ImportError:  # pragma: no cover
    _effective_route_context_var = None
from starlette.requests import Request
from starlette.responses import Response


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule: application/json or application/*+json, parameters allowed."""
    if content_type == "application/json":
        return True
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _loads(body: bytes) -> Any:
    """The JSON value of ``body`` as Starlette's ``Request.json()`` reads it (json.loads).
    orjson first (several times faster); where the two differ (NaN, integers past 64 bits,
    UTF-16, lone surrogates) orjson refuses and json.loads decides."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _simple_dependency(d: Dependant) -> bool:
    """A dependency that takes only the Request and is a plain coroutine function."""
    return (d.call is not None and inspect.iscoroutinefunction(getattr(d.call, "__call__", d.call))
            and not d.dependencies and not (d.path_params or d.query_params or d.header_params or d.cookie_params
                                            or d.body_params)
            and d.request_param_name is not None and d.websocket_param_name is None
            and d.http_connection_param_name is None and d.response_param_name is None
            and d.background_tasks_param_name is None and d.security_scopes_param_name is None
            and not inspect.isasyncgenfunction(d.call) and not inspect.isgeneratorfunction(d.call))


def lean_handler(route, general: Callable[[Request], Awaitable[Response]]
                 ) -> Callable[[Request], Awaitable[Response]] | None:
    """The lean handler for ``route`` (an APIRoute, or FastAPI's view of an included one),
    or None when its endpoint has a shape the handler does not handle exactly. While the
    app overrides dependencies (``app.dependency_overrides``, in tests), requests go to
    ``general``, FastAPI's own handler."""
    d: Dependant = route.dependant
    body_field = route.body_field
    if (body_field is None or len(d.body_params) != 1 or route._embed_body_fields
            or isinstance(body_field.field_info, (params.Form, params.File))
            or d.path_params or d.query_params or d.header_params or d.cookie_params
            or d.websocket_param_name or d.http_connection_param_name or d.response_param_name
            or d.background_tasks_param_name or d.security_scopes_param_name
            or not inspect.iscoroutinefunction(d.call)
            or not all(_simple_dependency(sub) for sub in d.dependencies)):
        return None
    strict = route.strict_content_type
    strict = getattr(strict, "value", strict)
    body_name = body_field.name
    request_name = d.request_param_name
    dependencies = [(sub.name, sub.call) for sub in d.dependencies]  # name None: a router's dependencies=[...]
    endpoint = d.call
    overrides = getattr(route.dependency_overrides_provider, "dependency_overrides", None)

    async def handler(request: Request) -> Response:
        if overrides:
            return await general(request)
        raw = await request.body()
        body: Any = Undefined  # no body: "Field required" (or the default of an optional body)
        if raw:
            content_type = request.headers.get("content-type")
            if (not content_type and not strict) or _is_json(content_type):
                try:
                    body = _loads(raw)
                except json.JSONDecodeError as e:
                    raise RequestValidationError([{"type": "json_invalid", "loc": ("body", e.pos),
                                                   "msg": "JSON decode error", "input": {},
                                                   "ctx": {"error": e.msg}}], body=e.doc) from None
                except Exception:  # not text (bytes that are not UTF-8/16/32): FastAPI's 400
                    raise HTTPException(400, "There was an error parsing the body") from None
            else:
                body = raw
        values: dict[str, Any] = {}
        for name, call in dependencies:
            value = await call(request)
            if name is not None:
                values[name] = value
        model, errors = _validate_value_with_model_field(field=body_field, value=body, values={}, loc=("body",))
        if errors:
            raise RequestValidationError(errors, body=body)
        values[body_name] = model
        if request_name is not None:
            values[request_name] = request
        response = await endpoint(**values)
        if not isinstance(response, Response):
            raise TypeError(f"{endpoint.__qualname__} is served by a LeanRoute and must return a Response")
        return response

    return handler


class LeanRoute(APIRoute):
    """An APIRoute answered by ``lean_handler`` when its endpoint allows, else by FastAPI's
    own handler (see the module's docstring). ``lean`` says which."""

    lean = False

    def get_route_handler(self):
        general = super().get_route_handler()
        route = self
        if _effective_route_context_var is not None:  # included in a router: the merged view (its dependencies)
            context = _effective_route_context_var.get()
            if context is not None and context.original_route is self:
                route = context
        handler = lean_handler(route, general)
        self.lean = handler is not None
        return handler if handler is not None else general
