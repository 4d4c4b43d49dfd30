"""The GHL (LeadConnector API v2) client: one ``httpx.AsyncClient``, retries, a shared rate limit.

Build it with :func:`build_ghl_client` at start-up (the embedded mode talks to
the in-process sandbox, production to ``GHL_BASE_URL`` with ``GHL_API_KEY``)
and close it with :meth:`GHLClient.aclose`::

    client = build_ghl_client(settings, cache, sandbox_app=sandbox)
    await client.send_message("contact-1", "SMS", "Thanks, talk soon!")

Every call sends the ``Version`` header GHL wants for that endpoint
(``2021-04-15`` for conversations and calendars, ``2021-07-28`` for contacts).
Reads (GET) are retried on 429, 5xx and transport errors. Writes (POST,
DELETE) are retried only when the request provably did not take effect: a
connection that could not be made (nothing left) or a 429 (GHL refused it);
after a timeout once the request left, or a 5xx, GHL may have done it, so
:class:`GHLOutcomeUnknownError` is raised at once and the outbox reads GHL back
(:meth:`GHLClient.find_sent_messages`) before it sends again. Retries use
exponential backoff with full jitter, honouring ``Retry-After``; when they run
out, or GHL asks for a longer wait than ``max_retry_wait``,
:class:`GHLRateLimitError` (429) or :class:`GHLError` is raised with
``retry_after`` set so the outbox can come back later. Other 4xx answers are
not retried.

Before each request the client takes a slot from a per-location sliding window
(100 requests per 10 s by default) kept in the :class:`Cache`, so replicas
sharing Redis share the budget; when the window is full it waits instead of
failing.

Tracing: every call is an httpx CLIENT span under the caller's current span.
Real transports are covered by the global ``HTTPXClientInstrumentor``; the
sandbox's ``ASGITransport`` is not one of those, so :func:`build_ghl_client`
instruments that client itself, unless tracing is off for good (``OTEL_ENABLED=false``
or ``OTEL_SDK_DISABLED=true``: the global instrumentation is never loaded then either).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import random
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from http.cookiejar import Cookie, CookieJar
from typing import Any, Literal

import httpx
from fastapi import FastAPI

from ghl_real_estate_ai.cache.base import Cache
from ghl_real_estate_ai.errors import (
    CacheError,
    ConfigurationError,
    GHLError,
    GHLOutcomeUnknownError,
    GHLRateLimitError,
)
from ghl_real_estate_ai.observability.url_templates import register_url_templates
from ghl_real_estate_ai.settings import Settings

__all__ = [
    "CONTACTS_VERSION",
    "CONVERSATIONS_VERSION",
    "GHL_URL_TEMPLATES",
    "SANDBOX_BASE_URL",
    "Channel",
    "GHLClient",
    "RateLimiter",
    "build_ghl_client",
]

CONVERSATIONS_VERSION = "2021-04-15"
CONTACTS_VERSION = "2021-07-28"
SANDBOX_BASE_URL = "http://ghl-sandbox"
"""Base URL of the in-process sandbox; the ASGI transport ignores the host."""

GHL_URL_TEMPLATES = (
    "/conversations/messages",
    "/conversations/search",
    "/conversations/{conversationId}/messages",
    "/contacts/{contactId}",
    "/contacts/{contactId}/tags",
    "/contacts/{contactId}/tasks",
    "/calendars/{calendarId}/free-slots",
    "/calendars/events/appointments",
)
"""The API paths this client calls: its spans are named ``POST /contacts/{contactId}/tags`` (issue 12)."""

Channel = Literal["SMS", "Email"]

logger = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The request never reached GHL: no connection, or no pooled connection in time.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}: pass e.g. datetime.now(UTC)")
    return value


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class RateLimiter:
    """A sliding-window request budget kept in a :class:`Cache` (shared when it is Redis).

    Two fixed-window counters approximate the sliding window: the estimate is
    ``previous * (1 - elapsed share of current window) + current``. Counting a
    request and reading the previous window is one ``incr_and_get`` (an atomic
    increment with a TTL, and a read, in one round trip on Redis).
    The estimate assumes the previous window's requests were spread evenly, so
    a burst at the very end of one window can let a few more through than a
    strict sliding log would; GHL answers those 429 and the client retries them
    after ``Retry-After``.
    """

    def __init__(self, cache: Cache, key: str, limit: int, window_seconds: float = 10.0) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be >= 1, got {limit!r}")
        self.cache = cache
        self.key = key
        self.limit = limit
        self.window = window_seconds

    async def acquire(self) -> float:
        """Wait until a request may go out, then count it.

        Returns:
            The seconds spent waiting.
        """
        waited = 0.0
        while True:
            now = time.time()
            index = int(now // self.window)
            elapsed = (now % self.window) / self.window
            current_key = f"{self.key}:{index}"
            try:
                count, previous = await self.cache.incr_and_get(
                    current_key, f"{self.key}:{index - 1}", 1, ttl=self.window * 2 + 1
                )
            except CacheError as exc:
                # Fail open: GHL's own 429s (retried) still protect us if the cache is down.
                logger.warning("GHL rate limiter skipped, the cache failed: %s", exc)
                return waited
            previous_count = int(previous) if isinstance(previous, int | float) else 0
            estimate = previous_count * (1 - elapsed) + count
            if estimate <= self.limit:
                return waited
            try:
                await self.cache.incr(current_key, -1)  # give the slot back while we wait
            except CacheError:
                return waited
            to_window_end = self.window * (1 - elapsed)
            if previous_count > 0:
                # The previous window's weight falls by previous_count / window per second.
                needed = (estimate - self.limit) * self.window / previous_count
                delay = min(needed, to_window_end)
            else:
                delay = to_window_end
            delay = max(0.005, delay) + random.uniform(0, 0.01)  # jitter: replicas do not wake together
            await asyncio.sleep(delay)
            waited += delay


class GHLClient:
    """Calls the GHL API for one location.

    Args:
        base_url: API base, e.g. ``https://services.leadconnectorhq.com``.
        api_key: Bearer token; None sends no ``Authorization`` header.
        location_id: the sub-account; also names the rate-limit window.
        http: the shared ``httpx.AsyncClient`` (closed by :meth:`aclose`).
        cache: holds the rate-limit counters and cached contacts.
        rate_limit_per_10s: request budget per location per 10 s.
        max_retries: retries after the first try on 429/5xx/transport errors.
        backoff_base: first backoff in seconds (doubles per retry, full jitter).
        backoff_max: longest single backoff.
        max_retry_wait: a ``Retry-After`` longer than this is not slept on; the
            error is raised at once with ``retry_after`` set.
        contact_ttl: seconds a fetched contact stays cached.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        location_id: str,
        http: httpx.AsyncClient,
        cache: Cache,
        rate_limit_per_10s: int = 100,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_wait: float = 60.0,
        contact_ttl: float = 60.0,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.location_id = location_id
        self.http = http
        self.cache = cache
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_wait = max_retry_wait
        self.contact_ttl = contact_ttl
        self.limiter = RateLimiter(cache, f"ghl:ratelimit:{location_id}", rate_limit_per_10s)

    def with_retries(self, max_retries: int) -> GHLClient:
        """A client sharing this one's connection pool, cache and limiter, with another retry budget.

        The outbox uses a small budget for sends made inside a webhook request,
        so a GHL outage does not hold the request for minutes.
        """
        clone = object.__new__(GHLClient)
        clone.__dict__.update(self.__dict__)
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        clone.max_retries = max_retries
        return clone

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    # --- the API -----------------------------------------------------------------

    async def send_message(
        self,
        contact_id: str,
        channel: Channel,
        message: str,
        *,
        subject: str | None = None,
        html: str | None = None,
    ) -> dict[str, Any]:
        """Send an SMS or e-mail to a contact (``POST /conversations/messages``).

        Args:
            contact_id: the GHL contact.
            channel: ``"SMS"`` or ``"Email"``.
            message: the text (the e-mail's plain body).
            subject: e-mail subject.
            html: e-mail HTML body.

        Returns:
            GHL's answer: ``{"conversationId", "messageId", ...}``.
        """
        if channel not in ("SMS", "Email"):
            raise ValueError(f"channel must be 'SMS' or 'Email', got {channel!r}")
        body: dict[str, Any] = {"type": channel, "contactId": contact_id, "message": message}
        if channel == "Email":
            if subject is not None:
                body["subject"] = subject
            if html is not None:
                body["html"] = html
        return await self._request("POST", "/conversations/messages", CONVERSATIONS_VERSION, json=body)

    async def add_tags(self, contact_id: str, tags: Sequence[str]) -> dict[str, Any]:
        """Add tags to a contact (``POST /contacts/{id}/tags``); returns ``{"tags": [...]}``."""
        answer = await self._request(
            "POST", f"/contacts/{contact_id}/tags", CONTACTS_VERSION, json={"tags": list(tags)}
        )
        await self._forget_contact(contact_id)
        return answer

    async def remove_tags(self, contact_id: str, tags: Sequence[str]) -> dict[str, Any]:
        """Remove tags from a contact (``DELETE /contacts/{id}/tags``); returns ``{"tags": [...]}``."""
        answer = await self._request(
            "DELETE", f"/contacts/{contact_id}/tags", CONTACTS_VERSION, json={"tags": list(tags)}
        )
        await self._forget_contact(contact_id)
        return answer

    async def create_task(self, contact_id: str, title: str, body: str, due_at: datetime) -> dict[str, Any]:
        """Create a task on a contact (``POST /contacts/{id}/tasks``), e.g. a call for the agent.

        Returns:
            GHL's answer: ``{"task": {"id", "title", "dueDate", ...}}``.
        """
        due = _aware("due_at", due_at).astimezone(UTC).isoformat().replace("+00:00", "Z")
        payload = {"title": title, "body": body, "dueDate": due, "completed": False}
        return await self._request("POST", f"/contacts/{contact_id}/tasks", CONTACTS_VERSION, json=payload)

    async def get_free_slots(
        self,
        calendar_id: str,
        start: datetime,
        end: datetime,
        timezone: str = "America/Los_Angeles",
    ) -> list[datetime]:
        """Free appointment slots of a calendar (``GET /calendars/{id}/free-slots``).

        Args:
            calendar_id: the calendar.
            start: first instant to consider (timezone-aware).
            end: last instant to consider (timezone-aware).
            timezone: IANA zone the slots are expressed in.

        Returns:
            Slot start times, ascending, timezone-aware.
        """
        params = {
            "startDate": int(_aware("start", start).timestamp() * 1000),
            "endDate": int(_aware("end", end).timestamp() * 1000),
            "timezone": timezone,
        }
        answer = await self._request(
            "GET", f"/calendars/{calendar_id}/free-slots", CONVERSATIONS_VERSION, params=params
        )
        slots: list[datetime] = []
        for key, day in answer.items():
            if key == "traceId" or not isinstance(day, Mapping):
                continue
            for text in day.get("slots", []):
                try:
                    moment = datetime.fromisoformat(str(text))
                except ValueError:
                    logger.warning("GHL free-slots returned an unreadable slot %r; skipped", text)
                    continue
                slots.append(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        return sorted(slots)

    async def book_appointment(
        self, calendar_id: str, contact_id: str, start_time: datetime, title: str | None = None
    ) -> dict[str, Any]:
        """Book an appointment (``POST /calendars/events/appointments``).

        Returns:
            The appointment GHL created (``id``, ``startTime``, ``appointmentStatus``...).
        """
        payload: dict[str, Any] = {
            "calendarId": calendar_id,
            "locationId": self.location_id,
            "contactId": contact_id,
            "startTime": _aware("start_time", start_time).isoformat(),
        }
        if title is not None:
            payload["title"] = title
        return await self._request(
            "POST", "/calendars/events/appointments", CONVERSATIONS_VERSION, json=payload
        )

    async def find_sent_messages(
        self, contact_id: str, text: str, since: datetime, *, max_pages: int = 10
    ) -> list[dict[str, Any]]:
        """Outbound messages to a contact with exactly ``text``, sent at or after ``since``.

        Reads GHL back (``GET /conversations/search?contactId=`` then
        ``GET /conversations/{id}/messages``, newest first, paged with
        ``lastMessageId``) until the messages are older than ``since``; this is
        how a send whose outcome is unknown is reconciled.

        Args:
            contact_id: the contact.
            text: the message text sent.
            since: the start of the send window (timezone-aware).
            max_pages: pages of 100 read per conversation at most.

        Returns:
            The matching messages as GHL returns them (``id``, ``dateAdded``, ``body``...).
        """
        since = _aware("since", since)
        found = await self._request(
            "GET",
            "/conversations/search",
            CONVERSATIONS_VERSION,
            params={"contactId": contact_id, "locationId": self.location_id},
        )
        matches: list[dict[str, Any]] = []
        for conversation in found.get("conversations") or []:
            if not isinstance(conversation, Mapping):
                continue
            if conversation.get("contactId") not in (None, contact_id):
                continue
            last_id: str | None = None
            for _ in range(max_pages):
                params: dict[str, Any] = {"limit": 100}
                if last_id:
                    params["lastMessageId"] = last_id
                path = f"/conversations/{conversation['id']}/messages"
                answer = await self._request("GET", path, CONVERSATIONS_VERSION, params=params)
                # GHL nests the page under "messages" ({"messages": {"messages": [...], ...}}).
                page = answer.get("messages", answer)
                page = page if isinstance(page, Mapping) else {"messages": page}
                older = False
                for message in page.get("messages") or []:
                    moment = _message_time(message)
                    if moment is not None and moment < since:
                        older = True
                        continue
                    if message.get("direction") == "outbound" and message.get("body") == text:
                        matches.append(dict(message))
                last_id = page.get("lastMessageId")
                if older or not page.get("nextPage") or not last_id:
                    break
        return matches

    async def get_contact(self, contact_id: str) -> dict[str, Any]:
        """A contact (``GET /contacts/{id}``), cached for ``contact_ttl`` seconds.

        Tag changes made through this client drop the cached copy.

        Returns:
            The contact object (``id``, ``tags``, ``firstName``...).
        """
        key = self._contact_key(contact_id)
        try:
            cached = await self.cache.get(key)
        except CacheError as exc:
            logger.warning("contact cache read failed, asking GHL: %s", exc)
            cached = None
        if isinstance(cached, dict):
            return cached
        answer = await self._request("GET", f"/contacts/{contact_id}", CONTACTS_VERSION)
        contact = answer.get("contact")
        if not isinstance(contact, dict):
            raise GHLError(f"GHL GET /contacts/{contact_id} answered without a contact object: {answer!r}")
        try:
            await self.cache.set(key, contact, ttl=self.contact_ttl)
        except CacheError as exc:
            logger.warning("contact cache write failed: %s", exc)
        return contact

    # --- machinery ----------------------------------------------------------------

    def _contact_key(self, contact_id: str) -> str:
        return f"ghl:contact:{self.location_id}:{contact_id}"

    async def _forget_contact(self, contact_id: str) -> None:
        try:
            await self.cache.delete(self._contact_key(contact_id))
        except CacheError as exc:
            logger.warning("contact cache delete failed: %s", exc)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return random.uniform(0, ceiling)

    async def _request(
        self,
        method: str,
        path: str,
        version: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"Version": version, "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url + path
        what = f"GHL {method} {path}"
        error: GHLError | None = None
        for attempt in range(self.max_retries + 1):
            await self.limiter.acquire()
            retry_after: float | None = None
            write = method != "GET"
            try:
                response = await self.http.request(method, url, headers=headers, json=json, params=params)
            except _NOT_SENT_ERRORS as exc:
                error = GHLError(f"{what} failed before sending: {type(exc).__name__}: {exc}")
            except httpx.TransportError as exc:
                if write:
                    # It left: GHL may have done it. Only a read-back can tell (no blind retry).
                    raise GHLOutcomeUnknownError(
                        f"{what} got no answer after sending: {type(exc).__name__}: {exc}"
                    ) from None
                error = GHLError(f"{what} failed: {type(exc).__name__}: {exc}")
            else:
                status = response.status_code
                if status < 400:
                    return self._decode(what, response)
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
                detail = _error_detail(response)
                if status not in _RETRY_STATUSES:
                    raise GHLError(f"{what} answered {status}: {detail}", status_code=status)
                if write and status != 429:
                    raise GHLOutcomeUnknownError(
                        f"{what} answered {status}: {detail}", status_code=status, retry_after=retry_after
                    )
                kind = GHLRateLimitError if status == 429 else GHLError
                error = kind(
                    f"{what} answered {status}: {detail}", status_code=status, retry_after=retry_after
                )
            if attempt == self.max_retries:
                break
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if delay > self.max_retry_wait:
                break
            logger.info("%s: retry %d/%d in %.2fs (%s)", what, attempt + 1, self.max_retries, delay, error)
            await asyncio.sleep(delay)
        assert error is not None
        raise error

    @staticmethod
    def _decode(what: str, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise GHLError(
                f"{what} answered {response.status_code} with a non-JSON body: {response.text[:200]!r}",
                status_code=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise GHLError(f"{what} answered a JSON {type(data).__name__}, expected an object: {data!r}")
        return data


class _KeepNothing(CookieJar):
    """A cookie jar nothing can be put in."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None


class _NoCookies(httpx.Cookies):
    """The cookies of :class:`_TokenClient`: always none, and answers are not read for any."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


_NO_COOKIES = _NoCookies(_KeepNothing())


class _TokenClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that neither keeps nor sends cookies.

    GHL's API authenticates every call with its Bearer token and needs no session.
    A plain client would store whatever ``Set-Cookie`` the API's front end sends
    and send it back on every later call (one jar shared by every contact's
    calls), and it parses each answer's headers for cookies to do so.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Per client: its default headers take part in every merge. URLs are immutable.
        self._merged = functools.lru_cache(maxsize=64)(self._merge_header_set)
        self._url = functools.lru_cache(maxsize=256)(httpx.URL)

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise AttributeError("the GHL client keeps no cookies: GHL's API is authenticated by its token")

    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        params: Any = None,
        headers: Any = None,
        cookies: Any = None,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,
        extensions: Any = None,
    ) -> httpx.Request:
        """httpx's request, without merging the client's headers into the same few header sets again.

        The client calls GHL with an absolute URL and one of a few fixed header sets (a
        ``Version`` per endpoint, the token): httpx's own build merges and normalises the
        client's default headers into each request's anew. Here the merged headers of a
        header set are remembered (at most 64 sets) and copied into the request, and an
        absolute URL is parsed once for all the calls to it (at most 256 remembered: most
        calls go to a few endpoints) and handed to the request as it is (httpx's merge with
        the client's ``base_url`` would give it back unchanged). Any other call (a relative
        URL, form data or files, cookies, query parameters on the client, a timeout or
        extensions of its own) goes through httpx's build.
        """
        if (
            type(headers) is not dict
            or type(url) is not str
            or not url.startswith(("https://", "http://"))
            or data is not None
            or files is not None
            or cookies
            or timeout is not httpx.USE_CLIENT_DEFAULT
            or extensions is not None
            or self.params
        ):
            return super().build_request(
                method,
                url,
                content=content,
                data=data,
                files=files,
                json=json,
                params=params,
                headers=headers,
                cookies=cookies,
                timeout=timeout,
                extensions=extensions,
            )
        return httpx.Request(
            method,
            self._url(url),
            content=content,
            json=json,
            params=params,
            # The client's own headers are part of the key: a change to them is a new merge.
            headers=self._merged(tuple(headers.items()), tuple(self.headers.raw)),
            extensions={"timeout": self.timeout.as_dict()},
        )

    def _merge_header_set(
        self, items: tuple[tuple[Any, Any], ...], _defaults: tuple[Any, ...]
    ) -> httpx.Headers:
        """The client's headers with ``items`` merged in, as httpx's build does (kept by ``_merged``)."""
        merged = httpx.Headers(self.headers)
        merged.update(dict(items))
        return merged


def _message_time(message: Any) -> datetime | None:
    if not isinstance(message, Mapping) or not isinstance(message.get("dateAdded"), str):
        return None
    try:
        moment = datetime.fromisoformat(message["dateAdded"].replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _error_detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return repr(response.text[:200])
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])[:300]
    return repr(data)[:300]


def build_ghl_client(settings: Settings, cache: Cache, sandbox_app: FastAPI | None = None) -> GHLClient:
    """Build the app's GHL client from settings.

    With ``GHL_BASE_URL`` unset the client talks to the GHL sandbox in-process
    (``httpx.ASGITransport``), so it works whatever host and port the service
    is served on; pass the same ``sandbox_app`` you mount at ``/sandbox/ghl``
    so its call log shows the bots' calls. Otherwise it calls ``GHL_BASE_URL``
    with ``Authorization: Bearer <GHL_API_KEY>``.

    Args:
        settings: the configuration.
        cache: for rate-limit counters and cached contacts.
        sandbox_app: the sandbox to call in the embedded mode; None builds one
            from ``SANDBOX_LATENCY_MS`` and ``SANDBOX_FAILURE_RATE``.

    Returns:
        The client; close it with ``aclose()``.

    Raises:
        ConfigurationError: GHL_BASE_URL is set without GHL_API_KEY.
    """
    register_url_templates(GHL_URL_TEMPLATES)
    timeout = httpx.Timeout(15.0, connect=5.0)
    if settings.ghl_base_url is None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app

        app = sandbox_app or create_sandbox_app(
            latency_ms=settings.sandbox_latency_ms,
            failure_rate=settings.sandbox_failure_rate,
            location_id=settings.ghl_location_id,
        )
        # A sandbox 500 must reach the client as a response, like a real server's would.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        http = _TokenClient(transport=transport, timeout=timeout)
        if settings.tracing_on:
            # The global httpx instrumentation patches httpx's own transports only. With tracing
            # off for good it is never loaded, and this client is left alone likewise.
            HTTPXClientInstrumentor.instrument_client(http)
        base_url = SANDBOX_BASE_URL
        api_key = settings.ghl_api_key or "sandbox-token"
    else:
        if not settings.ghl_api_key:
            raise ConfigurationError(
                f"GHL_BASE_URL={settings.ghl_base_url!r} is set but GHL_API_KEY is not: set GHL_API_KEY "
                "or unset GHL_BASE_URL to use the built-in sandbox"
            )
        http = _TokenClient(timeout=timeout, limits=httpx.Limits(max_connections=50))
        base_url = settings.ghl_base_url
        api_key = settings.ghl_api_key
    return GHLClient(
        base_url=base_url,
        api_key=api_key,
        location_id=settings.ghl_location_id,
        http=http,
        cache=cache,
        rate_limit_per_10s=settings.ghl_rate_limit_per_10s,
    )
