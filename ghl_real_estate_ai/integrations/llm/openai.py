"""Replies rewritten by an OpenAI (or OpenAI-compatible) model through the official ``openai`` SDK.

::

    writer = OpenAIReplyWriter(api_key=settings.llm_api_key, model="gpt-...", base_url=settings.llm_base_url)
    text = await writer.write("buyer_q_budget", {"temperature": "warm"}, fallback=template_text)

``base_url`` points at any OpenAI-compatible server (vLLM, Ollama, a gateway);
those get ``max_tokens``, OpenAI itself ``max_completion_tokens``. Tests inject
``http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(...))`` (the
SDK is built on ``httpx2``).
"""

from __future__ import annotations

import httpx2
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from ghl_real_estate_ai.integrations.llm.base import DEFAULT_MAX_CHARS, ProviderReplyWriter

__all__ = ["OpenAIReplyWriter"]


class OpenAIReplyWriter(ProviderReplyWriter):
    """A :class:`~ghl_real_estate_ai.integrations.llm.base.ReplyWriter` backed by Chat Completions."""

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
        """
        super().__init__(model, max_chars=max_chars)
        self.max_tokens = max_tokens
        self.compatible = base_url is not None
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def _complete(self, system: str, user: str) -> str:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        if self.compatible:
            completion = await self._client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=self.max_tokens
            )
        else:
            completion = await self._client.chat.completions.create(
                model=self.model, messages=messages, max_completion_tokens=self.max_tokens
            )
        if not completion.choices:
            return ""
        return completion.choices[0].message.content or ""
