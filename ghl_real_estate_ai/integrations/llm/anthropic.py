"""Replies and dialogue slots from an Anthropic model through the official ``anthropic`` SDK.

::

    writer = AnthropicReplyWriter(api_key=settings.llm_api_key, model="claude-...")
    text = await writer.write("seller_q_timeline", {"temperature": "warm"}, fallback=template_text)

Tests inject ``http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(...))``
(the SDK is built on ``httpx2``, the successor of ``httpx``). The slots come
from a forced tool call whose input schema is :data:`~.base.SLOT_SCHEMA`. The
SDK's own tracing is off: our ``chat <model>`` span carries the GenAI
attributes it lacks (input tokens, finish reasons) and no text unless
``OTEL_CAPTURE_CONTENT=true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
from anthropic import AsyncAnthropic

from ghl_real_estate_ai.integrations.llm.base import DEFAULT_MAX_CHARS, ChatResult, ProviderLLM

__all__ = ["AnthropicReplyWriter"]


class AnthropicReplyWriter(ProviderLLM):
    """A reply writer and slot filler backed by Anthropic's Messages API."""

    provider = "anthropic"

    def __init__(
        self,
        api_key: str,
        model: str,
        http_client: httpx2.AsyncClient | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 1,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_tokens: int = 300,
        capture_content: bool = False,
    ) -> None:
        """Build the client.

        Args:
            api_key: the Anthropic API key.
            model: the model name.
            http_client: an ``httpx2.AsyncClient`` to send requests through (tests
                give one with a mock transport).
            base_url: another API base (a gateway); ``None`` for Anthropic's.
            timeout: seconds for one request.
            max_retries: SDK retries of a failed request before falling back.
            max_chars: longer answers fall back to the template.
            max_tokens: the model's output limit.
            capture_content: put prompts and completions on the spans.
        """
        super().__init__(model, max_chars=max_chars, capture_content=capture_content, timeout=timeout)
        self.max_tokens = max_tokens
        self._client = AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout,
            max_retries=max_retries,
            # Given explicitly (no environment variable switches it on): our span is the call's span.
            open_telemetry=False,
        )

    async def _chat(self, system: str, user: str, schema: Mapping[str, Any] | None) -> ChatResult:
        messages: Any = [{"role": "user", "content": user}]
        if schema is None:
            message = await self._client.messages.create(
                model=self.model, max_tokens=self.max_tokens, system=system, messages=messages
            )
        else:
            tool: Any = {
                "name": "record_slots",
                "description": "Record the lead's slots.",
                "input_schema": schema,
            }
            message = await self._client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=system,
                messages=messages,
                tools=[tool],
                tool_choice={"type": "tool", "name": "record_slots"},
            )
        data = next((dict(b.input) for b in message.content if b.type == "tool_use"), None)
        usage = message.usage
        return ChatResult(
            text="".join(getattr(block, "text", "") for block in message.content if block.type == "text"),
            data=data,
            response_model=message.model,
            response_id=message.id,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            finish_reasons=[str(message.stop_reason)] if message.stop_reason else [],
        )
