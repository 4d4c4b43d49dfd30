"""Walking a bot graph (bots/graph.py): LangGraph's rules, on small graphs and every shipped conversation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

import pytest
from conversation_kit import Harness
from langgraph.graph import END, START

from ghl_real_estate_ai.bots.graph import BotGraph
from ghl_real_estate_ai.cli.eval import Conversation, load_conversations
from ghl_real_estate_ai.conversation import ConversationResult
from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
from ghl_real_estate_ai.storage.base import Contact

EVAL = Path(__file__).resolve().parents[2] / "ghl_real_estate_ai" / "data" / "eval"


class _State(TypedDict, total=False):
    seen: list[str]
    count: int
    way: str


def _node(name: str) -> Any:
    async def node(state: dict[str, Any]) -> dict[str, Any]:
        return {"seen": [*state.get("seen", []), name], "count": state.get("count", 0) + 1}

    node.__name__ = name
    return node


async def _route(state: dict[str, Any]) -> str:
    return str(state.get("way", "left"))


def _fork() -> BotGraph[_State]:
    graph = BotGraph(_State)
    for name in ("first", "left", "right"):
        graph.add_node(name, _node(name))
    graph.add_edge(START, "first")
    graph.add_conditional_edges("first", _route, {"left": "left", "right": "right", "stop": END})
    graph.add_edge("left", END)
    graph.add_edge("right", END)
    return graph


@pytest.mark.parametrize("way", ["left", "right", "stop"])
async def test_a_walk_takes_the_routed_path_and_ends_where_langgraph_ends(way: str) -> None:
    compiled = _fork().compile()
    walked = await compiled.run({"way": way})
    assert walked == await compiled.ainvoke({"way": way})
    assert walked["seen"] == (["first"] if way == "stop" else ["first", way])


async def test_a_node_gets_its_own_copy_and_keys_outside_the_schema_are_dropped() -> None:
    async def meddler(state: dict[str, Any]) -> dict[str, Any]:
        state["way"] = "changed in place"
        return {"count": 1, "not_a_key": "dropped"}

    graph = BotGraph(_State)
    graph.add_node("meddler", meddler)
    graph.add_edge(START, "meddler")
    graph.add_edge("meddler", END)
    compiled = graph.compile()
    state = {"way": "kept", "stranger": 1}
    walked = await compiled.run(state)
    assert walked == {"way": "kept", "count": 1}
    assert walked == await compiled.ainvoke(state)
    assert state == {"way": "kept", "stranger": 1}


async def test_a_routing_function_sees_its_nodes_update_and_may_be_plain() -> None:
    async def decide(state: dict[str, Any]) -> dict[str, Any]:
        return {"way": "right"}

    graph = BotGraph(_State)
    graph.add_node("decide", decide)
    graph.add_node("right", _node("right"))
    graph.add_edge(START, "decide")
    graph.add_conditional_edges("decide", lambda s: s["way"], {"right": "right", "left": END})
    graph.add_edge("right", END)
    assert (await graph.compile().run({}))["seen"] == ["right"]


async def test_a_route_answering_an_unmapped_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"answered 'nowhere'; its edge maps \['left', 'right', 'stop'\]"):
        await _fork().compile().run({"way": "nowhere"})


async def test_a_nodes_error_reaches_the_caller_unchanged() -> None:
    async def broken(state: dict[str, Any]) -> dict[str, Any]:
        raise LookupError("the node's own error")

    graph = BotGraph(_State)
    graph.add_node("broken", broken)
    graph.add_edge(START, "broken")
    graph.add_edge("broken", END)
    with pytest.raises(LookupError, match="the node's own error"):
        await graph.compile().run({})


def test_compile_refuses_a_graph_a_walk_could_not_finish() -> None:
    looping = BotGraph(_State)
    looping.add_node("a", _node("a"))
    looping.add_node("b", _node("b"))
    looping.add_edge(START, "a")
    looping.add_edge("a", "b")
    looping.add_conditional_edges("b", _route, {"left": "a", "right": END})
    with pytest.raises(ValueError, match="cycle: __start__ -> a -> b -> a"):
        looping.compile()

    dead_end = BotGraph(_State)
    dead_end.add_node("a", _node("a"))
    dead_end.add_edge(START, "a")
    with pytest.raises(ValueError, match="node 'a' has no way out"):
        dead_end.compile()

    unknown = BotGraph(_State)
    unknown.add_node("a", _node("a"))
    unknown.add_edge(START, "a")
    unknown.add_edge("a", "ghost")
    with pytest.raises(ValueError, match="'a' leads to 'ghost', which is not a node"):
        unknown.compile()

    forked = BotGraph(_State)
    forked.add_node("a", _node("a"))
    forked.add_edge(START, "a")
    with pytest.raises(ValueError, match="'__start__' already has a way out"):
        forked.add_edge(START, "a")


def _shipped() -> list[Conversation]:
    return [c for path in sorted(EVAL.glob("*.json")) for c in load_conversations(path)]


def _untimed(contact: Contact | None) -> Contact | None:
    """The contact without the store's wall-clock stamps (the harness clock is the same in both runs)."""
    return None if contact is None else replace(contact, created_at=None, updated_at=None)


def _outcome(result: ConversationResult) -> ConversationResult:
    return replace(result, contact=_untimed(result.contact))


async def _play(database_url: str, conversations: list[Conversation], *, langgraph: bool) -> list[Any]:
    """Every turn's outcome, texts sent and slots, with the graphs walked or run by LangGraph."""
    seen: list[Any] = []
    async with Harness.open(database_url, check_reply_rules=False, ghl_rate_limit_per_10s=10**9) as h:
        get_sandbox_state(h.sandbox).rate_limit = 10**9  # GHL's limit would only add waits here
        if langgraph:
            for bot in (h.service.bots.lead, h.service.bots.buyer, h.service.bots.seller):
                bot.graph.run = bot.graph.ainvoke  # type: ignore[method-assign]  # the reference runtime
        for conversation in conversations:
            for text in conversation.turns:
                await h.say(conversation.id, text)
            contact = await h.contact(conversation.id)
            for turn in h.transcripts[conversation.id]:
                slots = [replace(s, updated_at=None) for s in turn.slots]
                seen.append((conversation.id, turn.inbound, _outcome(turn.result), turn.texts, slots))
            seen.append(_untimed(contact))
    return seen


async def test_every_shipped_conversation_plays_the_same_walked_and_on_langgraphs_runtime(
    tmp_path: Path,
) -> None:
    conversations = _shipped()
    assert len(conversations) >= 100
    walked = await _play(f"sqlite:///{tmp_path / 'walked.db'}", conversations, langgraph=False)
    reference = await _play(f"sqlite:///{tmp_path / 'langgraph.db'}", conversations, langgraph=True)
    assert len(walked) == len(reference)
    for mine, theirs in zip(walked, reference, strict=True):
        assert mine == theirs
