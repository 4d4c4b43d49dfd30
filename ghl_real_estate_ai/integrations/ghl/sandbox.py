"""A GHL-compatible sandbox: a real ASGI app speaking the LeadConnector API v2.

The embedded mode serves it at ``/sandbox/ghl`` and points the GHL client at it
(through ``httpx.ASGITransport``), so the bots run with no GHL account while
every call still goes through httpx. Tests and benchmarks use it the same way,
or over TCP with :func:`serve_in_thread`::

    app = create_sandbox_app(latency_ms=50)
    with serve_in_thread(app) as base_url:   # "http://127.0.0.1:<port>"
        ...                                   # point a GHLClient at base_url

Inside the app, the API paths are GHL's own (``POST /conversations/messages``,
``GET /conversations/search?contactId=``, ``GET /conversations/{id}/messages``
(newest first, paged with ``lastMessageId``/``limit``), ``POST|DELETE /contacts/{id}/tags``,
``POST /contacts/{id}/tasks``,
``GET /contacts/{id}``, ``GET /calendars/{id}/free-slots``,
``POST /calendars/events/appointments``), with GHL's request and response
shapes, its ``Version`` and ``Authorization`` checks (400/401 with GHL-style
``{"statusCode", "message"}`` bodies), a 100-requests-per-10-s limit answered
with 429 and ``X-RateLimit-*`` headers. It keeps contacts (created on first
sight), tags, messages, tasks and appointments in memory, within bounds: the
most recent ``max_contacts`` contacts (older ones are forgotten with their
conversation) and the most recent ``max_records`` messages, tasks,
appointments and calls, so a long run holds steady memory (500 and 1,000 by
default: a window of the recent conversations, filled within the first few
hundred webhooks, after which the embedded service's memory stays flat). A body nested
deeper than 64 levels is answered 400; the call log keeps any text safely
(NUL removed, lone surrogates replaced), so ``GET /_calls`` always answers.

How an API call is served: a gate in front of FastAPI checks it (auth,
Version, rate limit, faults) and logs it. A valid call, the common case, is
then answered by the gate itself, which calls the route's function with the
arguments FastAPI would pass: the gate finds the route by FastAPI's own path
pattern and validates the query and body with the route's declared
``Query(...)`` parameters and body model. FastAPI's per-request machinery
(routing, dependency solving, exception handling) would cost several times
the route itself, on every GHL call the embedded service makes (issue 14).
Anything else (an unknown path or method, a body or query value that fails
validation) goes on to FastAPI, whose routes and error handlers answer it as
they always did: GHL-style 404/405 bodies (a 405 with an Allow header naming
every method the path takes), 422 with a list of problems.
Each route is declared once, as a FastAPI route, so ``/openapi.json`` lists it.

Inspection and control (not recorded, no auth):

* ``GET /``: what the sandbox holds and serves;
* ``GET /_calls`` / ``DELETE /_calls``: every API call (method, path, query,
  JSON body, status, time), oldest first;
* ``GET /_faults`` / ``POST /_faults {"failure_rate": 1.0, "latency_ms": 50}``:
  failure injection (503) and added latency, changeable at run time;
* ``GET /_state`` / ``DELETE /_state``: contacts, messages, tasks, appointments.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import random
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, get_type_hints
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ghl_real_estate_ai.integrations.ghl.client import CONTACTS_VERSION, CONVERSATIONS_VERSION
from ghl_real_estate_ai.observability.otel_config import fastapi_native_telemetry_off
from ghl_real_estate_ai.payloads import JSONDepthError, check_depth, make_storable

__all__ = [
    "CONTACTS_VERSION",
    "CONVERSATIONS_VERSION",
    "SandboxState",
    "create_sandbox_app",
    "get_sandbox_state",
    "serve_in_thread",
]


_STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


# The Version each API's paths take, by their first segment (GHL's calendars API takes the
# conversations one, as the client sends it).
_VERSIONS = {
    "conversations": CONVERSATIONS_VERSION,
    "calendars": CONVERSATIONS_VERSION,
    "contacts": CONTACTS_VERSION,
}


def _expected_version(path: str) -> str | None:
    """The Version an API path needs, or None for any other path.

    By whole first segment: ``/contacts`` and ``/contacts/...`` are the contacts
    API's, while ``/contactsX/...`` is no API's (a prefix match gave it the
    contacts rule, and the auth, rate limit and call log of an API call).
    """
    if not path.startswith("/"):
        return None
    return _VERSIONS.get(path[1:].partition("/")[0])


# GHL takes exactly "Bearer <token>": one space, then RFC 6750's b64token (so no whitespace);
# the scheme's case is free, as HTTP's auth schemes are.
_BEARER = re.compile(r"(?i:bearer) ([A-Za-z0-9\-._~+/]+=*)")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _iso_ms(moment: datetime) -> str:
    # GHL's message times carry milliseconds: "2026-02-15T09:30:00.123Z".
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_MESSAGE_TYPES = {"SMS": (2, "TYPE_SMS"), "Email": (3, "TYPE_EMAIL")}


@dataclass
class SandboxState:
    """Everything the sandbox holds; ``app.state.sandbox`` (see :func:`get_sandbox_state`)."""

    location_id: str
    calendar_timezone: str
    api_key: str | None
    latency_ms: float = 0.0
    failure_rate: float = 0.0
    rate_limit: int = 100
    rate_interval_ms: int = 10_000
    slot_minutes: int = 30
    business_hours: tuple[int, int] = (9, 17)
    max_contacts: int = 500
    max_records: int = 1_000
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    conversations: dict[str, str] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    appointments: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    _hits: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, records: list[dict[str, Any]], record: dict[str, Any]) -> None:
        """Append a record, forgetting the oldest beyond ``max_records`` (a tenth at a time)."""
        records.append(record)
        if len(records) > self.max_records + max(1, self.max_records // 10):
            del records[: len(records) - self.max_records]

    def contact(self, contact_id: str) -> dict[str, Any]:
        """The contact, created on first sight like a lead arriving from GHL."""
        found = self.contacts.get(contact_id)
        if found is None:
            while len(self.contacts) >= self.max_contacts:
                oldest = next(iter(self.contacts))
                del self.contacts[oldest]
                self.conversations.pop(oldest, None)
            found = {
                "id": contact_id,
                "locationId": self.location_id,
                "firstName": None,
                "lastName": None,
                "email": None,
                "phone": None,
                "tags": [],
                "dateAdded": _iso(_now()),
            }
            self.contacts[contact_id] = found
        return found

    def take_rate_slot(self) -> tuple[bool, int, float]:
        """Count one request in the sliding window: (allowed, remaining, seconds until a slot frees)."""
        now = time.monotonic()
        window = self.rate_interval_ms / 1000.0
        with self._lock:
            while self._hits and now - self._hits[0] >= window:
                self._hits.popleft()
            if len(self._hits) >= self.rate_limit:
                return False, 0, window - (now - self._hits[0])
            self._hits.append(now)
            return True, self.rate_limit - len(self._hits), 0.0

    def snapshot(self) -> dict[str, Any]:
        """Contacts, messages, tasks and appointments as JSON."""
        return {
            "contacts": list(self.contacts.values()),
            "messages": self.messages,
            "tasks": self.tasks,
            "appointments": self.appointments,
        }

    def clear(self) -> None:
        """Forget every record and call (faults and limits stay)."""
        self.contacts.clear()
        self.conversations.clear()
        self.messages.clear()
        self.tasks.clear()
        self.appointments.clear()
        self.calls.clear()
        with self._lock:
            self._hits.clear()


def get_sandbox_state(app: FastAPI) -> SandboxState:
    """The state of a sandbox app built by :func:`create_sandbox_app`."""
    state = app.state.sandbox
    assert isinstance(state, SandboxState)
    return state


def _ghl_error(
    status: int, message: str | list[str], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"statusCode": status, "message": message, "error": _STATUS_TEXT.get(status, "Error")}
    return JSONResponse(body, status_code=status, headers=headers)


class _NotJSON:
    """What :func:`_parse` gives for a body that is empty or not JSON."""


_NOT_JSON = _NotJSON()


def _parse(raw: bytes) -> Any:
    """The body's JSON as ``json.loads`` reads it (as FastAPI would), or ``_NOT_JSON``."""
    if not raw:
        return _NOT_JSON
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return _NOT_JSON


@dataclass(frozen=True)
class _QueryParam:
    """A query parameter of an API route: the argument it fills, its key, validator and default."""

    name: str
    key: str
    adapter: TypeAdapter[Any]
    required: bool
    default: Any


@dataclass(frozen=True)
class _Endpoint:
    """An API route as the gate calls it: the route's own function and declarations.

    Everything comes from the FastAPI route (path pattern, method, status code)
    and its function's signature (``Query(...)`` parameters, the body model, the
    return annotation), so a route is declared once and both paths run it.
    """

    method: str
    pattern: re.Pattern[str]
    call: Callable[..., Awaitable[Any]]
    status_code: int
    query: tuple[_QueryParam, ...]
    body: tuple[str, TypeAdapter[Any]] | None
    answer: TypeAdapter[Any] | None

    @classmethod
    def of(cls, route: APIRoute) -> _Endpoint:
        hints = get_type_hints(route.endpoint)
        query: list[_QueryParam] = []
        body: tuple[str, TypeAdapter[Any]] | None = None
        for name, parameter in inspect.signature(route.endpoint).parameters.items():
            annotation = hints[name]
            if name in route.param_convertors:
                # Every path parameter is a plain str, which FastAPI passes on as matched.
                assert annotation is str, (
                    f"path parameter {name!r} of {route.path} must be a str for the gate"
                )
            elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
                body = (name, TypeAdapter(annotation))
            else:
                # A FastAPI parameter's type adapter: the annotation with its Query() constraints.
                info = parameter.default if isinstance(parameter.default, FieldInfo) else None
                default = parameter.default if info is None else info.default
                adapter: TypeAdapter[Any] = TypeAdapter(
                    annotation if info is None else Annotated[annotation, info]
                )
                required = info is not None and info.is_required()
                key = (info.alias if info is not None else None) or name
                query.append(_QueryParam(name, key, adapter, required, default))
        returns = hints.get("return")
        is_response = isinstance(returns, type) and issubclass(returns, Response)
        (method,) = route.methods or set()  # each API route declares one method
        return cls(
            method=method,
            pattern=route.path_regex,
            call=route.endpoint,
            status_code=route.status_code or 200,
            query=tuple(query),
            body=body,
            answer=None if is_response or returns is None else TypeAdapter(returns),
        )

    async def answer_or_none(
        self, path_params: dict[str, str], query_string: bytes, body: Any
    ) -> Response | None:
        """The route's answer, or None when FastAPI must answer instead.

        None for any request FastAPI would refuse or read differently (a body
        that is not plain ``application/json``, JSON that does not parse, a
        value that fails validation): FastAPI's own handling then gives the
        422/400 answer it always gave, so only valid calls take this path.
        """
        arguments: dict[str, Any] = dict(path_params)
        if self.query:
            received = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
            for param in self.query:
                value = received.get(param.key)
                if value is None:
                    if param.required:
                        return None
                    arguments[param.name] = param.default
                    continue
                try:
                    arguments[param.name] = param.adapter.validate_python(value, from_attributes=True)
                except ValidationError:
                    return None
        if self.body is not None:
            if body is _NOT_JSON:
                return None
            name, adapter = self.body
            try:
                arguments[name] = adapter.validate_python(body, from_attributes=True)
            except ValidationError:
                return None
        result = await self.call(**arguments)
        if isinstance(result, Response):
            return result
        assert self.answer is not None
        # FastAPI's answer for a declared response model: validated, then dumped by pydantic.
        content = self.answer.dump_json(self.answer.validate_python(result, from_attributes=True))
        return Response(content, status_code=self.status_code, media_type="application/json")


def _api_endpoints(app: FastAPI) -> dict[str, list[_Endpoint]]:
    """The app's GHL API routes by method, in the order FastAPI matches them."""
    table: dict[str, list[_Endpoint]] = {}
    for route in app.routes:
        if isinstance(route, APIRoute) and _expected_version(route.path) is not None:
            endpoint = _Endpoint.of(route)
            table.setdefault(endpoint.method, []).append(endpoint)
    return table


class _GHLGate:
    """ASGI middleware in front of the API routes: auth, Version, rate limit, faults, call log.

    It reads the body once to log it. A valid call of an API route is answered
    here by the route's function (see :class:`_Endpoint`); anything else (an
    unknown path or method, an invalid body or query) is replayed to FastAPI,
    whose routes and error handlers answer it as they always have.
    """

    def __init__(self, app: ASGIApp, state: SandboxState, endpoints: dict[str, list[_Endpoint]]) -> None:
        self.app = app
        self.state = state
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path", "")
        path: str = scope["path"]
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        version = _expected_version(path)
        if version is None:  # inspection paths and docs
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        fields = dict(scope["headers"])  # ASGI header names are lowercase; the last of a name counts
        sent_version = fields.get(b"version")
        try:
            check_depth(raw)
            too_deep = None
        except JSONDepthError as exc:
            too_deep = str(exc)
            parsed: Any = _NOT_JSON
        else:
            raw = _storable_body(raw)
            parsed = _parse(raw)
        state = self.state
        status_box: list[int] = []

        async def replay() -> Message:
            return {"type": "http.request", "body": raw, "more_body": False}

        allowed, remaining, wait = state.take_rate_slot()
        limit_headers = [
            (b"x-ratelimit-max", str(state.rate_limit).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-interval-milliseconds", str(state.rate_interval_ms).encode()),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box.append(message["status"])
                message = {**message, "headers": [*message.get("headers", []), *limit_headers]}
            await send(message)

        response: Response | None = self._refusal(fields, path, version, allowed, wait)
        if response is None and too_deep is not None:
            response = _ghl_error(400, too_deep)
        if response is None and state.latency_ms > 0:
            await asyncio.sleep(state.latency_ms / 1000.0)
        if response is None and state.failure_rate > 0 and state.rng.random() < state.failure_rate:
            response = _ghl_error(503, "Service Unavailable (sandbox fault injection)")
        if response is None:
            response = await self._answer(scope, path, parsed, fields)
        if response is not None:
            await response(scope, replay, send_with_headers)
        else:
            await self.app(scope, replay, send_with_headers)
        state.keep(
            state.calls,
            {
                "method": scope["method"],
                "path": path,
                "query": scope.get("query_string", b"").decode("latin-1"),
                "body": _logged(raw, parsed),
                "version": None if sent_version is None else sent_version.decode("latin-1"),
                "status": status_box[0] if status_box else None,
                "time": _now().isoformat(),
            },
        )

    async def _answer(
        self, scope: Scope, path: str, parsed: Any, fields: dict[bytes, bytes]
    ) -> Response | None:
        """A valid API call's answer from its route's function, or None to leave it to FastAPI."""
        for endpoint in self.endpoints.get(scope["method"], ()):
            match = endpoint.pattern.match(path)
            if match is not None:
                # FastAPI reads the first Content-Type, the dict holds the last: with a repeated
                # header name, the body is left to FastAPI.
                json_body = fields.get(b"content-type") == b"application/json" and len(fields) == len(
                    scope["headers"]
                )
                return await endpoint.answer_or_none(
                    match.groupdict(), scope.get("query_string", b""), parsed if json_body else _NOT_JSON
                )
        return None

    def _refusal(
        self,
        fields: dict[bytes, bytes],
        path: str,
        version: str,
        allowed: bool,
        wait: float,
    ) -> JSONResponse | None:
        bearer = _BEARER.fullmatch(fields.get(b"authorization", b"").decode("latin-1"))
        if bearer is None:  # missing or malformed ("Bearer  token ", "Basic ...")
            return _ghl_error(401, "Invalid JWT")
        if self.state.api_key is not None and bearer.group(1) != self.state.api_key:
            return _ghl_error(401, "Invalid JWT")
        sent = fields.get(b"version")
        if sent is None:
            return _ghl_error(400, "Version header was not found")
        sent_version = sent.decode("latin-1")
        if sent_version != version:
            return _ghl_error(400, f"Version {sent_version!r} is not supported on {path}; use {version!r}")
        if not allowed:
            return _ghl_error(429, "Too many requests", {"Retry-After": str(max(1, math.ceil(wait)))})
        return None


def _storable_body(raw: bytes) -> bytes:
    """The body with NUL and lone surrogates cleaned from its JSON text (what GHL could store).

    ``json.loads`` reads bytes as UTF-8, -16 or -32 (``json.detect_encoding``), with
    surrogatepass. In UTF-8, NUL or a lone surrogate can only come from a ``\\u``
    escape, a NUL byte or a surrogate's 3-byte form (ED A0-BF ..): a UTF-8 body with
    none of them, the common case, is kept as sent without parsing it. A body in
    another encoding (whose ``\\u`` has NUL bytes between) is always parsed.
    """
    if (
        b"\\u" not in raw
        and b"\x00" not in raw
        and json.detect_encoding(raw).startswith("utf-8")
        and (raw.isascii() or _UTF8_SURROGATE.search(raw) is None)
    ):
        return raw
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    cleaned, changed = make_storable(data)
    return json.dumps(cleaned).encode() if changed else raw


_UTF8_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def _logged(raw: bytes, parsed: Any) -> Any:
    """A logged body: its JSON made safe to serve again, or its text (deep or broken JSON)."""
    if not raw:
        return None
    if parsed is _NOT_JSON:
        return make_storable(raw.decode("utf-8", "replace"))[0]
    if raw.isascii() and b"\\u" not in raw and b"\x00" not in raw:
        # ASCII with no NUL byte is read as UTF-8: NUL or a lone surrogate can only be a \u escape.
        return parsed
    return make_storable(parsed)[0]


# --- request bodies (GHL's camelCase) ---------------------------------------------


def _in_utc_range(value: datetime, name: str) -> datetime:
    """The (aware) time, if it has a UTC equivalent: the routes convert it, which would overflow.

    "9999-12-31T23:00:00-05:00" is a valid ISO time past year 9999 in UTC (and
    "0001-01-01T00:00:00+01:00" one before year 1): refused as a 422, not a 500.
    """
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{name} must fall within years 1-9999 in UTC") from None
    return value


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class SendMessageBody(_Body):
    type: Literal["SMS", "Email", "WhatsApp", "GMB", "IG", "FB", "Custom", "Live_Chat"]
    contact_id: str = Field(min_length=1)
    message: str | None = None
    subject: str | None = None
    html: str | None = None


class TagsBody(_Body):
    tags: list[str] = Field(min_length=1)


class TaskBody(_Body):
    title: str = Field(min_length=1)
    body: str | None = None
    due_date: datetime
    completed: bool = False
    assigned_to: str | None = None

    @field_validator("due_date")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("dueDate must carry a timezone offset")
        return _in_utc_range(value, "dueDate")


class AppointmentBody(_Body):
    calendar_id: str = Field(min_length=1)
    location_id: str = Field(min_length=1)
    contact_id: str = Field(min_length=1)
    start_time: datetime
    end_time: datetime | None = None
    title: str | None = None
    appointment_status: str = "confirmed"

    @field_validator("start_time", "end_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("times must carry a timezone offset")
        return _in_utc_range(value, "times")


class FaultsBody(BaseModel):
    failure_rate: float | None = Field(default=None, ge=0, le=1)
    latency_ms: float | None = Field(default=None, ge=0, le=60_000)


def _slots(
    state: SandboxState, calendar_id: str, start: datetime, end: datetime, tz: ZoneInfo
) -> dict[str, list[str]]:
    """Business-hour slots on weekdays between start and end, minus booked ones."""
    booked = {
        datetime.fromisoformat(a["startTime"]).astimezone(UTC)
        for a in state.appointments
        if a["calendarId"] == calendar_id and a["appointmentStatus"] != "cancelled"
    }
    first, last = state.business_hours
    step = timedelta(minutes=state.slot_minutes)
    days: dict[str, list[str]] = {}
    day: date = start.astimezone(tz).date()
    while day <= end.astimezone(tz).date():
        if day.weekday() < 5:
            moment = datetime(day.year, day.month, day.day, first, tzinfo=tz)
            close = datetime(day.year, day.month, day.day, last, tzinfo=tz)
            while moment < close:
                if start <= moment <= end and moment.astimezone(UTC) not in booked:
                    days.setdefault(day.isoformat(), []).append(moment.isoformat())
                moment += step
        day += timedelta(days=1)
    return days


def create_sandbox_app(
    *,
    latency_ms: float = 0,
    failure_rate: float = 0,
    calendar_timezone: str = "America/Los_Angeles",
    location_id: str = "sandbox-location",
    api_key: str | None = None,
    rate_limit: int = 100,
    seed: int | None = None,
    max_contacts: int = 500,
    max_records: int = 1_000,
) -> FastAPI:
    """Build a GHL sandbox app.

    Args:
        latency_ms: delay added to every API answer (changeable at ``/_faults``).
        failure_rate: share of API calls answered 503, 0-1 (changeable at ``/_faults``).
        calendar_timezone: IANA zone of the calendars' business hours (9-17, weekdays).
        location_id: the location new contacts belong to.
        api_key: when set, the only Bearer token accepted; otherwise any well-formed one.
        rate_limit: requests allowed per 10 s before 429 (GHL's is 100).
        seed: seed of the failure-injection random generator (reproducible runs).
        max_contacts: contacts kept (the least recently created are forgotten first).
        max_records: messages, tasks, appointments and logged calls kept (each, newest).

    Returns:
        The app; its state is ``get_sandbox_state(app)``.

    Raises:
        ValueError: a bad argument (named in the message).
    """
    if not 0 <= failure_rate <= 1:
        raise ValueError(f"failure_rate must be within 0-1, got {failure_rate!r}")
    if latency_ms < 0:
        raise ValueError(f"latency_ms must be >= 0, got {latency_ms!r}")
    try:
        ZoneInfo(calendar_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown calendar_timezone {calendar_timezone!r}: use an IANA name") from None
    state = SandboxState(
        location_id=location_id,
        calendar_timezone=calendar_timezone,
        api_key=api_key,
        latency_ms=latency_ms,
        failure_rate=failure_rate,
        rate_limit=rate_limit,
        rng=random.Random(seed),
        max_contacts=max_contacts,
        max_records=max_records,
    )
    app = FastAPI(
        title="GHL sandbox",
        description="A GHL LeadConnector API v2 stand-in.",
        # GHL's own spans are not ours: only our client's CLIENT span belongs in the trace.
        **fastapi_native_telemetry_off(),
    )
    app.state.sandbox = state

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # HTTP asks a 405 to name every method the path allows; Starlette names the first
            # matching route's only (POST for /contacts/{id}/tags, which takes DELETE too).
            allowed = {
                method
                for route in app.routes
                if isinstance(route, APIRoute) and route.matches(request.scope)[0] is not Match.NONE
                for method in route.methods or ()
            }
            headers["Allow"] = ", ".join(sorted(allowed))
        return _ghl_error(exc.status_code, str(exc.detail), headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            f"{'.'.join(str(p) for p in err['loc'] if p not in ('body', 'query', 'path'))}: {err['msg']}"
            for err in exc.errors()
        ]
        return _ghl_error(422, problems)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)

    # --- GHL API ---------------------------------------------------------------

    @app.post("/conversations/messages")
    async def send_message(body: SendMessageBody) -> JSONResponse:
        if body.type == "Email" and not (body.html or body.message):
            return _ghl_error(422, ["html or message is required for Email"])
        if body.type != "Email" and not body.message:
            return _ghl_error(422, [f"message is required for {body.type}"])
        state.contact(body.contact_id)
        conversation_id = state.conversations.setdefault(body.contact_id, uuid.uuid4().hex[:20])
        message_id = uuid.uuid4().hex[:20]
        record: dict[str, Any] = {
            "id": message_id,
            "conversationId": conversation_id,
            "contactId": body.contact_id,
            "locationId": state.location_id,
            "type": body.type,
            "direction": "outbound",
            "message": body.message,
            "subject": body.subject,
            "html": body.html,
            "dateAdded": _iso_ms(_now()),
        }
        state.keep(state.messages, record)
        answer: dict[str, Any] = {
            "conversationId": conversation_id,
            "messageId": message_id,
            "message": "Message queued successfully.",
            "msg": "Message queued successfully.",
        }
        if body.type == "Email":
            answer["emailMessageId"] = message_id
        return JSONResponse(answer)

    @app.get("/conversations/search")
    async def search_conversations(
        contact_id: str | None = Query(default=None, alias="contactId", max_length=200),
        location_id: str | None = Query(default=None, alias="locationId", max_length=200),
        limit: int = Query(default=20, ge=1, le=100),
    ) -> dict[str, Any]:
        found = [
            (contact, conversation)
            for contact, conversation in state.conversations.items()
            if contact_id is None or contact == contact_id
        ]
        conversations = []
        for contact, conversation in found[:limit]:
            last = next((m for m in reversed(state.messages) if m["conversationId"] == conversation), None)
            conversations.append(
                {
                    "id": conversation,
                    "contactId": contact,
                    "locationId": location_id or state.location_id,
                    "lastMessageBody": last["message"] if last else None,
                    "lastMessageType": _MESSAGE_TYPES.get(last["type"], (0, "TYPE_SMS"))[1] if last else None,
                    "dateUpdated": last["dateAdded"] if last else None,
                }
            )
        return {"conversations": conversations, "total": len(found)}

    @app.get("/conversations/{conversation_id}/messages")
    async def get_messages(
        conversation_id: str,
        last_message_id: str | None = Query(default=None, alias="lastMessageId", max_length=200),
        limit: int = Query(default=20, ge=1, le=100),
    ) -> JSONResponse:
        if conversation_id not in state.conversations.values():
            return _ghl_error(400, f"Conversation not found: {conversation_id}")
        newest_first = [m for m in reversed(state.messages) if m["conversationId"] == conversation_id]
        if last_message_id is not None:
            ids = [m["id"] for m in newest_first]
            start = ids.index(last_message_id) + 1 if last_message_id in ids else len(ids)
            newest_first = newest_first[start:]
        page = newest_first[:limit]
        messages = [
            {
                "id": m["id"],
                "type": _MESSAGE_TYPES.get(m["type"], (0, "TYPE_SMS"))[0],
                "messageType": _MESSAGE_TYPES.get(m["type"], (0, "TYPE_SMS"))[1],
                "locationId": m["locationId"],
                "contactId": m["contactId"],
                "conversationId": m["conversationId"],
                "dateAdded": m["dateAdded"],
                "body": m["message"],
                "direction": m["direction"],
                "status": "delivered",
                "contentType": "text/plain",
            }
            for m in page
        ]
        return JSONResponse(
            {
                "messages": {
                    "lastMessageId": page[-1]["id"] if page else None,
                    "nextPage": len(newest_first) > limit,
                    "messages": messages,
                }
            }
        )

    @app.get("/contacts/{contact_id}")
    async def get_contact(contact_id: str) -> dict[str, Any]:
        return {"contact": state.contact(contact_id)}

    @app.post("/contacts/{contact_id}/tags", status_code=201)
    async def add_tags(contact_id: str, body: TagsBody) -> dict[str, Any]:
        contact = state.contact(contact_id)
        for tag in body.tags:
            if tag not in contact["tags"]:
                contact["tags"].append(tag)
        return {"tags": list(contact["tags"])}

    @app.delete("/contacts/{contact_id}/tags")
    async def remove_tags(contact_id: str, body: TagsBody) -> dict[str, Any]:
        contact = state.contact(contact_id)
        contact["tags"] = [t for t in contact["tags"] if t not in body.tags]
        return {"tags": list(contact["tags"])}

    @app.post("/contacts/{contact_id}/tasks", status_code=201)
    async def create_task(contact_id: str, body: TaskBody) -> dict[str, Any]:
        state.contact(contact_id)
        task = {
            "id": uuid.uuid4().hex[:20],
            "contactId": contact_id,
            "title": body.title,
            "body": body.body,
            "dueDate": body.due_date.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "completed": body.completed,
            "assignedTo": body.assigned_to,
        }
        state.keep(state.tasks, task)
        return {"task": task}

    @app.get("/calendars/{calendar_id}/free-slots")
    async def free_slots(
        calendar_id: str,
        start_date: int = Query(alias="startDate", ge=0, le=10**14),
        end_date: int = Query(alias="endDate", ge=0, le=10**14),
        timezone: str | None = None,
    ) -> JSONResponse:
        zone_name = timezone or state.calendar_timezone
        try:
            tz = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            return _ghl_error(422, [f"timezone {zone_name!r} is not a valid IANA time zone"])
        start = datetime.fromtimestamp(start_date / 1000, tz=UTC)
        end = datetime.fromtimestamp(end_date / 1000, tz=UTC)
        if end < start:
            return _ghl_error(422, ["endDate must not be before startDate"])
        if end - start > timedelta(days=31):
            return _ghl_error(422, ["the range between startDate and endDate must be 31 days or less"])
        days = _slots(state, calendar_id, start, end, tz)
        answer: dict[str, Any] = {day: {"slots": slots} for day, slots in days.items()}
        answer["traceId"] = uuid.uuid4().hex
        return JSONResponse(answer)

    @app.post("/calendars/events/appointments", status_code=201)
    async def book_appointment(body: AppointmentBody) -> JSONResponse:
        start = body.start_time.astimezone(UTC)  # within range: the body model checks
        try:
            end = body.end_time or body.start_time + timedelta(minutes=state.slot_minutes)
            end.astimezone(UTC)
        except OverflowError:  # a start in the last minutes of year 9999 (in UTC or its own zone)
            return _ghl_error(
                422,
                [
                    f"startTime: a {state.slot_minutes}-minute appointment from it ends after "
                    "year 9999; send an earlier startTime or an endTime"
                ],
            )
        taken = any(
            a["calendarId"] == body.calendar_id
            and a["appointmentStatus"] != "cancelled"
            and datetime.fromisoformat(a["startTime"]).astimezone(UTC) == start
            for a in state.appointments
        )
        if taken:
            return _ghl_error(400, "The slot you have selected is no longer available.")
        state.contact(body.contact_id)
        appointment = {
            "id": uuid.uuid4().hex[:20],
            "calendarId": body.calendar_id,
            "locationId": body.location_id,
            "contactId": body.contact_id,
            "title": body.title or "Appointment",
            "startTime": body.start_time.isoformat(),
            "endTime": end.isoformat(),
            "appointmentStatus": body.appointment_status,
            "dateAdded": _iso(_now()),
        }
        state.keep(state.appointments, appointment)
        return JSONResponse(appointment, status_code=201)

    # --- inspection and control ----------------------------------------------------

    @app.get("/")
    async def index() -> dict[str, Any]:
        return {
            "name": "GHL sandbox",
            "about": "A GoHighLevel API v2 stand-in; every call below is recorded.",
            "location_id": state.location_id,
            "calendar_timezone": state.calendar_timezone,
            "faults": {"failure_rate": state.failure_rate, "latency_ms": state.latency_ms},
            "counts": {
                "calls": len(state.calls),
                "contacts": len(state.contacts),
                "messages": len(state.messages),
                "tasks": len(state.tasks),
                "appointments": len(state.appointments),
            },
            "inspect": ["GET _calls", "DELETE _calls", "GET|POST _faults", "GET|DELETE _state"],
            "api": [
                "POST conversations/messages",
                "GET conversations/search",
                "GET conversations/{conversationId}/messages",
                "GET contacts/{contactId}",
                "POST|DELETE contacts/{contactId}/tags",
                "POST contacts/{contactId}/tasks",
                "GET calendars/{calendarId}/free-slots",
                "POST calendars/events/appointments",
            ],
        }

    @app.get("/_calls")
    async def list_calls() -> dict[str, Any]:
        return {"count": len(state.calls), "calls": state.calls}

    @app.delete("/_calls")
    async def clear_calls() -> dict[str, Any]:
        count = len(state.calls)
        state.calls.clear()
        return {"cleared": count}

    @app.get("/_faults")
    async def get_faults() -> dict[str, float]:
        return {"failure_rate": state.failure_rate, "latency_ms": state.latency_ms}

    @app.post("/_faults")
    async def set_faults(body: FaultsBody) -> dict[str, float]:
        if body.failure_rate is not None:
            state.failure_rate = body.failure_rate
        if body.latency_ms is not None:
            state.latency_ms = body.latency_ms
        return {"failure_rate": state.failure_rate, "latency_ms": state.latency_ms}

    @app.get("/_state")
    async def get_state() -> dict[str, Any]:
        return state.snapshot()

    @app.delete("/_state")
    async def clear_state() -> dict[str, str]:
        state.clear()
        return {"status": "cleared"}

    app.add_middleware(_GHLGate, state=state, endpoints=_api_endpoints(app))
    return app


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free port in a background thread.

    For tests and benchmarks that need a real TCP server (the sandbox, or the
    service itself).

    Args:
        app: the ASGI app; its lifespan runs in the server's own event loop.
        host: interface to bind.

    Yields:
        The base URL, e.g. ``http://127.0.0.1:54321``.

    Raises:
        RuntimeError: the server did not start within 10 s.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="auto", ws="none", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise RuntimeError(f"the server for {app!r} did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
