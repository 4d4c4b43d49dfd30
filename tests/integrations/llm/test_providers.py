"""LLM reply writers: real SDKs over a fake transport; any provider trouble falls back to the template."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from ghl_real_estate_ai.errors import ConfigurationError
from ghl_real_estate_ai.integrations.llm import ReplyWriter, TemplateReplyWriter, build_reply_writer
from ghl_real_estate_ai.integrations.llm.anthropic import AnthropicReplyWriter
from ghl_real_estate_ai.integrations.llm.openai import OpenAIReplyWriter
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.settings import Settings

FALLBACK = "Do you have a price in mind you'd hope to get for the home?"
CONTEXT = {"temperature": "warm", "area": "Upland", "phone": "909-555-0100"}
Handler = Callable[[httpx2.Request], httpx2.Response]


def anthropic_message(text: str) -> dict[str, Any]:
    """The Messages API response shape."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 120, "output_tokens": 24},
    }


def openai_completion(text: str | None) -> dict[str, Any]:
    """The Chat Completions response shape."""
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1741000000,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 24, "total_tokens": 144},
    }


class Recorder:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))

    def body(self, index: int = 0) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.requests[index].content)
        return data


def anthropic_writer(recorder: Recorder, **kwargs: Any) -> AnthropicReplyWriter:
    return AnthropicReplyWriter(
        "sk-ant-test", "claude-test", http_client=recorder.client(), max_retries=0, **kwargs
    )


def openai_writer(recorder: Recorder, base_url: str | None = None) -> OpenAIReplyWriter:
    return OpenAIReplyWriter(
        "sk-test", "gpt-test", base_url=base_url, http_client=recorder.client(), max_retries=0
    )


def no_text_in_spans(spans: Any, *texts: str) -> bool:
    for span in spans:
        for value in (span.attributes or {}).values():
            if isinstance(value, str) and any(t in value for t in texts):
                return False
    return True


async def test_anthropic_success_returns_the_models_text() -> None:
    reply = "Got it! Do you have a price in mind for the home?"
    recorder = Recorder(lambda request: httpx2.Response(200, json=anthropic_message(reply)))
    with capture_spans() as capture:
        text = await anthropic_writer(recorder).write("seller_q_price", CONTEXT, FALLBACK)
    assert text == reply
    request = recorder.requests[0]
    assert request.url.path == "/v1/messages"
    # SDK versions differ in the auth header (x-api-key, or a bearer token); the key is sent either way.
    assert "sk-ant-test" in (
        request.headers.get("x-api-key", ""),
        request.headers.get("authorization", "")[7:],
    )
    assert "anthropic-version" in request.headers
    body = recorder.body()
    assert body["model"] == "claude-test" and body["max_tokens"] == 300
    assert "At most 320 characters" in body["system"]
    assert json.loads(body["messages"][0]["content"])["draft"] == FALLBACK
    # One GenAI CLIENT span per model call (the SDK's own span is off), and no text on it.
    (span,) = capture.spans()
    assert span.name == "chat claude-test" and span.kind.name == "CLIENT"
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-test",
        "gen_ai.response.model": "claude-test",
        "gen_ai.response.id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 24,
        "gen_ai.response.finish_reasons": ("end_turn",),
        "llm.purpose": "seller_q_price",
        "llm.outcome": "generated",
        "llm.reply_chars": len(reply),
    }
    assert no_text_in_spans(capture.spans(), reply, FALLBACK, "909-555-0100")


def anthropic_error(status: int, kind: str) -> Handler:
    body = {"type": "error", "error": {"type": kind, "message": "provider trouble"}}
    return lambda request: httpx2.Response(status, json=body)


def raises(exc_type: type[httpx2.TimeoutException]) -> Handler:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc_type("timed out", request=request)

    return handler


def anthropic_says(text: str) -> Handler:
    return lambda request: httpx2.Response(200, json=anthropic_message(text))


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (anthropic_error(500, "api_error"), "error:InternalServerError"),
        (anthropic_error(529, "overloaded_error"), "error:"),
        (raises(httpx2.ReadTimeout), "error:APITimeoutError"),
        (anthropic_says("   "), "empty"),
        (anthropic_says("word " * 100), "too_long"),
        (anthropic_says("Homes here sell for $950,000!"), "invented_price"),
    ],
)
async def test_anthropic_trouble_falls_back_with_a_warning(
    handler: Handler, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with capture_spans() as capture, caplog.at_level(logging.WARNING):
        text = await anthropic_writer(Recorder(handler)).write("seller_q_price", CONTEXT, FALLBACK)
    assert text == FALLBACK
    (span,) = capture.by_name("chat claude-test")
    outcome = str((span.attributes or {})["llm.outcome"])
    assert outcome.startswith(f"fallback:{reason}")
    assert any(
        "fell back to the pipeline" in r.getMessage() and "anthropic" in r.getMessage()
        for r in caplog.records
    )
    assert all(FALLBACK not in r.getMessage() for r in caplog.records)


async def test_openai_success_uses_max_completion_tokens() -> None:
    reply = "Thanks! What price would you hope to get for the home?"
    recorder = Recorder(lambda request: httpx2.Response(200, json=openai_completion(reply)))
    with capture_spans() as capture:
        text = await openai_writer(recorder).write("seller_q_price", CONTEXT, FALLBACK)
    assert text == reply
    assert recorder.requests[0].url.path == "/v1/chat/completions"
    assert recorder.requests[0].headers["authorization"] == "Bearer sk-test"
    body = recorder.body()
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert no_text_in_spans(capture.spans(), reply, FALLBACK)


async def test_openai_compatible_server_gets_max_tokens_at_its_base_url() -> None:
    recorder = Recorder(
        lambda request: httpx2.Response(200, json=openai_completion("What price do you have in mind?"))
    )
    writer = openai_writer(recorder, base_url="http://127.0.0.1:8001/v1")
    assert await writer.write("seller_q_price", CONTEXT, FALLBACK) == "What price do you have in mind?"
    assert str(recorder.requests[0].url) == "http://127.0.0.1:8001/v1/chat/completions"
    assert recorder.body()["max_tokens"] == 300


@pytest.mark.parametrize(
    "handler",
    [
        lambda r: httpx2.Response(500, json={"error": {"message": "boom", "type": "server_error"}}),
        raises(httpx2.ConnectTimeout),
        lambda r: httpx2.Response(200, json=openai_completion(None)),
        lambda r: httpx2.Response(200, json={**openai_completion("x"), "choices": []}),
    ],
)
async def test_openai_trouble_falls_back(handler: Handler, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert await openai_writer(Recorder(handler)).write("seller_q_price", CONTEXT, FALLBACK) == FALLBACK
    assert any("provider=openai" in r.getMessage() for r in caplog.records)


async def test_template_writer_returns_the_template() -> None:
    writer = TemplateReplyWriter()
    assert isinstance(writer, ReplyWriter)
    assert await writer.write("seller_q_price", CONTEXT, FALLBACK) == FALLBACK


def test_build_reply_writer_follows_settings() -> None:
    assert isinstance(build_reply_writer(Settings()), TemplateReplyWriter)
    anthropic = build_reply_writer(
        Settings(llm_provider="anthropic", llm_model="claude-test", llm_api_key="k")
    )
    assert isinstance(anthropic, AnthropicReplyWriter) and anthropic.model == "claude-test"
    compatible = build_reply_writer(
        Settings(
            llm_provider="openai", llm_model="llama", llm_api_key="k", llm_base_url="http://127.0.0.1:8001/v1"
        )
    )
    assert isinstance(compatible, OpenAIReplyWriter) and compatible.compatible


def test_build_reply_writer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("LLM_MODEL", "gpt-test")
    monkeypatch.setenv("LLM_API_KEY", "sk-test")
    writer = build_reply_writer(Settings())
    assert isinstance(writer, OpenAIReplyWriter) and not writer.compatible


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"llm_provider": "anthropic", "llm_api_key": "k"}, "needs LLM_MODEL"),
        ({"llm_provider": "openai", "llm_model": "gpt-test"}, "needs LLM_API_KEY"),
    ],
)
def test_build_reply_writer_names_the_missing_setting(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build_reply_writer(Settings(**fields))  # type: ignore[arg-type]
