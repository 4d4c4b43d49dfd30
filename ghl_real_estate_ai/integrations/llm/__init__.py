"""Optional LLM providers: they fill the dialogue slots and write the bots' replies.

``LLM_PROVIDER=none`` (default) keeps the deterministic templates;
``anthropic`` or ``openai`` (any OpenAI-compatible server with
``LLM_BASE_URL``) rewrites them through the official SDKs, falling back to the
template on any failure::

    writer = build_reply_writer(settings)
    text = await writer.write("seller_q_price", context, fallback=render("seller_q_price"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ghl_real_estate_ai.errors import ConfigurationError
from ghl_real_estate_ai.integrations.llm.base import (
    ProviderLLM,
    ReplyWriter,
    SlotFiller,
    TemplateReplyWriter,
)

if TYPE_CHECKING:
    from ghl_real_estate_ai.settings import Settings

__all__ = ["ProviderLLM", "ReplyWriter", "SlotFiller", "TemplateReplyWriter", "build_reply_writer"]


def build_reply_writer(settings: Settings) -> ReplyWriter:
    """The reply writer the settings ask for.

    Args:
        settings: reads LLM_PROVIDER, LLM_MODEL, LLM_API_KEY and LLM_BASE_URL.

    Returns:
        :class:`TemplateReplyWriter` for ``none``, else the provider's writer.

    Raises:
        ConfigurationError: a provider is chosen without LLM_MODEL or LLM_API_KEY,
            or its SDK is not installed.
    """
    provider = settings.llm_provider
    if provider == "none":
        return TemplateReplyWriter()
    if not settings.llm_model:
        raise ConfigurationError(f"LLM_PROVIDER={provider!r} needs LLM_MODEL: set it, or LLM_PROVIDER=none")
    if not settings.llm_api_key:
        raise ConfigurationError(f"LLM_PROVIDER={provider!r} needs LLM_API_KEY: set it, or LLM_PROVIDER=none")
    try:
        if provider == "anthropic":
            from ghl_real_estate_ai.integrations.llm.anthropic import AnthropicReplyWriter

            return AnthropicReplyWriter(
                settings.llm_api_key,
                settings.llm_model,
                base_url=settings.llm_base_url,
                capture_content=settings.otel_capture_content,
            )
        from ghl_real_estate_ai.integrations.llm.openai import OpenAIReplyWriter

        return OpenAIReplyWriter(
            settings.llm_api_key,
            settings.llm_model,
            base_url=settings.llm_base_url,
            capture_content=settings.otel_capture_content,
        )
    except ImportError as exc:
        raise ConfigurationError(
            f"LLM_PROVIDER={provider!r} needs the {exc.name!r} package: pip install 'ghl-real-estate-ai[llm]'"
        ) from None
