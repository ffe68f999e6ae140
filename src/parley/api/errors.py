"""The one place errors become HTTP responses: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley.core.errors import ErrorCode, ParleyError, RateLimited, UnderMaintenance

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: ErrorCode.INVALID_JSON,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}
_HTTP_MESSAGES = {
    400: "the request body is not valid JSON encoded as UTF-8",
    404: "not found",
    405: "method not allowed",
    413: "the request body is too large",
}
# Pydantic error types raised by our own validators (and pydantic's refusal of lone surrogates),
# and the codes they stand for.
_VALIDATION_CODES = {
    "invalid_text": ErrorCode.INVALID_TEXT,
    "string_unicode": ErrorCode.INVALID_TEXT,
    "json_invalid": ErrorCode.INVALID_JSON,
}


class BodyTooLarge(StarletteHTTPException):
    """Raised while a body is read past its limit (FastAPI lets HTTPExceptions through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: Any = None,
    retry_after: int | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    if retry_after is not None:
        error["retry_after"] = retry_after
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ParleyError)
    async def on_parley_error(request: Request, exc: ParleyError) -> JSONResponse:
        # A route that already vetted the caller's origin (the widget's) lets it read errors too.
        headers: dict[str, str] = dict(getattr(request.state, "cors_headers", None) or {})
        if exc.status == 503:
            headers["Retry-After"] = "1"
        if isinstance(exc, RateLimited | UnderMaintenance):
            retry_after = max(1, math.ceil(exc.retry_after))
            headers["Retry-After"] = str(retry_after)
            return error_response(
                exc.status, exc.code, exc.message, headers=headers, retry_after=retry_after
            )
        return error_response(
            exc.status, exc.code, exc.message, details=exc.details, headers=headers or None
        )

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if _body_not_json(request, errors):
            return error_response(
                415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json"
            )
        code = ErrorCode.VALIDATION
        for error in errors:
            code = _VALIDATION_CODES.get(error.get("type", ""), code)
        status = 400 if code is ErrorCode.INVALID_JSON else 422
        details = [
            {
                "loc": [str(part) for part in e.get("loc", ())],
                "msg": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in errors[:20]
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
        message = f"{where}: {first['msg']}" if where else first["msg"]
        return error_response(status, code, message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
        message = exc.detail if isinstance(exc, BodyTooLarge) else None
        message = message or _HTTP_MESSAGES.get(exc.status_code) or str(exc.detail)
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # A full volume outside the stores (the request body's spool in the temp dir).
            log.warning("a volume is full: %s", exc)
            return error_response(
                507, ErrorCode.STORAGE_FULL, "the server's disk is full; retry later"
            )
        log.error("unhandled error", exc_info=exc)
        return error_response(500, ErrorCode.INTERNAL, "internal error; it has been logged")


def _body_not_json(request: Request, errors: Sequence[Any]) -> bool:
    """A JSON body was expected, and one came with another (or no) Content-Type.

    FastAPI parses only `application/json` and `*+json` bodies; anything else reaches the schema
    as raw bytes and fails as a whole, at the location `("body",)`.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return False
    return any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors)
