"""Typed errors. Providers raise them, the engine decides on retry or
fallback from ``retryable``, and protocol encoders turn them into each
protocol's own error shape using ``status`` and ``code``."""

from __future__ import annotations

from .events import Error
from .secrets import scrub


class SluicewayError(Exception):
    status: int = 500
    code: str = "internal_error"
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None, provider: str | None = None) -> None:
        message = scrub(message)  # an upstream may echo the key it was sent
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.param = param
        self.provider = provider

    def to_event(self) -> Error:
        return Error(code=self.code, message=self.message, retryable=self.retryable, status=self.status)


class BadRequest(SluicewayError):
    status = 400
    code = "invalid_request_error"


class AuthError(SluicewayError):
    status = 401
    code = "authentication_error"


class PermissionDenied(SluicewayError):
    status = 403
    code = "permission_denied"


class NotFound(SluicewayError):
    status = 404
    code = "not_found"


class RequestTooLarge(SluicewayError):
    status = 413
    code = "request_too_large"


class RateLimited(SluicewayError):
    status = 429
    code = "rate_limit_exceeded"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class UpstreamError(SluicewayError):
    """The upstream answered with something we cannot use (5xx, garbage)."""

    status = 502
    code = "upstream_error"
    retryable = True


class UpstreamUnavailable(SluicewayError):
    status = 503
    code = "upstream_unavailable"
    retryable = True


class Timeout(SluicewayError):
    status = 504
    code = "timeout"
    retryable = True


def error_from_status(status: int, message: str, *, retry_after: float | None = None,
                      provider: str | None = None) -> SluicewayError:
    """Map an upstream HTTP status to the typed error clients should see."""
    if status == 401:
        return AuthError(message, provider=provider)
    if status == 403:
        return PermissionDenied(message, provider=provider)
    if status == 404:
        return NotFound(message, provider=provider)
    if status == 413:
        return RequestTooLarge(message, provider=provider)
    if status == 429:
        return RateLimited(message, retry_after=retry_after, provider=provider)
    if status in (408, 504):
        return Timeout(message, provider=provider)
    if status in (502, 503, 529):
        return UpstreamUnavailable(message, provider=provider)
    if 400 <= status < 500:
        return BadRequest(message, status=status, provider=provider)
    return UpstreamError(message, provider=provider)


def from_event(ev: Error) -> SluicewayError:
    """The typed error an ``error`` event stands for: the inverse of ``to_event``,
    keeping our own status and code (``error_from_status`` maps an *upstream's*
    status, so using it here turned our 502 into a 503)."""
    cls = _BY_STATUS.get(ev.status, SluicewayError)
    err = cls(ev.message, status=ev.status, code=ev.code)
    err.retryable = ev.retryable
    return err


def as_sluiceway_error(exc: BaseException) -> SluicewayError:
    if isinstance(exc, SluicewayError):
        return exc
    return UpstreamError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


_BY_STATUS: dict[int, type[SluicewayError]] = {
    400: BadRequest, 401: AuthError, 403: PermissionDenied, 404: NotFound, 413: RequestTooLarge,
    429: RateLimited, 502: UpstreamError, 503: UpstreamUnavailable, 504: Timeout,
}
