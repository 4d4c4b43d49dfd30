"""The compiled graphs: the guide's nodes, every node traced, and docs/bots.md drawing them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conversation_kit import Harness

from ghl_real_estate_ai.bots.runner import conversation_state
from ghl_real_estate_ai.bots.state import BotTurn, BuyerState, LeadState, SellerState
from ghl_real_estate_ai.conversation import Bots
from ghl_real_estate_ai.storage.base import Contact

DOC = Path(__file__).resolve().parents[2] / "docs" / "bots.md"

GUIDE_NODES = {
    "lead": {
        "analyze_intent",
        "determine_path",
        "generate_cma",
        "send_day_3_sms",
        "initiate_day_7_call",
        "send_day_14_email",
        "send_day_30_nudge",
    },
    "buyer": {"analyze_buyer_intent", "qualify_buyer", "generate_buyer_response", "schedule_showing"},
    "seller": {
        "analyze_seller_intent",
        "qualify_seller",
        "generate_seller_response",
        "schedule_cma_appointment",
    },
}


@pytest.fixture
async def bots(tmp_path: Path) -> AsyncIterator[Bots]:
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}") as h:
        yield h.service.bots


def _graph(bots: Bots, name: str) -> object:
    return {"lead": bots.lead, "buyer": bots.buyer, "seller": bots.seller}[name].graph


def _nodes(bots: Bots, name: str) -> set[str]:
    drawn = _graph(bots, name).get_graph()  # type: ignore[attr-defined]
    return {n for n in drawn.nodes if not n.startswith("__")}


@pytest.mark.parametrize("name", ["lead", "buyer", "seller"])
async def test_every_node_the_guide_lists_is_in_the_graph(bots: Bots, name: str) -> None:
    nodes = _nodes(bots, name)
    assert GUIDE_NODES[name] <= nodes
    extra = nodes - GUIDE_NODES[name]
    assert extra == ({"ask_qualifying_question"} if name == "lead" else set())


@pytest.mark.parametrize("name", ["lead", "buyer", "seller"])
async def test_every_node_is_a_traced_method_of_the_bot(bots: Bots, name: str) -> None:
    """Each node is a ``trace_workflow_node``-decorated method (the decorator leaves __wrapped__)."""
    bot = {"lead": bots.lead, "buyer": bots.buyer, "seller": bots.seller}[name]
    for node in _nodes(bots, name):
        method = getattr(type(bot), node)
        assert hasattr(method, "__wrapped__"), f"{name}.{node} is not decorated"


def _doc_blocks() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title = section.splitlines()[0].strip()
        found = re.search(r"```mermaid\n(.*?)\n```", section, flags=re.DOTALL)
        if found and title.endswith(" bot"):
            blocks[title.split()[0].lower()] = found.group(1)
    return blocks


@pytest.mark.parametrize("name", ["lead", "buyer", "seller"])
async def test_docs_draw_the_compiled_graph(bots: Bots, name: str) -> None:
    drawn = _graph(bots, name).get_graph().draw_mermaid().rstrip("\n")  # type: ignore[attr-defined]
    documented = _doc_blocks().get(name)
    assert documented == drawn, (
        f"docs/bots.md's {name} diagram is stale; replace its mermaid block with:\n{drawn}"
    )


class _CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted.append(getattr(fn, "__qualname__", repr(fn)))
        return super().submit(fn, *args, **kwargs)


async def test_the_graphs_route_on_the_event_loop_not_in_a_worker_thread(tmp_path: Path) -> None:
    """LangGraph runs a plain (sync) routing function in the loop's executor: every edge is a coroutine."""
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}") as h:
        executor = _CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        await h.say("to-buyer", "We're looking to buy. Pre-approved for $550k, 3 bedrooms in Ontario")
        await h.say("to-seller", "Thinking about selling our condo in Upland, hoping to get $480k")
        await h.say("lead", "hi who is this?")
        contacts = [await h.contact(c) for c in ("to-buyer", "to-seller", "lead")]
    assert [c.current_bot for c in contacts] == ["buyer", "seller", "lead"]
    assert executor.submitted == []


@dataclass
class _Turn:
    direction: str
    body: str
    created_at: datetime = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("lead", "We're looking to buy. Pre-approved for $550k and we need 3 bedrooms in Ontario"),
        ("lead", "what is my house worth? it's a 3 bed 1500 sqft in upland"),
        ("buyer", "3 bedrooms in Ontario, budget 550k, can we see some homes this weekend?"),
        ("seller", "Selling our condo in Upland, good condition, hoping to get $480k. Can we meet?"),
    ],
)
async def test_run_graph_ends_in_the_state_the_whole_state_stream_ends_in(
    bots: Bots, name: str, text: str
) -> None:
    """Each node's update applied over the input is the graph's own final state."""
    bot = {"lead": bots.lead, "buyer": bots.buyer, "seller": bots.seller}[name]
    schema = {"lead": LeadState, "buyer": BuyerState, "seller": SellerState}[name]
    turn = BotTurn(Contact(contact_id=f"c-{name}"), [_Turn("inbound", text)], event_key=f"evt-{name}")
    state = conversation_state(schema, turn, name, "new")  # type: ignore[type-var]
    streamed = await bot.graph.run(state)
    assert streamed == await bot.graph.ainvoke(state)
    assert streamed["replies"] or streamed.get("handoff")
