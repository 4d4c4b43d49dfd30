"""Attribute keys and metric names of the trace contract (DESIGN section 4), one place.

Span attributes are what you filter on in Jaeger (``workflow.contact_id=...``);
metric names are what dashboards and alert rules query. Import the constants
instead of spelling the strings, so a renamed key breaks loudly::

    from ghl_real_estate_ai.observability import attributes as attr

    span.set_attribute(attr.WORKFLOW_TEMPERATURE, "hot")
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "HANDOFF_CONFIDENCE",
    "HANDOFF_CONTACT_ID",
    "HANDOFF_OUTCOME",
    "HANDOFF_REASON",
    "HANDOFF_SOURCE_BOT",
    "HANDOFF_TARGET_BOT",
    "JOURNEY_FINAL_BOT",
    "JOURNEY_HANDOFF_ROUTE",
    "JOURNEY_KEYS",
    "JOURNEY_OUTCOME",
    "JOURNEY_TEMPERATURE",
    "METRIC_HANDOFF_COUNT",
    "METRIC_HANDOFF_DURATION",
    "METRIC_NODE_DURATION",
    "METRIC_TRACES",
    "METRIC_WEBHOOKS",
    "METRIC_WORKFLOW_ERRORS",
    "OUTCOME_EXECUTED",
    "SESSION_ATTRIBUTES",
    "SESSION_CONVERSATION_ID",
    "SESSION_ID",
    "SESSION_USER_ID",
    "STATE_CONTACT_KEYS",
    "WORKFLOW_BOT_TYPE",
    "WORKFLOW_CONTACT_ID",
    "WORKFLOW_CURRENT_STEP",
    "WORKFLOW_DURATION_MS",
    "WORKFLOW_NODE_NAME",
    "WORKFLOW_SUCCESS",
    "WORKFLOW_TEMPERATURE",
]

# --- node spans --------------------------------------------------------------
WORKFLOW_BOT_TYPE: Final = "workflow.bot_type"
"""Which bot ran the node: ``lead_bot``, ``buyer_bot``, ``seller_bot``..."""

WORKFLOW_NODE_NAME: Final = "workflow.node_name"
"""The static node name, e.g. ``analyze_intent`` (the span is named ``<bot>.<node>``)."""

WORKFLOW_CONTACT_ID: Final = "workflow.contact_id"
"""The GHL contact the node worked on, from state ``contact_id``/``lead_id``/``buyer_id``/``seller_id``."""

WORKFLOW_CURRENT_STEP: Final = "workflow.current_step"
"""The sequence step from state ``current_step`` (e.g. ``day_3``), updated from the node's result."""

WORKFLOW_TEMPERATURE: Final = "workflow.temperature"
"""Lead temperature from state ``temperature``: ``hot``, ``warm``, ``lukewarm`` or ``cold``."""

WORKFLOW_SUCCESS: Final = "workflow.success"
"""``True`` when the node returned, ``False`` when it raised or was cancelled."""

WORKFLOW_DURATION_MS: Final = "workflow.duration_ms"
"""Wall time of the node in milliseconds (float, from ``time.perf_counter``)."""

STATE_CONTACT_KEYS: Final = ("contact_id", "lead_id", "buyer_id", "seller_id")
"""State keys searched, in this order, for the value of ``workflow.contact_id``."""

# --- handoff spans -----------------------------------------------------------
HANDOFF_SOURCE_BOT: Final = "handoff.source_bot"
"""The bot handing the contact over: ``lead``, ``buyer`` or ``seller``."""

HANDOFF_TARGET_BOT: Final = "handoff.target_bot"
"""The bot (or ``human``) receiving the contact."""

HANDOFF_CONTACT_ID: Final = "handoff.contact_id"
"""The GHL contact being handed over."""

HANDOFF_CONFIDENCE: Final = "handoff.confidence"
"""The intent confidence (0-1) that triggered the handoff."""

HANDOFF_REASON: Final = "handoff.reason"
"""Why the handoff happened, a short static code such as ``buyer_intent_detected``."""

HANDOFF_OUTCOME: Final = "handoff.outcome"
"""``executed``, ``blocked:<reason>`` (a safeguard refused it) or ``failed:<ExceptionType>``."""

OUTCOME_EXECUTED: Final = "executed"
"""The ``handoff.outcome`` of a handoff block that finished without error or block."""

# --- conversation identity, on every span of a conversation (issue 12) -------
SESSION_ID: Final = "session.id"
"""The conversation a span belongs to (OpenInference's key; Phoenix and Langfuse group
sessions by it). One session per lead: the GHL contact id."""

SESSION_USER_ID: Final = "user.id"
"""The person behind the conversation (OpenInference/Langfuse user views): the GHL contact id."""

SESSION_CONVERSATION_ID: Final = "gen_ai.conversation.id"
"""The same session id under the OpenTelemetry GenAI semantic conventions' key."""

SESSION_ATTRIBUTES: Final = (SESSION_ID, SESSION_USER_ID, SESSION_CONVERSATION_ID)
"""The keys every span of a conversation carries."""

# --- the journey, on the root span of each trace (issue 12) ---------------------
JOURNEY_FINAL_BOT: Final = "journey.final_bot"
"""The bot that ran last in the trace (``buyer_bot`` after a lead-to-buyer handoff)."""

JOURNEY_HANDOFF_ROUTE: Final = "journey.handoff_route"
"""The handoff executed in the trace (``lead_to_buyer``, ``seller_to_human``), or ``none``."""

JOURNEY_OUTCOME: Final = "journey.outcome"
"""What the trace did for the lead: ``answered``, ``handed_off``, ``escalated``,
``blocked:<reason>``, ``opted_out``, ``opted_in``, ``failed``, or a follow-up's outcome."""

JOURNEY_TEMPERATURE: Final = "journey.temperature"
"""The lead's temperature at the end of the trace (the last ``workflow.temperature`` seen)."""

JOURNEY_KEYS: Final = (JOURNEY_FINAL_BOT, JOURNEY_HANDOFF_ROUTE, JOURNEY_OUTCOME, JOURNEY_TEMPERATURE)
"""The journey attributes, in display order."""

# --- metrics -----------------------------------------------------------------
METRIC_NODE_DURATION: Final = "jorge.workflow.node.duration"
"""Histogram, ms, of every node call; attributes ``bot_type``, ``node_name``, ``success``."""

METRIC_WORKFLOW_ERRORS: Final = "jorge.workflow.errors"
"""Counter of node calls that raised; attribute ``bot_type``."""

METRIC_HANDOFF_COUNT: Final = "jorge.handoff.count"
"""Counter of handoff blocks; attributes ``route`` (``lead_to_buyer``) and ``outcome``."""

METRIC_HANDOFF_DURATION: Final = "jorge.handoff.duration"
"""Histogram, ms, of handoff blocks; attribute ``route``."""

METRIC_TRACES: Final = "jorge.traces"
"""Counter of webhook traces that ran a bot; attributes ``bot_type`` (the first bot) and ``error``."""

METRIC_WEBHOOKS: Final = "jorge.webhook.requests"
"""Counter of webhook requests; attributes ``outcome`` and ``status_code``."""
