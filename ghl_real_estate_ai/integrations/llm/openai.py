"""Replies and dialogue slots from an OpenAI (or compatible) model through the official ``openai`` SDK.

::

    writer = OpenAIReplyWriter(api_key=settings.llm_api_key, model="gpt-...", base_url=settings.llm_base_url)
    text = await writer.write("buyer_q_budget", {"temperature": "warm"}, fallback=template_text)

``base_url`` points at any OpenAI-compatible server (vLLM, Ollama, a gateway);
those get ``max_tokens``, OpenAI itself ``max_completion_tokens``. Tests inject
``http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(...))`` (the
SDK is built on ``httpx2``). The slots come from a ``json_schema`` response
format (:data:`~.base.SLOT_SCHEMA`, strict).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx2
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from ghl_real_estate_ai.integrations.llm.base import DEFAULT_MAX_CHARS, ChatResult, ProviderLLM

__all__ = ["OpenAIReplyWriter"]


class OpenAIReplyWriter(ProviderLLM):
    """A reply writer and slot filler backed by Chat Completions."""

    provider = "openai"

    def __init__(
        self,
        api_key: str,
        model: str,
        base_url: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 1,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_tokens: int = 300,
        capture_content: bool = False,
    ) -> None:
        """Build the client.

        Args:
            api_key: the API key.
            model: the model name.
            base_url: an OpenAI-compatible server; ``None`` for OpenAI.
            http_client: an ``httpx2.AsyncClient`` to send requests through.
            timeout: seconds for one request.
            max_retries: SDK retries of a failed request before falling back.
            max_chars: longer answers fall back to the template.
            max_tokens: the model's output limit.
            capture_content: put prompts and completions on the spans.
        """
        super().__init__(model, max_chars=max_chars, capture_content=capture_content, timeout=timeout)
        self.max_tokens = max_tokens
        self.compatible = base_url is not None
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def _chat(self, system: str, user: str, schema: Mapping[str, Any] | None) -> ChatResult:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        extra: dict[str, Any] = {}
        if schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "record_slots", "schema": dict(schema), "strict": True},
            }
        if self.compatible:
            extra["max_tokens"] = self.max_tokens
        else:
            extra["max_completion_tokens"] = self.max_tokens
        completion = await self._client.chat.completions.create(model=self.model, messages=messages, **extra)
        text = completion.choices[0].message.content or "" if completion.choices else ""
        data = None
        if schema is not None and text:
            loaded = json.loads(text)
            data = loaded if isinstance(loaded, dict) else None
        usage = completion.usage
        return ChatResult(
            text=text,
            data=data,
            response_model=completion.model,
            response_id=completion.id,
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
            finish_reasons=[str(c.finish_reason) for c in completion.choices if c.finish_reason],
        )
