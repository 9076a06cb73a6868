"""RFC 9457 problem+json: one exception tree, one renderer, handlers for every error path.

Exception tree (each carries its HTTP status and stable problem type)::

    ProblemError
    ├── BadRequest             400
    ├── Unauthorized           401
    ├── Forbidden              403
    ├── NotFound               404
    ├── Conflict               409
    ├── PreconditionFailed     412
    ├── PayloadTooLarge        413
    ├── UnsupportedMediaType   415
    ├── UnprocessableEntity    422  (carries field errors)
    ├── PreconditionRequired   428
    ├── TooManyRequests        429
    └── ServiceUnavailable     503
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import asyncpg
from asgi_correlation_id import correlation_id
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

__all__ = [
    "BadRequest",
    "Conflict",
    "FieldError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "PreconditionRequired",
    "Problem",
    "ProblemError",
    "ProblemResponse",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnprocessableEntity",
    "UnsupportedMediaType",
    "install_error_handlers",
    "is_database_unavailable",
    "problem_responses",
    "raised_from",
]

logger = logging.getLogger("ipx.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "/problems/"


class FieldError(BaseModel):
    """One invalid input: which field, which rule it broke, and a message for people."""

    field: str = Field(examples=["transaction.price.amount"])
    rule: str = Field(examples=["greater_than_equal"])
    message: str = Field(examples=["Input should be greater than or equal to 0"])


class Problem(BaseModel):
    """The RFC 9457 body of every error response."""

    type: str = Field(examples=["/problems/validation-error"])
    title: str = Field(examples=["The request is invalid"])
    status: int = Field(examples=[422])
    detail: str | None = Field(default=None, examples=["1 field is invalid"])
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class ProblemError(Exception):
    """Base of every error the services raise on purpose; rendered as problem+json."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        slug: str | None = None,
        title: str | None = None,
        extra: Mapping[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.status_code = status or self.status
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})
        self.problem_slug = slug or self.slug
        self.problem_title = title or self.title
        self.extra = dict(extra or {})

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body = Problem(
            type=PROBLEM_TYPE_BASE + self.problem_slug,
            title=self.problem_title,
            status=self.status_code,
            detail=self.detail,
            instance=instance,
            request_id=correlation_id.get(),
            errors=self.errors,
        ).model_dump(exclude_none=True)
        body.update(self.extra)
        return body


class BadRequest(ProblemError):
    status, slug, title = 400, "bad-request", "The request is malformed"


class Unauthorized(ProblemError):
    status, slug, title = 401, "unauthorized", "A valid API key is required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="ipx"'})
        super().__init__(detail, **kwargs)


class Forbidden(ProblemError):
    status, slug, title = 403, "forbidden", "The caller may not do this"


class NotFound(ProblemError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ProblemError):
    status, slug, title = 409, "conflict", "The request conflicts with the current state"


class PreconditionFailed(ProblemError):
    status, slug, title = 412, "precondition-failed", "The resource has changed"


class PayloadTooLarge(ProblemError):
    status, slug, title = 413, "payload-too-large", "The request body is too large"


class UnsupportedMediaType(ProblemError):
    status, slug, title = 415, "unsupported-media-type", "The body's media type is not accepted"


class UnprocessableEntity(ProblemError):
    status, slug, title = 422, "validation-error", "The request is invalid"

    @classmethod
    def single(cls, field: str, rule: str, message: str) -> UnprocessableEntity:
        return cls(message, errors=[FieldError(field=field, rule=rule, message=message)])


class PreconditionRequired(ProblemError):
    status, slug, title = 428, "precondition-required", "This update needs If-Match"


class TooManyRequests(ProblemError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(ProblemError):
    status, slug, title = 503, "service-unavailable", "A dependency is unavailable"


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting a route's problem+json errors."""
    return {
        status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": "Problem"}
        for status in statuses
    }


def _field_name(loc: Iterable[int | str]) -> str:
    parts = list(loc)
    # Drop where the value came from; the name is what a client recognises.
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if name else "") + str(part)
    return name or "body"


def field_errors_from_validation(errors: Sequence[Any]) -> list[FieldError]:
    """Map pydantic's error list to ours: field path, the rule's name, the message."""
    result = []
    for error in errors:
        loc = error.get("loc", ())
        rule = str(error.get("type", "invalid"))
        if rule == "json_invalid":
            loc = ("body",)
        result.append(FieldError(field=_field_name(loc), rule=rule, message=str(error.get("msg"))))
    return result


_UNAVAILABLE_ASYNCPG = (
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    # An idle connection that has received PostgreSQL's shutdown notice but not yet the end of
    # the stream is not marked closed; the next statement on it finds the protocol still
    # consuming that error ("another operation is in progress").
    asyncpg.exceptions.InternalClientError,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from, each once: `__cause__` or `__context__`,
    and the driver error a SQLAlchemy error wraps (`orig`)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.append(current.__cause__ or current.__context__)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)


def raised_from(exc: BaseException, kind: type[BaseException]) -> bool:
    """`exc` is a `kind`, or was raised from one (a driver error SQLAlchemy wrapped included)."""
    return any(isinstance(cause, kind) for cause in _causes(exc))


def is_database_unavailable(exc: BaseException) -> bool:
    """True when an exception means PostgreSQL cannot be reached, not that a query is wrong."""
    return any(_means_unreachable(cause) for cause in _causes(exc))


def _means_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    # sa_exc.TimeoutError: the pool exhausted while PostgreSQL is down.
    if isinstance(exc, (*_UNAVAILABLE_ASYNCPG, ConnectionError, TimeoutError, sa_exc.TimeoutError)):
        return True
    return isinstance(exc, OSError) and exc.errno is not None


def render(request: Request, error: ProblemError) -> Response:
    return ProblemResponse(
        error.to_problem(instance=request.url.path),
        status_code=error.status_code,
        headers=error.headers or None,
    )


async def _problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return render(request, exc)


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors_from_validation(exc.errors())
    if any(e.rule == "json_invalid" for e in errors):
        # Not a field's fault: the body could not be read at all (API.md: 400).
        reason = next(
            (str(e.get("ctx", {}).get("error", "")) for e in exc.errors() if e.get("ctx")), ""
        )
        return render(
            request,
            BadRequest(
                f"the body is not valid JSON{': ' + reason if reason else ''}",
                errors=[FieldError(field="body", rule="json_invalid", message="not valid JSON")],
            ),
        )
    count = len(errors)
    detail = f"{count} field{'s are' if count != 1 else ' is'} invalid: " + ", ".join(
        f"{e.field} ({e.rule})" for e in errors[:5]
    )
    return render(request, UnprocessableEntity(detail, errors=errors))


_HTTP_SLUGS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    428: PreconditionRequired,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ProblemError):
        # FastAPI wraps errors raised while reading the body (e.g. over the size limit).
        return render(request, exc.__cause__)
    known = _HTTP_SLUGS.get(exc.status_code)
    slug = known.slug if known else f"http-{exc.status_code}"
    title = known.title if known else "HTTP error"
    error = ProblemError(
        str(exc.detail), slug=slug, title=title, headers=exc.headers, status=exc.status_code
    )
    return render(request, error)


async def _unhandled_handler(request: Request, exc: Exception) -> Response:
    if is_database_unavailable(exc):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return render(
            request,
            ServiceUnavailable(
                "the database is unavailable, retry shortly", headers={"Retry-After": "2"}
            ),
        )
    logger.error(
        "unhandled error on %s %s (request %s)",
        request.method,
        request.url.path,
        correlation_id.get(),
        exc_info=exc,
    )
    return render(request, ProblemError("an unexpected error occurred; quote the request id"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    # Database and network failures are expected in production: answered (503 when PostgreSQL
    # is unreachable) without the server error middleware re-raising them.
    for expected in (sa_exc.DBAPIError, sa_exc.TimeoutError, asyncpg.PostgresError, OSError):
        app.add_exception_handler(expected, _unhandled_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
