"""HTTP to a rawevents (or Mixpanel) server: credentials, retries with backoff and jitter.

Retried: 429 and 5xx (honouring `Retry-After`), connection errors and transfers cut short.
Not retried: every other 4xx, shown with the server's own message. A server that refuses the
connection fails after a few quick tries (seconds, not minutes) with a message naming the URL.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import orjson

from rawevents import __version__
from rawevents.errors import RawEventsError

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = f"rawevents-client/{__version__}"


class ClientError(RawEventsError):
    """A request failed for good: the message says what the server or the network answered."""

    code = "client_error"


class HttpError(ClientError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.server_message = message


class TransferIncomplete(Exception):
    """A response body ended early or failed verification: the request is worth repeating."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A project secret, or a service account (`username` + `secret`) with its `project_id`."""

    secret: str
    username: str | None = None
    project_id: int | None = None

    @classmethod
    def resolve(
        cls,
        secret: str | None = None,
        service_account: str | None = None,
        project_id: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Credentials:
        """From explicit values, else RAWEVENTS_SECRET / RAWEVENTS_SERVICE_ACCOUNT (USER:SECRET)
        and RAWEVENTS_PROJECT_ID; raises ClientError when nothing usable is given."""
        env = os.environ if env is None else env
        secret = secret or env.get("RAWEVENTS_SECRET") or None
        account = service_account or env.get("RAWEVENTS_SERVICE_ACCOUNT") or None
        if project_id is None and env.get("RAWEVENTS_PROJECT_ID"):
            try:
                project_id = int(env["RAWEVENTS_PROJECT_ID"])
            except ValueError as exc:
                raise ClientError("RAWEVENTS_PROJECT_ID must be an integer") from exc
        if account is not None and (service_account is not None or secret is None):
            username, sep, account_secret = account.partition(":")
            if not sep or not username or not account_secret:
                raise ClientError("a service account is given as USER:SECRET")
            if project_id is None:
                raise ClientError("a service account needs --project-id (or RAWEVENTS_PROJECT_ID)")
            return cls(account_secret, username, project_id)
        if secret is None:
            raise ClientError(
                "no credentials: pass --secret or set RAWEVENTS_SECRET, or pass --service-account "
                "USER:SECRET --project-id ID (or RAWEVENTS_SERVICE_ACCOUNT and RAWEVENTS_PROJECT_ID)"
            )
        return cls(secret, None, project_id)

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.secret) if self.username else (self.secret, "")

    def params(self) -> dict[str, str]:
        return {} if self.project_id is None else {"project_id": str(self.project_id)}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    tries: int = 6  # attempts per request for 429/5xx and cut-short transfers
    connect_tries: int = 3  # attempts when the server cannot be reached at all
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0  # a longer Retry-After is a failure, not a wait

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [base/2, base·2^attempt], capped."""
        high = min(self.max_delay, self.base_delay * 2**attempt)
        return random.uniform(self.base_delay / 2, max(high, self.base_delay / 2))


Notify = Callable[[str, float], None]  # (what failed, seconds until the next try)


@dataclass
class Connection:
    """One server: base URL, credentials, and the retry rules every request goes through."""

    url: str
    credentials: Credentials
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    on_retry: Notify | None = None
    timeout: float = 300.0
    transport: httpx.BaseTransport | None = None
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            auth=self.credentials.auth,
            timeout=httpx.Timeout(self.timeout, connect=5.0),
            headers={"User-Agent": USER_AGENT},
            transport=self.transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        handle: Callable[[httpx.Response], T],
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        accept: Callable[[httpx.Response], bool] | None = None,
    ) -> T:
        """Send with retries; `handle` consumes a successful (2xx, or `accept`ed) response and may
        raise TransferIncomplete to have the whole request repeated."""
        query = {**self.credentials.params(), **(params or {})}
        attempt = connect_failures = 0
        while True:
            attempt += 1
            try:
                with self._http.stream(method, path, params=query, content=content, headers=headers) as reply:
                    if reply.is_success or (accept is not None and accept(reply)):
                        return handle(reply)
                    reply.read()
                    if reply.status_code not in RETRY_STATUSES:
                        raise HttpError(reply.status_code, error_message(reply))
                    problem = f"HTTP {reply.status_code}: {error_message(reply)}"
                    wait = retry_after(reply)
            except httpx.ConnectError as exc:
                connect_failures += 1
                if connect_failures >= self.retry.connect_tries:
                    raise ClientError(f"cannot connect to {self.url}: {_reason(exc)}") from exc
                problem, wait = f"cannot connect to {self.url}: {_reason(exc)}", None
            except (httpx.TransportError, TransferIncomplete) as exc:
                problem, wait = f"transfer failed: {_reason(exc)}", None
            if attempt >= self.retry.tries:
                raise ClientError(f"{problem} (gave up after {attempt} tries)")
            if wait is not None and wait > self.retry.max_retry_after:
                raise ClientError(f"{problem} (server asks to retry in {wait:.0f} s)")
            delay = self.retry.backoff(attempt) if wait is None else wait + random.uniform(0, 0.25)
            if self.on_retry is not None:
                self.on_retry(problem, delay)
            self.sleep(delay)

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.call("GET", path, lambda reply: orjson.loads(reply.read()), params=params)


def error_message(reply: httpx.Response) -> str:
    """The server's message: `error` of a JSON body (Mixpanel's shapes), else the text itself;
    control characters escaped, since it ends up on a terminal."""
    text = reply.text.strip()
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return printable(text[:500] or reply.reason_phrase)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return printable(str(body["error"]))
    return printable(text[:500])


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def retry_after(reply: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    raw = reply.headers.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused (is the server running?)"
    return text or type(exc).__name__
