"""The LLM interfaces, the shared fallback logic of the providers, and their GenAI spans.

Two jobs for a model when ``LLM_PROVIDER`` is set (issue 10, LLM mode):

* :meth:`ProviderLLM.fill_slots` reads the conversation and fills the same
  dialogue slots the deterministic pipeline fills, through structured output
  (a JSON schema, :data:`SLOT_SCHEMA`: a forced tool call on Anthropic, a
  ``json_schema`` response format on OpenAI). Any error, timeout or answer
  that does not fit the schema gives ``None``: the bot keeps the pipeline's
  reading, in the same request.
* :meth:`ProviderLLM.write` writes the reply from the bot's draft and the
  slots; any trouble (an error, a timeout, no text, too long, a dollar figure
  the draft does not have) returns the draft.

Neither raises into the bot. Each model call is one ``CLIENT`` span named
``{gen_ai.operation.name} {gen_ai.request.model}`` under the node that made
it, with the OpenTelemetry GenAI attributes (provider, request and response
model, token usage, finish reasons) plus ``llm.purpose`` and ``llm.outcome``;
the prompt and the completion go on it (``gen_ai.system_instructions``,
``gen_ai.input.messages``, ``gen_ai.output.messages``) only when
``OTEL_CAPTURE_CONTENT=true``.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = [
    "DEFAULT_MAX_CHARS",
    "SLOT_SCHEMA",
    "ChatResult",
    "ProviderLLM",
    "ProviderReplyWriter",
    "ReplyWriter",
    "SlotFiller",
    "TemplateReplyWriter",
    "system_prompt",
    "user_prompt",
]

DEFAULT_MAX_CHARS = 320
"""Longest reply accepted from a model (two SMS segments); longer ones fall back."""

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer("ghl_real_estate_ai.integrations.llm")
_DOLLARS = re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?\s*[kKmM]?")


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _choice(*values: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "enum": [*values, None]}


_SLOT_PROPERTIES: dict[str, Any] = {
    "intent": {
        "type": "string",
        "enum": [
            "buy",
            "sell",
            "both",
            "value_question",
            "rent",
            "browsing",
            "has_agent",
            "wrong_number",
            "not_interested",
            "unclear",
        ],
    },
    "budget": _nullable("integer", description="dollars the contact means to spend buying"),
    "price_expectation": _nullable("integer", description="dollars the contact hopes to get selling"),
    "financing": _choice("cash", "va", "fha", "conventional", "usda", "preapproved"),
    "preapproved": _nullable("boolean"),
    "bedrooms": _nullable("integer"),
    "areas": {"type": "array", "items": {"type": "string"}, "description": "US cities named"},
    "timeline_days": _nullable("integer", description="days until they want to move"),
    "motivation": _choice(
        "relocation",
        "job",
        "downsizing",
        "upsizing",
        "divorce",
        "inheritance",
        "financial",
        "retirement",
        "first_home",
        "investment",
    ),
    "condition": _choice("excellent", "good", "fair", "needs_work"),
    "property_type": _choice("single_family", "condo", "townhouse", "multi_unit", "land", "mobile"),
    "buyer_for": _nullable("string", description="who the home is for when not the contact"),
    "must_sell_first": {"type": "boolean"},
    "agent_status": _choice("has_agent", "no_agent"),
    "filled_now": {
        "type": "array",
        "items": {"type": "string"},
        "description": "names of the fields above that the LATEST message gave",
    },
}

SLOT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": _SLOT_PROPERTIES,
    "required": list(_SLOT_PROPERTIES),
    "additionalProperties": False,
}
"""The structured output a model fills: the dialogue slots, the intent, and what the latest message gave."""

_SLOT_SYSTEM = (
    "You read an SMS conversation between a real-estate assistant and a lead (English, Spanish or "
    "Spanglish, texting style) and record what the lead said. Fill every field of the schema; use null "
    "(or an empty list, or false) for anything the lead did not say. Amounts are whole dollars "
    "('450k' is 450000). Never guess."
)


@runtime_checkable
class ReplyWriter(Protocol):
    """Writes the text a bot sends."""

    async def write(self, purpose: str, context: dict[str, Any], fallback: str) -> str:
        """The reply to send.

        Args:
            purpose: what the reply is for, e.g. ``seller_q_timeline`` (a template name).
            context: facts the reply may use (temperature, area, estimate, slots...).
            fallback: the bot's draft, sent when no better reply is available.

        Returns:
            The text; never raises for provider trouble.
        """
        ...


@runtime_checkable
class SlotFiller(Protocol):
    """Fills the dialogue slots from a conversation (LLM mode)."""

    async def fill_slots(self, conversation: Sequence[tuple[str, str]]) -> dict[str, Any] | None:
        """The slots, or None when the model could not give them (the caller keeps its own reading).

        Args:
            conversation: ``(direction, text)`` pairs, oldest first, the latest inbound last.
        """
        ...


class TemplateReplyWriter:
    """The default writer: the template text, unchanged."""

    async def write(self, purpose: str, context: dict[str, Any], fallback: str) -> str:
        """Return ``fallback``.

        Args:
            purpose: unused.
            context: unused.
            fallback: the template text.

        Returns:
            ``fallback``.
        """
        return fallback


def system_prompt(max_chars: int) -> str:
    """The instructions for writing a reply.

    Args:
        max_chars: the longest acceptable reply.

    Returns:
        The system prompt.
    """
    return (
        "You write text messages for a friendly real-estate agent's assistant talking with a lead. "
        "Rewrite the draft so it sounds natural and warm, keeping its meaning, its question and every "
        "fact, number, date and time exactly as given; the slots say what the lead already told us, so "
        "never ask for those again. Do not add prices, facts, promises or links "
        f"that are not in the draft or the context. At most {max_chars} characters, no emoji, no "
        "quotation marks around the text. Answer with the message text only."
    )


def user_prompt(purpose: str, context: dict[str, Any], fallback: str) -> str:
    """The request for one reply: purpose, context and draft as JSON.

    Args:
        purpose: what the reply is for.
        context: facts it may use.
        fallback: the draft.

    Returns:
        The user message.
    """
    return json.dumps({"purpose": purpose, "context": context, "draft": fallback}, default=str)


@dataclass(slots=True)
class ChatResult:
    """One model answer, as the provider's SDK returned it."""

    text: str = ""
    data: dict[str, Any] | None = None
    """The structured output, when a schema was asked for."""
    response_model: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reasons: list[str] = field(default_factory=list)


class ProviderLLM(abc.ABC):
    """Shared logic of the model-backed writers and slot fillers; subclasses implement :meth:`_chat`."""

    provider = "unknown"
    """``gen_ai.provider.name``."""

    def __init__(
        self,
        model: str,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        capture_content: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Set the model, the longest reply accepted and whether spans may carry text.

        Args:
            model: the provider's model name.
            max_chars: longer answers fall back to the draft.
            capture_content: put the prompts and completions on the spans (OTEL_CAPTURE_CONTENT).
            timeout: seconds one call may take, retries included, before the fallback.
        """
        self.model = model
        self.max_chars = max_chars
        self.capture_content = capture_content
        self.timeout = timeout

    @abc.abstractmethod
    async def _chat(self, system: str, user: str, schema: Mapping[str, Any] | None) -> ChatResult:
        """One call to the model (may raise anything the SDK raises)."""

    @asynccontextmanager
    async def _span(self, purpose: str, system: str, user: str) -> AsyncIterator[Span]:
        """The GenAI ``CLIENT`` span of one model call (``chat <model>``)."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": self.provider,
            "gen_ai.request.model": self.model,
            "llm.purpose": purpose,
        }
        if self.capture_content:
            attributes["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": system}])
            attributes["gen_ai.input.messages"] = json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": user}]}]
            )
        with _tracer.start_as_current_span(
            f"chat {self.model}", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            yield span

    def _record(self, span: Span, result: ChatResult) -> None:
        if result.response_model:
            span.set_attribute("gen_ai.response.model", result.response_model)
        if result.response_id:
            span.set_attribute("gen_ai.response.id", result.response_id)
        if result.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", result.input_tokens)
        if result.output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", result.output_tokens)
        if result.finish_reasons:
            span.set_attribute("gen_ai.response.finish_reasons", result.finish_reasons)
        if self.capture_content:
            output = json.dumps(result.data) if result.data is not None else result.text
            span.set_attribute(
                "gen_ai.output.messages",
                json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": output}]}]),
            )

    async def _call(
        self, span: Span, system: str, user: str, schema: Mapping[str, Any] | None
    ) -> tuple[ChatResult | None, str | None]:
        """Run one call inside its span: ``(result, None)`` or ``(None, reason)``."""
        try:
            result = await asyncio.wait_for(self._chat(system, user, schema), self.timeout)
        except TimeoutError:
            reason = "timeout"
        except Exception as exc:  # any provider failure: the bot goes on without the model
            reason = f"error:{type(exc).__name__}"
        else:
            self._record(span, result)
            return result, None
        span.set_attribute("error.type", reason.removeprefix("error:"))
        span.set_status(Status(StatusCode.ERROR, reason))
        return None, reason

    def _fallback(self, span: Span, purpose: str, reason: str) -> None:
        span.set_attribute("llm.outcome", f"fallback:{reason}")
        logger.warning(
            "LLM call fell back to the pipeline (provider=%s model=%s purpose=%s reason=%s)",
            self.provider,
            self.model,
            purpose,
            reason,
        )

    async def write(self, purpose: str, context: dict[str, Any], fallback: str) -> str:
        """Ask the model to write the reply from the draft and the context; on any trouble, the draft.

        Args:
            purpose: what the reply is for (a template name).
            context: facts the reply may use (the dialogue slots among them).
            fallback: the bot's draft.

        Returns:
            The model's text when it is usable, else ``fallback``.
        """
        system, user = system_prompt(self.max_chars), user_prompt(purpose, context, fallback)
        async with self._span(purpose, system, user) as span:
            result, reason = await self._call(span, system, user, None)
            text = ""
            if result is not None:
                text = result.text.strip().strip('"').strip()
                reason = self._problem(text, fallback)
            if reason is not None:
                self._fallback(span, purpose, reason)
                return fallback
            span.set_attribute("llm.outcome", "generated")
            span.set_attribute("llm.reply_chars", len(text))
            return text

    async def fill_slots(self, conversation: Sequence[tuple[str, str]]) -> dict[str, Any] | None:
        """Ask the model for the dialogue slots (:data:`SLOT_SCHEMA`); None on any trouble.

        Args:
            conversation: ``(direction, text)`` pairs, oldest first.

        Returns:
            The slots, checked against the schema's types, or None.
        """
        lines = [f"{'lead' if d == 'inbound' else 'assistant'}: {t}" for d, t in conversation]
        user = "Conversation (the latest lead message is last):\n" + "\n".join(lines)
        async with self._span("fill_slots", _SLOT_SYSTEM, user) as span:
            result, reason = await self._call(span, _SLOT_SYSTEM, user, SLOT_SCHEMA)
            slots = None
            if result is not None:
                slots = _checked(result.data)
                reason = None if slots is not None else "schema_mismatch"
            if reason is not None:
                self._fallback(span, "fill_slots", reason)
                return None
            span.set_attribute("llm.outcome", "filled")
            return slots

    def _problem(self, text: str, fallback: str) -> str | None:
        if not text:
            return "empty"
        if len(text) > self.max_chars:
            return "too_long"
        allowed = {_digits(m) for m in _DOLLARS.findall(fallback)}
        if any(_digits(m) not in allowed for m in _DOLLARS.findall(text)):
            return "invented_price"
        return None


ProviderReplyWriter = ProviderLLM
"""The earlier name of :class:`ProviderLLM` (it wrote replies only)."""

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "string": (str,),
    "boolean": (bool,),
    "array": (list,),
    "null": (type(None),),
}


def _checked(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """``data`` when every schema field is there with a value of its type (and enum), else None."""
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {}
    for name, spec in _SLOT_PROPERTIES.items():
        if name not in data:
            return None
        value = data[name]
        kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        allowed = tuple(t for k in kinds for t in _JSON_TYPES[k])
        if not isinstance(value, allowed) or (isinstance(value, bool) and "boolean" not in kinds):
            return None
        if "enum" in spec and value not in spec["enum"]:
            return None
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            return None
        out[name] = value
    out["filled_now"] = [n for n in out["filled_now"] if n in _SLOT_PROPERTIES and n != "filled_now"]
    return out


def _digits(money: str) -> str:
    return re.sub(r"[^\dkKmM.]", "", money).lower()
