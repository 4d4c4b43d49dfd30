"""The reply-writer interface and the shared fallback logic of the LLM providers.

A bot builds its reply from a template first (the *fallback*), then asks a
:class:`ReplyWriter` for the final text. :class:`TemplateReplyWriter` returns
the template as is (the default, no LLM). The providers
(:mod:`.anthropic`, :mod:`.openai`) ask a model to rewrite the draft and fall
back to it, logging a WARNING, whenever the provider fails, times out, answers
nothing, answers too long, or puts a dollar figure in the reply that the draft
does not have. They never raise into the bot.

Each provider call runs in an ``llm.write_reply`` span with the provider, model,
purpose, outcome and reply length: never the text.
"""

from __future__ import annotations

import abc
import json
import logging
import re
from typing import Any, Protocol, runtime_checkable

from opentelemetry import trace

__all__ = [
    "DEFAULT_MAX_CHARS",
    "ProviderReplyWriter",
    "ReplyWriter",
    "TemplateReplyWriter",
    "system_prompt",
    "user_prompt",
]

DEFAULT_MAX_CHARS = 320
"""Longest reply accepted from a model (two SMS segments); longer ones fall back."""

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer("ghl_real_estate_ai.integrations.llm")
_DOLLARS = re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?\s*[kKmM]?")


@runtime_checkable
class ReplyWriter(Protocol):
    """Writes the text a bot sends."""

    async def write(self, purpose: str, context: dict[str, Any], fallback: str) -> str:
        """The reply to send.

        Args:
            purpose: what the reply is for, e.g. ``seller_q_timeline`` (a template name).
            context: facts the reply may use (temperature, area, estimate...).
            fallback: the template text, sent when no better reply is available.

        Returns:
            The text; never raises for provider trouble.
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
    """The instructions every provider gets.

    Args:
        max_chars: the longest acceptable reply.

    Returns:
        The system prompt.
    """
    return (
        "You write text messages for a friendly real-estate agent's assistant talking with a lead. "
        "Rewrite the draft so it sounds natural and warm, keeping its meaning, its question and every "
        "fact, number, date and time exactly as given. Do not add prices, facts, promises or links "
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


class ProviderReplyWriter(abc.ABC):
    """Shared logic of the model-backed writers; subclasses implement :meth:`_complete`."""

    provider = "unknown"

    def __init__(self, model: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        """Set the model and the longest reply accepted.

        Args:
            model: the provider's model name.
            max_chars: longer answers fall back to the template.
        """
        self.model = model
        self.max_chars = max_chars

    @abc.abstractmethod
    async def _complete(self, system: str, user: str) -> str:
        """One call to the model; returns its text (may raise anything the SDK raises)."""

    async def write(self, purpose: str, context: dict[str, Any], fallback: str) -> str:
        """Ask the model to rewrite ``fallback``; on any trouble return ``fallback``.

        Args:
            purpose: what the reply is for (a template name).
            context: facts the reply may use.
            fallback: the template text.

        Returns:
            The model's text when it is usable, else ``fallback``.
        """
        with _tracer.start_as_current_span(
            "llm.write_reply",
            attributes={"llm.provider": self.provider, "llm.model": self.model, "llm.purpose": purpose},
        ) as span:
            reason: str | None = None
            text = ""
            try:
                text = await self._complete(
                    system_prompt(self.max_chars), user_prompt(purpose, context, fallback)
                )
            except Exception as exc:  # any provider failure: the bot still answers with the template
                reason = f"error:{type(exc).__name__}"
            if reason is None:
                text = text.strip().strip('"').strip()
                reason = self._problem(text, fallback)
            if reason is not None:
                span.set_attribute("llm.outcome", f"fallback:{reason}")
                logger.warning(
                    "LLM reply fell back to the template (provider=%s model=%s purpose=%s reason=%s)",
                    self.provider,
                    self.model,
                    purpose,
                    reason,
                )
                return fallback
            span.set_attribute("llm.outcome", "generated")
            span.set_attribute("llm.reply_chars", len(text))
            return text

    def _problem(self, text: str, fallback: str) -> str | None:
        if not text:
            return "empty"
        if len(text) > self.max_chars:
            return "too_long"
        allowed = {_digits(m) for m in _DOLLARS.findall(fallback)}
        if any(_digits(m) not in allowed for m in _DOLLARS.findall(text)):
            return "invented_price"
        return None


def _digits(money: str) -> str:
    return re.sub(r"[^\dkKmM.]", "", money).lower()
