"""The OpenAPI document's error responses, written once for every route of every service.

Routes name the errors of their own logic (`problem_responses(404, 409)`); the errors every
route can answer come from shared code and are added here: 422 (FastAPI's own validation entry,
which it documents as plain JSON), 400 (an unparsable body), 413 (the body limit), 401 (an
unknown key, on routes that read one) and 503 (PostgreSQL or an upstream unreachable). Every
error is documented as what it is: `application/problem+json` with the `Problem` schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from shared.auth import optional_caller
from shared.errors import PROBLEM_MEDIA_TYPE, Problem

__all__ = ["document_problems", "schema_ref"]

PROBLEM_REF = "#/components/schemas/Problem"
DESCRIPTIONS = {
    400: "The request is malformed (e.g. a body that is not JSON)",
    401: "A valid API key is required",
    403: "The caller may not do this",
    404: "Not found",
    409: "The request conflicts with the current state",
    412: "The resource has changed",
    413: "The request body is too large",
    415: "The body is not application/json",
    422: "The request is invalid (every field error listed)",
    428: "This update needs If-Match",
    429: "Too many requests",
    503: "A dependency (PostgreSQL, Meilisearch or another service) is unavailable",
}
# FastAPI's plain-JSON validation error schemas, which no response of ours uses.
UNUSED = ("HTTPValidationError", "ValidationError")
NOT_CHECKED = {"/healthz"}  # answers without touching any dependency


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _shared_errors(path: str, dependant: Dependant, has_body: bool) -> set[int]:
    errors: set[int] = set()
    if has_body:
        errors |= {400, 413, 415, 422}
    if dependant.path_params or dependant.query_params or dependant.header_params:
        errors.add(422)
    if optional_caller in set(_calls(dependant)):
        errors.add(401)
    if path not in NOT_CHECKED:
        errors.add(503)
    return errors


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
    }


def _add_problem_schemas(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = TypeAdapter(Problem).json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in problem.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault("Problem", problem)
    text = repr(schema["paths"])
    for name in UNUSED:
        if f"#/components/schemas/{name}'" not in text:
            components.pop(name, None)


# Models routes refer to by `$ref` in their `openapi_extra`, documented in any app that
# includes such a route (see `schema_ref`).
_REFERABLE: dict[str, type[BaseModel]] = {}


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    """A `$ref` to `model`'s component schema, for a route that reads its body raw (as the
    signed partner push does) and documents it in `openapi_extra`."""
    _REFERABLE[model.__name__] = model
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _add_referred_models(schema: dict[str, Any]) -> None:
    text = repr(schema.get("paths", {}))
    models = [m for name, m in _REFERABLE.items() if f"#/components/schemas/{name}'" in text]
    if not models:
        return
    _, definitions = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        components.setdefault(name, definition)


def _rewrite(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    # Routers are included lazily (FastAPI's route contexts), each with its full path.
    by_operation = {
        (str(context.path_format), method.lower()): context.original_route.dependant
        for context in iter_route_contexts(routes)
        if isinstance(context.original_route, APIRoute)
        for method in context.methods or ()
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            dependant = by_operation.get((path, method))
            if dependant is None:
                continue
            responses = operation.setdefault("responses", {})
            shared = _shared_errors(path, dependant, "requestBody" in operation)
            statuses = {int(code) for code in responses if code.isdigit()} | shared
            for status in sorted(statuses):
                if status < 400:
                    continue
                documented = responses.get(str(status), {})
                description = documented.get("description")
                if description in (None, "Problem", "Validation Error"):
                    description = DESCRIPTIONS.get(status, "Problem")
                responses[str(status)] = _problem(description)
            operation["responses"] = dict(sorted(responses.items()))
    _add_problem_schemas(schema)


def document_problems(app: FastAPI) -> None:
    """Make `app.openapi()` document every error response as problem+json (and the models
    routes refer to with `schema_ref`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _add_referred_models(schema)
            _rewrite(schema, app.routes)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
