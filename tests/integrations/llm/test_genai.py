"""LLM mode (issue 10, Build 5; issue 12, point 4): slots through structured output, GenAI spans.

The official SDKs run over their own fake transport (``httpx2.MockTransport``);
the bots run on the real conversation service and its GHL sandbox.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from conversation_kit import Harness

from ghl_real_estate_ai.integrations.llm.anthropic import AnthropicReplyWriter
from ghl_real_estate_ai.integrations.llm.base import SLOT_SCHEMA
from ghl_real_estate_ai.integrations.llm.openai import OpenAIReplyWriter
from ghl_real_estate_ai.observability.testing import SpanCapture, capture_spans

CONVERSATION = [("inbound", "hey we r paying cash, like 450k, for my parents 🙏")]


def slots(**given: Any) -> dict[str, Any]:
    """A complete structured answer: every schema field, nothing said but ``given``."""
    empty: dict[str, Any] = {name: None for name in SLOT_SCHEMA["properties"]}
    empty.update(intent="unclear", areas=[], must_sell_first=False, filled_now=[])
    return {**empty, **given}


CASH_BUYER = slots(
    intent="buy",
    budget=450_000,
    financing="cash",
    buyer_for="parents",
    filled_now=["budget", "financing", "buyer_for"],
)


def anthropic_answer(body: dict[str, Any], data: dict[str, Any], reply: str) -> dict[str, Any]:
    """A Messages API answer: a forced tool call when tools were sent, else text."""
    if "tools" in body:
        content: list[dict[str, Any]] = [
            {"type": "tool_use", "id": "toolu_1", "name": "record_slots", "input": data}
        ]
        stop = "tool_use"
    else:
        content, stop = [{"type": "text", "text": reply}], "end_turn"
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-20250101",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 310, "output_tokens": 42},
    }


class FakeAnthropic:
    """The Messages API behind a mock transport, recording each request body."""

    def __init__(self, data: dict[str, Any] | None = None, reply: str = "", status: int = 200) -> None:
        self.data, self.reply, self.status = data or CASH_BUYER, reply, status
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.status != 200:
            return httpx2.Response(
                self.status, json={"type": "error", "error": {"type": "api_error", "message": "x"}}
            )
        reply = self.reply
        if "tools" not in body and not reply:  # write back the bot's own draft
            reply = json.loads(body["messages"][0]["content"])["draft"]
        return httpx2.Response(200, json=anthropic_answer(body, self.data, reply))

    def writer(self, **kwargs: Any) -> AnthropicReplyWriter:
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(self))
        return AnthropicReplyWriter("sk-ant-test", "claude-test", http_client=client, max_retries=0, **kwargs)


async def test_anthropic_fills_the_slots_through_a_forced_tool_call_in_a_genai_span() -> None:
    fake = FakeAnthropic()
    with capture_spans() as capture:
        got = await fake.writer().fill_slots(CONVERSATION)
    assert got == CASH_BUYER
    body = fake.bodies[0]
    assert body["tool_choice"] == {"type": "tool", "name": "record_slots"}
    assert body["tools"][0]["input_schema"] == SLOT_SCHEMA
    (span,) = capture.spans()
    assert span.name == "chat claude-test" and span.kind.name == "CLIENT"
    attributes = dict(span.attributes or {})
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-test",
        "gen_ai.response.model": "claude-test-20250101",
        "gen_ai.response.id": "msg_1",
        "gen_ai.usage.input_tokens": 310,
        "gen_ai.usage.output_tokens": 42,
        "gen_ai.response.finish_reasons": ("tool_use",),
        "llm.purpose": "fill_slots",
        "llm.outcome": "filled",
    }


async def test_prompt_and_completion_reach_the_span_only_with_capture_content() -> None:
    with capture_spans() as capture:
        await FakeAnthropic().writer(capture_content=True).fill_slots(CONVERSATION)
    (span,) = capture.spans()
    attributes = dict(span.attributes or {})
    assert "paying cash" in str(attributes["gen_ai.input.messages"])
    assert (
        json.loads(json.loads(str(attributes["gen_ai.output.messages"]))[0]["parts"][0]["content"])
        == CASH_BUYER
    )
    assert "record what the lead said" in str(attributes["gen_ai.system_instructions"])


async def test_an_answer_off_the_schema_an_error_or_a_timeout_gives_none_and_an_error_span() -> None:
    off = slots(intent="buy", budget="450k")  # a string where the schema wants an integer
    with capture_spans() as capture:
        assert await FakeAnthropic(data=off).writer().fill_slots(CONVERSATION) is None
        assert await FakeAnthropic(status=500).writer().fill_slots(CONVERSATION) is None

        async def hang(request: httpx2.Request) -> httpx2.Response:
            await asyncio.Event().wait()  # never answers: only the timeout ends it
            raise AssertionError("unreachable")

        client = httpx2.AsyncClient(transport=httpx2.MockTransport(hang))
        slow = AnthropicReplyWriter("k", "claude-test", http_client=client, max_retries=0, timeout=0.05)
        assert await slow.fill_slots(CONVERSATION) is None
    outcomes = [dict(s.attributes or {}).get("llm.outcome") for s in capture.spans()]
    assert outcomes == ["fallback:schema_mismatch", "fallback:error:InternalServerError", "fallback:timeout"]
    assert [s.status.status_code.name for s in capture.spans()] == ["UNSET", "ERROR", "ERROR"]
    assert dict(capture.spans()[2].attributes or {})["error.type"] == "timeout"


async def test_openai_fills_the_slots_through_a_strict_json_schema() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        completion = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1741000000,
            "model": "gpt-test-0613",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": json.dumps(CASH_BUYER), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 200, "completion_tokens": 60, "total_tokens": 260},
        }
        return httpx2.Response(200, json=completion)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    writer = OpenAIReplyWriter("sk-test", "gpt-test", http_client=client, max_retries=0)
    with capture_spans() as capture:
        assert await writer.fill_slots(CONVERSATION) == CASH_BUYER
    response_format = bodies[0]["response_format"]
    assert response_format["type"] == "json_schema" and response_format["json_schema"]["strict"] is True
    (span,) = capture.spans()
    attributes = dict(span.attributes or {})
    assert span.name == "chat gpt-test"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.response.model"] == "gpt-test-0613"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (200, 60)
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)


@pytest.fixture
async def llm_harness(tmp_path: Path) -> AsyncIterator[tuple[Harness, FakeAnthropic]]:
    fake = FakeAnthropic(reply="")
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}", reply_writer=fake.writer()) as h:
        yield h, fake


async def test_in_llm_mode_the_models_slots_drive_the_bot_and_each_call_is_a_span_under_its_node(
    llm_harness: tuple[Harness, FakeAnthropic], span_capture: SpanCapture
) -> None:
    h, fake = llm_harness
    fake.data = slots(
        intent="buy",
        budget=450_000,
        financing="cash",
        buyer_for="parents",
        bedrooms=3,
        areas=["Upland"],
        filled_now=["budget", "financing", "buyer_for", "bedrooms", "areas"],
    )
    # Words the rule pipeline alone cannot read as a buyer: the model's slots carry the turn.
    await h.say("g1", "hey we r paying cash, like 450k, for my parents 🙏 3bd upland")
    slots_now = {(s.side, s.name): s.value for s in await h.store.list_slots("g1")}
    assert slots_now[("buy", "financing")] == "cash" and slots_now[("buy", "budget")] == 450_000
    asked = [o.reply_marks.get("asked") for o in h.transcripts["g1"][-1].result.outcomes if o.replies]
    assert "preapproved" not in asked  # a cash buyer is never asked about a lender
    (text,) = h.transcripts["g1"][-1].texts
    assert "paying cash" in text and "for your parents" in text

    spans = span_capture.spans()
    by_id = {s.context.span_id: s for s in spans}
    chats = [s for s in spans if s.name == "chat claude-test"]
    parents = sorted({by_id[s.parent.span_id].name for s in chats if s.parent is not None})
    assert len(chats) == len(fake.bodies)
    assert "lead_bot.analyze_intent" in parents
    assert any(p.endswith(("generate_buyer_response", "ask_qualifying_question")) for p in parents)
    assert all(s.trace_id == chats[0].context.trace_id for s in (c.context for c in chats))


async def test_a_failing_model_falls_back_to_the_pipeline_within_the_same_request(
    llm_harness: tuple[Harness, FakeAnthropic],
) -> None:
    h, fake = llm_harness
    fake.status = 500
    result = await h.say("g2", "Pre-approved for $500k, looking to buy a 3 bedroom in Upland")
    assert result.action == "answered" and result.handoff_outcome == "executed"
    assert [o.bot for o in result.outcomes] == ["lead", "buyer"]
    (text,) = h.transcripts["g2"][-1].texts
    assert text.startswith("Sounds like you're ready to buy")
    assert len(fake.bodies) >= 3  # the model was asked (slots, then the reply) and failed each time
