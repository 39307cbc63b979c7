"""One error hierarchy for the whole core, each class with a stable machine-readable code.

The HTTP layer maps these to Mixpanel's response shapes; the core never imports the web framework.
"""

from __future__ import annotations


class RawEventsError(Exception):
    """Base of every error rawevents raises on purpose. `status` is the HTTP status it maps to."""

    code: str = "rawevents_error"
    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RawEventsError):
    code = "bad_request"
    status = 400


class PayloadTooLarge(RawEventsError):
    code = "payload_too_large"
    status = 413


class Unauthorized(RawEventsError):
    code = "unauthorized"
    status = 401


class Forbidden(RawEventsError):
    code = "forbidden"
    status = 403


class RateLimited(RawEventsError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerBusy(RawEventsError):
    """The server is at capacity (e.g. every export slot is taken); the client should retry."""

    code = "server_busy"
    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(RawEventsError):
    code = "not_found"
    status = 404


class StorageError(RawEventsError):
    """The store could not complete a write; nothing of the batch was acknowledged."""

    code = "storage_error"
    status = 503


class StartupError(RawEventsError):
    """The server cannot start as configured (port taken, data directory unusable or in use);
    the CLI prints the message on one line and exits non-zero."""

    code = "startup_error"


class StoreInUse(StartupError):
    """Another process (a running server) holds the event store's write lock."""

    code = "store_in_use"


class Unsupported(RawEventsError):
    """The configured store cannot do this (said before anything is changed)."""

    code = "unsupported"
    status = 501
