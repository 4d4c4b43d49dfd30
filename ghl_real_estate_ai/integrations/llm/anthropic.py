"""Replies rewritten by an Anthropic model through the official ``anthropic`` SDK.

::

    writer = AnthropicReplyWriter(api_key=settings.llm_api_key, model="claude-...")
    text = await writer.write("seller_q_timeline", {"temperature": "warm"}, fallback=template_text)

Tests inject ``http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(...))``
(the SDK is built on ``httpx2``, the successor of ``httpx``). The SDK's own
spans are kept to metadata: message text never reaches a span.
"""

from __future__ import annotations

import httpx2
from anthropic import AsyncAnthropic

from ghl_real_estate_ai.integrations.llm.base import DEFAULT_MAX_CHARS, ProviderReplyWriter

__all__ = ["AnthropicReplyWriter"]


class AnthropicReplyWriter(ProviderReplyWriter):
    """A :class:`~ghl_real_estate_ai.integrations.llm.base.ReplyWriter` backed by Anthropic's Messages API."""

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
        """
        super().__init__(model, max_chars=max_chars)
        self.max_tokens = max_tokens
        self._client = AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout,
            max_retries=max_retries,
            # Given explicitly so no environment variable can switch on content capture.
            open_telemetry={"traces": {"enabled": True, "content_mode": "metadata_only"}},
        )

    async def _complete(self, system: str, user: str) -> str:
        message = await self._client.messages.create(
            model=self.model,
            max_tokens=self.max_tokens,
            system=system,
            messages=[{"role": "user", "content": user}],
        )
        return "".join(getattr(block, "text", "") for block in message.content if block.type == "text")
