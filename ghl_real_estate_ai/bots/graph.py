"""A bot's LangGraph graph, declared once, drawn by LangGraph and walked step by step.

Each bot declares its nodes and edges on a :class:`BotGraph`. The declaration builds
the LangGraph ``StateGraph`` (compiled once per bot: the diagrams in docs/bots.md,
and ``ainvoke`` for anyone who wants LangGraph's own runtime) and is kept as a plan
that :meth:`CompiledBotGraph.run` walks: start at the node after ``START``, await it,
apply its update, follow its edge or ask its routing function, until ``END``.

Why a walk: the bots' graphs are small acyclic pipelines, one way out of each node,
plain last-value state, no checkpoints, interrupts, retries or parallel branches.
LangGraph's runtime spends a callback manager, a channel per state key, a task per
node and a superstep loop on every run: about a quarter of an untraced webhook's CPU
(issue 14). The walk takes the same steps in the caller's task, with LangGraph's
rules for what a node sees and writes:

* a node gets its own shallow copy of the state (changing it changes nothing);
* a node returns an update (or None); keys outside the state's schema are dropped,
  as LangGraph drops them, and every other key keeps the last value written;
* a routing function sees the state after its node's update.

``tests/bots/test_graphs.py`` runs the shipped conversations both ways and checks
both end in the same state.

Usage::

    graph = BotGraph(BuyerState)
    graph.add_node("analyze_buyer_intent", self.analyze_buyer_intent)
    graph.add_edge(START, "analyze_buyer_intent")
    graph.add_conditional_edges("analyze_buyer_intent", route, {"handoff": END, "qualify": ...})
    compiled = graph.compile()
    final = await compiled.run(state)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

__all__ = ["BotGraph", "CompiledBotGraph", "Node", "Route"]

S = TypeVar("S")

Node = Callable[[Any], Awaitable[Mapping[str, Any] | None]]
"""A node: the state in, its update out."""

Route = Callable[[Any], Awaitable[str] | str]
"""A conditional edge's routing function: the state in, a key of its ``ends`` out."""


@dataclass(frozen=True, slots=True)
class _Branch:
    route: Route
    ends: Mapping[str, str]


class BotGraph(Generic[S]):
    """The nodes and edges of one bot, recorded for the walk and for LangGraph."""

    def __init__(self, schema: type[S]) -> None:
        """Start an empty graph over the ``TypedDict`` state ``schema``."""
        self._schema = schema
        # LangGraph's own typing of nodes and routes is narrower than a bot's coroutine methods.
        self._builder: Any = StateGraph(schema)
        self._nodes: dict[str, Node] = {}
        self._ways: dict[str, str | _Branch] = {}

    def add_node(self, name: str, node: Node) -> None:
        """Add the node ``name``, run by the coroutine function ``node``."""
        if name in self._nodes:
            raise ValueError(f"node {name!r} is declared twice")
        self._builder.add_node(name, node)
        self._nodes[name] = node

    def add_edge(self, source: str, target: str) -> None:
        """After ``source`` (or ``START``) comes ``target`` (or ``END``)."""
        self._set_way(source, target)
        self._builder.add_edge(source, target)

    def add_conditional_edges(self, source: str, route: Route, ends: Mapping[str, str]) -> None:
        """After ``source``, ``route(state)`` answers a key of ``ends``; its value is the next node."""
        self._set_way(source, _Branch(route, dict(ends)))
        self._builder.add_conditional_edges(source, route, dict(ends))

    def _set_way(self, source: str, way: str | _Branch) -> None:
        if source in self._ways:
            raise ValueError(f"{source!r} already has a way out: a bot graph takes one path")
        self._ways[source] = way

    def compile(self) -> CompiledBotGraph:
        """Check the plan (every node reachable and finishing, no cycle) and compile LangGraph's graph.

        Raises:
            ValueError: a node has no way out, a way leads to an unknown node, or the
                graph has a cycle (a walk must end).
        """
        for source, way in self._ways.items():
            for target in way.ends.values() if isinstance(way, _Branch) else (way,):
                if target != END and target not in self._nodes:
                    raise ValueError(f"{source!r} leads to {target!r}, which is not a node")
        for name in self._nodes:
            if name not in self._ways:
                raise ValueError(f"node {name!r} has no way out (add an edge to END)")
        if START not in self._ways:
            raise ValueError("the graph has no entry: add an edge from START")
        self._check_acyclic()
        keys = frozenset(self._schema.__required_keys__ | self._schema.__optional_keys__)  # type: ignore[attr-defined]
        return CompiledBotGraph(self._builder.compile(), dict(self._nodes), dict(self._ways), keys)

    def _check_acyclic(self) -> None:
        done: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                raise ValueError(f"the graph has a cycle: {' -> '.join((*path, name))}")
            if name == END or name in done:
                return
            way = self._ways[name]
            for target in way.ends.values() if isinstance(way, _Branch) else (way,):
                visit(target, (*path, name))
            done.add(name)

        visit(START, ())


class CompiledBotGraph:
    """A compiled bot graph: :meth:`run` walks it; ``get_graph``/``ainvoke`` are LangGraph's own."""

    def __init__(
        self,
        langgraph: CompiledStateGraph[Any, Any, Any, Any],
        nodes: dict[str, Node],
        ways: dict[str, str | _Branch],
        keys: frozenset[str],
    ) -> None:
        self.langgraph = langgraph
        self._nodes = nodes
        self._ways = ways
        self._keys = keys

    def get_graph(self) -> Any:
        """LangGraph's drawable graph (``.draw_mermaid()``)."""
        return self.langgraph.get_graph()

    async def ainvoke(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Run the graph on LangGraph's runtime; its final state."""
        return dict(await self.langgraph.ainvoke(state))

    async def run(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Walk the graph from ``START`` to ``END`` on ``state``; the final state.

        Raises:
            ValueError: a routing function answered a key its edge does not map.
            Whatever a node raises, unchanged.
        """
        current = {k: v for k, v in state.items() if k in self._keys}
        way = self._ways[START]
        while True:
            if isinstance(way, _Branch):
                key = way.route(current)
                if inspect.isawaitable(key):
                    key = await key
                try:
                    name = way.ends[key]
                except (KeyError, TypeError):
                    raise ValueError(
                        f"routing function {getattr(way.route, '__name__', way.route)!r} answered "
                        f"{key!r}; its edge maps {sorted(way.ends)}"
                    ) from None
            else:
                name = way
            if name == END:
                return current
            update = await self._nodes[name](dict(current))
            if update:
                current.update((k, v) for k, v in update.items() if k in self._keys)
            way = self._ways[name]
