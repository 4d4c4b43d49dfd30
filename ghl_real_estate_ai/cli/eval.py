"""``jorge eval FILE.json``: play labelled conversations through the real app and grade them.

Each conversation is played as GHL InboundMessage webhooks into the app served
in-process (the same intake, bots, handoffs, outbox and GHL client as in
production, against the built-in GHL sandbox), on a fresh database and trace
store in a temporary folder. The outcomes are read back the way a team would
check them: from the traces (node, handoff and reply spans) and from the GHL
sandbox's call log (the texts and tags GHL received). One verdict per
conversation, then the total; the exit status is 1 when fewer than
``--min-pass`` of them pass.

The file holds ``{"conversations": [...]}``; each conversation::

    {"id": "en-cash-buyer-1", "language": "en",
     "turns": ["hey were looking to buy", "cash, around 450k"],
     "expect": {
        "final_bot": "buyer",                       # lead | buyer | seller
        "handoffs": ["lead->buyer"],                # executed routes, in order
        "temperature": ["warm", "hot"],             # one value or the accepted ones
        "escalated": false,                         # handed to a human
        "silent_after_opt_out": true,               # opted out; nothing sent afterwards
        "closed": "renter",                         # no prospect: renter | has_agent | ...
        "tags": ["Not-Prospect-Renter"],            # tags GHL must have received
        "never_ask": [{"slot": "preapproved", "from_turn": 2}],
        "answers": [{"turn": 2, "topic": "value"}]  # the reply of that turn answers first
     }}

Every conversation is also held to the reply rules, labelled or not: no text
sent twice (opt-out/opt-in confirmations aside), no "Great!" in answer to a
"no", and no question for a slot the lead has already given (the
``dialogue.slots_filled`` and ``reply.asked_slot`` span attributes).

The team's labelled sets ship in ``ghl_real_estate_ai/data/eval/``;
``jorge eval`` with no file plays them all.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from ghl_real_estate_ai.bots.dialogue import is_negative
from ghl_real_estate_ai.errors import JorgeError
from ghl_real_estate_ai.settings import Settings, load_settings

__all__ = [
    "EVAL_SETS_DIR",
    "Conversation",
    "EvalError",
    "Verdict",
    "eval_command",
    "load_conversations",
    "run_eval",
]

EVAL_SETS_DIR = Path(__file__).resolve().parent.parent / "data" / "eval"
"""The team's labelled conversation sets, shipped with the package."""

_EXPECT_KEYS = frozenset(
    {
        "final_bot",
        "handoffs",
        "temperature",
        "escalated",
        "silent_after_opt_out",
        "closed",
        "tags",
        "never_ask",
        "answers",
    }
)
_CONFIRMATION_EVENTS = ("contact_opted_out", "contact_opted_in")


class EvalError(JorgeError):
    """A conversation file is missing, not JSON, or not in the expected shape."""


@dataclass(frozen=True, slots=True)
class Conversation:
    """One labelled conversation: what the lead texts, in order, and what must happen."""

    id: str
    turns: tuple[str, ...]
    expect: Mapping[str, Any]
    language: str = "en"
    source: str = ""


@dataclass(slots=True)
class Verdict:
    """The grade of one conversation: passed when ``problems`` is empty."""

    conversation: Conversation
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No label and no reply rule was broken."""
        return not self.problems


# --- loading ---------------------------------------------------------------------------


def _fail(where: str, what: str) -> EvalError:
    return EvalError(f"{where}: {what}")


def load_conversations(path: Path) -> list[Conversation]:
    """Read and check one conversation file.

    Args:
        path: a JSON file ``{"conversations": [...]}``.

    Returns:
        The conversations, in file order.

    Raises:
        EvalError: the file cannot be read or a conversation is malformed (the
            message names the file, the conversation and the field).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvalError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise EvalError(f"{str(path)!r} is not valid JSON: {exc}") from None
    items = data.get("conversations") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise EvalError(f'{str(path)!r} needs a non-empty "conversations" list')
    out: list[Conversation] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"{path.name} conversation #{index + 1}"
        if not isinstance(item, dict):
            raise _fail(where, "is not an object")
        cid = item.get("id")
        if not isinstance(cid, str) or not cid:
            raise _fail(where, 'needs an "id" string')
        where = f"{path.name} conversation {cid!r}"
        if cid in seen:
            raise _fail(where, "id is used twice")
        seen.add(cid)
        turns = item.get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t for t in turns):
            raise _fail(where, '"turns" must be a non-empty list of texts')
        expect = item.get("expect", {})
        if not isinstance(expect, dict):
            raise _fail(where, '"expect" must be an object')
        unknown = sorted(set(expect) - _EXPECT_KEYS)
        if unknown:
            raise _fail(where, f"unknown label(s) {unknown!r}; use {sorted(_EXPECT_KEYS)}")
        for entry in expect.get("never_ask", []):
            if not (isinstance(entry, dict) and isinstance(entry.get("slot"), str)):
                raise _fail(where, '"never_ask" entries are {"slot": ..., "from_turn": N}')
        for entry in expect.get("answers", []):
            if not (isinstance(entry, dict) and isinstance(entry.get("turn"), int) and entry.get("topic")):
                raise _fail(where, '"answers" entries are {"turn": N, "topic": ...}')
        language = item.get("language", "en")
        out.append(Conversation(cid, tuple(turns), expect, str(language), path.name))
    return out


# --- playing ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Played:
    """What one conversation produced, turn by turn."""

    contact_id: str
    texts: list[list[str]]
    """Texts GHL received for the contact after each turn (from the sandbox call log)."""
    tags: list[str]
    """Tags GHL was asked to add to the contact, in order."""
    traces: list[list[Any]] = field(default_factory=list)
    """The spans of each turn's webhook trace (``SpanRecord``), in turn order."""


def _payload(settings: Settings, contact_id: str, body: str) -> dict[str, Any]:
    message_id = uuid.uuid4().hex
    now = datetime.now(UTC).isoformat()
    return {
        "type": "InboundMessage",
        "locationId": settings.ghl_location_id,
        "contactId": contact_id,
        "conversationId": f"conv-{contact_id}",
        "messageId": message_id,
        "webhookId": f"eval-{message_id}",
        "messageType": "SMS",
        "direction": "inbound",
        "body": body,
        "dateAdded": now,
        "timestamp": now,
    }


def eval_settings(base: Settings, folder: Path) -> Settings:
    """``base`` with a fresh database, the local trace store only and every trace kept.

    Args:
        base: the configuration read from the environment (the LLM provider,
            comps and mortgage rate are kept, so an LLM setup is graded too).
        folder: where the throw-away database and trace store go.

    Returns:
        The settings the eval runs the app with (the GHL sandbox stands in for GHL).
    """
    return base.model_copy(
        update={
            "environment": "development",
            "data_dir": folder,
            "database_url": f"sqlite:///{folder / 'eval.db'}",
            "redis_url": None,
            "ghl_base_url": None,
            "ghl_api_key": None,
            "allow_unsigned_webhooks": True,
            "otel_enabled": True,
            "otel_sdk_disabled": False,
            "otel_exporter_type": "local",
            "otel_traces_sampler": "always_on",
            "otel_traces_sampler_arg": None,
            "trace_store_path": folder / "traces.db",
            "sandbox_failure_rate": 0.0,
            "sandbox_latency_ms": 0.0,
            # Turns are played one after another, each after the previous answer: nothing can
            # arrive out of order, so no message needs to wait for an earlier one.
            "contact_order_window_ms": 0.0,
            "log_level": "WARNING",
        }
    )


async def _calls(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/sandbox/ghl/_calls")
    response.raise_for_status()
    # Only what GHL accepted: a call refused with 429 (the sandbox's rate limit) is retried.
    calls: list[dict[str, Any]] = [c for c in response.json()["calls"] if int(c.get("status") or 0) < 300]
    return calls


async def _play(settings: Settings, conversations: Sequence[Conversation]) -> list[_Played]:
    from ghl_real_estate_ai.app import create_app
    from ghl_real_estate_ai.observability.local_store import LocalTraceReader
    from ghl_real_estate_ai.observability.otel_config import flush_observability

    app = create_app(settings)
    run = uuid.uuid4().hex[:6]
    played: list[_Played] = []
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jorge") as client:
            for index, conversation in enumerate(conversations):
                contact_id = f"eval-{run}-{index}"
                result = _Played(contact_id, [], [])
                for body in conversation.turns:
                    await client.delete("/sandbox/ghl/_calls")
                    response = await client.post(
                        "/api/v1/webhooks/ghl", json=_payload(settings, contact_id, body)
                    )
                    if response.status_code != 200:
                        raise EvalError(
                            f"conversation {conversation.id!r}: the webhook answered "
                            f"{response.status_code}: {response.text[:200]}"
                        )
                    calls = await _calls(client)
                    result.texts.append(
                        [
                            c["body"]["message"]
                            for c in calls
                            if c["path"] == "/conversations/messages"
                            and c["method"] == "POST"
                            and c["body"].get("contactId") == contact_id
                        ]
                    )
                    result.tags.extend(
                        tag
                        for c in calls
                        if c["method"] == "POST" and c["path"] == f"/contacts/{contact_id}/tags"
                        for tag in c["body"].get("tags", [])
                    )
                played.append(result)
        flush_observability()
    reader = LocalTraceReader(settings.resolved_trace_store_path)
    for result in played:
        summaries = reader.find_traces(
            tags={"workflow.contact_id": result.contact_id}, order="time", limit=200
        )
        for summary in sorted(summaries, key=lambda s: s.start):
            result.traces.append(reader.get_trace(summary.trace_id))
    return played


# --- grading ---------------------------------------------------------------------------


def _bot_of(span_name: str) -> str | None:
    prefix, _, node = span_name.partition(".")
    if prefix.endswith("_bot") and node.startswith("process_"):
        return prefix.removesuffix("_bot")
    return None


def _events(spans: Sequence[Any], name: str) -> list[Any]:
    return [e for s in spans for e in s.events if e.name == name]


def _known(asked: str, filled: set[str]) -> bool:
    """Whether the slot a question asks for was given (``side.name`` names from the traces)."""
    names = {n.split(".", 1)[1] for n in filled}
    if asked == "timeline":
        return bool(names & {"target_date", "timeline_days"})
    if asked == "bedrooms_areas":
        return bool({"buy.bedrooms", "buy.areas"} & filled)
    if asked == "preapproved":
        return "buy.preapproved" in filled
    if asked == "property_details":
        return {"sell.sqft", "sell.areas"} <= filled
    return asked in names


def grade(conversation: Conversation, played: _Played) -> Verdict:
    """Check one played conversation against its labels and the reply rules.

    Args:
        conversation: the labelled conversation.
        played: what it produced (traces per turn, texts and tags from the sandbox).

    Returns:
        The verdict, with one line per broken label or rule.
    """
    verdict = Verdict(conversation)
    problems = verdict.problems
    expect = conversation.expect
    if len(played.traces) != len(conversation.turns):
        problems.append(f"{len(conversation.turns)} turns but {len(played.traces)} traces were stored")
    turns = played.traces
    everything = [s for spans in turns for s in spans]

    bots = [b for s in sorted(everything, key=lambda s: s.start_ns) if (b := _bot_of(s.name))]
    handoffs: list[str] = []
    escalated = False
    for span in sorted(everything, key=lambda s: s.start_ns):
        if span.name.startswith("handoff.") and span.attributes.get("handoff.outcome") == "executed":
            source, _, target = span.name.removeprefix("handoff.").partition("_to_")
            if target == "human":
                escalated = True
            else:
                handoffs.append(f"{source}->{target}")
    temperatures = [
        (s.end_ns, str(s.attributes["workflow.temperature"]))
        for s in everything
        if "workflow.temperature" in s.attributes and _bot_of(s.name) is None
    ]
    temperature = max(temperatures)[1] if temperatures else None

    if "final_bot" in expect:
        final = bots[-1] if bots else "lead"
        if final != expect["final_bot"]:
            problems.append(f"final bot {final!r}, expected {expect['final_bot']!r}")
    if "handoffs" in expect and handoffs != list(expect["handoffs"]):
        problems.append(f"handoffs {handoffs}, expected {list(expect['handoffs'])}")
    if "temperature" in expect:
        accepted = expect["temperature"]
        accepted = [accepted] if isinstance(accepted, str) else list(accepted)
        if temperature not in accepted:
            problems.append(f"temperature {temperature!r}, expected {' or '.join(map(repr, accepted))}")
    if "escalated" in expect and escalated != bool(expect["escalated"]):
        problems.append(f"escalated {escalated}, expected {bool(expect['escalated'])}")

    opted_out_at = next((i for i, spans in enumerate(turns) if _events(spans, "contact_opted_out")), None)
    if expect.get("silent_after_opt_out"):
        if opted_out_at is None:
            problems.append("never opted out, expected an opt-out")
        else:
            later = [t for texts in played.texts[opted_out_at + 1 :] for t in texts]
            opted_in = any(_events(spans, "contact_opted_in") for spans in turns[opted_out_at + 1 :])
            if later and not opted_in:
                problems.append(f"{len(later)} text(s) sent after the opt-out at turn {opted_out_at + 1}")
    elif "silent_after_opt_out" in expect and opted_out_at is not None:
        problems.append(f"opted out at turn {opted_out_at + 1}, expected no opt-out")

    closed = [str(e.attributes.get("reason")) for e in _events(everything, "contact_closed")]
    if "closed" in expect:
        wanted = expect["closed"]
        if wanted and wanted not in closed:
            problems.append(f"closed as {closed or 'nothing'}, expected {wanted!r}")
        if not wanted and closed:
            problems.append(f"closed as {closed}, expected it to stay open")
    missing_tags = [t for t in expect.get("tags", []) if t not in played.tags]
    if missing_tags:
        problems.append(f"tags {missing_tags} never sent to GHL (sent: {played.tags})")

    # Per turn: what the replies asked and answered, what the lead had given so far.
    filled: set[str] = set()
    asked_by_turn: list[list[str]] = []
    for n, spans in enumerate(turns, 1):
        for span in spans:
            filled.update(str(v) for v in span.attributes.get("dialogue.slots_filled", ()) or ())
        asked = [str(s.attributes["reply.asked_slot"]) for s in spans if "reply.asked_slot" in s.attributes]
        asked_by_turn.append(asked)
        for slot in asked:
            if _known(slot, filled):
                problems.append(f"turn {n} asks for {slot!r}, already given")
    for rule in expect.get("never_ask", []):
        start = int(rule.get("from_turn", 1))
        for n, asked in enumerate(asked_by_turn, 1):
            if n >= start and rule["slot"] in asked:
                problems.append(f"turn {n} asks for {rule['slot']!r}, which must never be asked")
    for rule in expect.get("answers", []):
        n = int(rule["turn"])
        if not 1 <= n <= len(turns):
            problems.append(f"answers label names turn {n}, the conversation has {len(turns)}")
            continue
        replies = sorted(
            (s for s in turns[n - 1] if "reply.answered" in s.attributes), key=lambda s: s.start_ns
        )
        got = (str(replies[0].attributes["reply.answered"]) if replies else "") or None
        if got != rule["topic"]:
            problems.append(f"turn {n} answers {got!r} first, expected {rule['topic']!r}")

    for n, (body, texts) in enumerate(zip(conversation.turns, played.texts, strict=False), 1):
        if is_negative(body) and any(t.lower().startswith(("great", "awesome", "perfect")) for t in texts):
            problems.append(f"turn {n} answers a no with a cheerful opener: {texts[0][:60]!r}")
    seen: dict[str, int] = {}
    for n, (texts, spans) in enumerate(zip(played.texts, turns, strict=False), 1):
        if any(_events(spans, name) for name in _CONFIRMATION_EVENTS):
            continue
        for text in texts:
            if text in seen:
                problems.append(f"turn {n} repeats the text of turn {seen[text]}: {text[:60]!r}")
            seen.setdefault(text, n)
    return verdict


async def run_eval(settings: Settings, conversations: Sequence[Conversation]) -> list[Verdict]:
    """Play and grade conversations on a throw-away copy of ``settings``.

    Args:
        settings: the configuration (see :func:`eval_settings` for what is replaced).
        conversations: what to play.

    Returns:
        One verdict per conversation, in order.
    """
    with tempfile.TemporaryDirectory(prefix="jorge-eval-") as folder:
        isolated = eval_settings(settings, Path(folder))
        played = await _play(isolated, conversations)
    return [grade(c, p) for c, p in zip(conversations, played, strict=True)]


def eval_command(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Conversation files (JSON); none plays the shipped sets."),
    ] = None,
    min_pass: Annotated[
        float, typer.Option("--min-pass", min=0.0, max=1.0, help="Share that must pass (exit 1 below it).")
    ] = 0.95,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only failures and the total.")] = False,
) -> None:
    """Play labelled conversations through the app and print a verdict for each, then the total."""
    paths = list(files or sorted(EVAL_SETS_DIR.glob("*.json")))
    try:
        if not paths:
            raise EvalError(f"no conversation files given and none shipped in {str(EVAL_SETS_DIR)!r}")
        conversations = [c for path in paths for c in load_conversations(path)]
        ids = [c.id for c in conversations]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise EvalError(f"conversation ids used in more than one file: {twice!r}")
        verdicts = asyncio.run(run_eval(load_settings(), conversations))
    except JorgeError as exc:
        typer.echo(f"jorge: eval failed: {exc}", err=True)
        raise typer.Exit(2) from None
    for verdict in verdicts:
        c = verdict.conversation
        if verdict.passed:
            if not quiet:
                typer.echo(f"PASS  {c.id}  ({c.language}, {len(c.turns)} turn(s))")
        else:
            typer.echo(
                f"FAIL  {c.id}  ({c.language}, {len(c.turns)} turn(s)): " + "; ".join(verdict.problems)
            )
    passed = sum(v.passed for v in verdicts)
    share = passed / len(verdicts)
    multi = sum(len(v.conversation.turns) > 1 for v in verdicts)
    typer.echo(
        f"TOTAL {passed}/{len(verdicts)} passed ({share:.1%}); {multi} multi-turn; "
        f"languages: {', '.join(sorted({v.conversation.language for v in verdicts}))}"
    )
    if share < min_pass:
        raise typer.Exit(1)
