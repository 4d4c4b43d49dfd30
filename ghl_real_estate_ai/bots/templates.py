"""Reply templates of the three bots, keyed by name.

Every SMS template renders to at most :data:`SMS_MAX_CHARS` characters with
ordinary values; the day-14 e-mail has a subject and an HTML body, whose values
are HTML-escaped. Values are given as keywords; money is formatted with
``{estimate:,}`` style specs, so pass ints::

    text = render("seller_q_timeline", first_name="Ana")
    text = render("cma_summary", area="Upland", estimate=812000, low=776000, high=851000, comp_count=9)
    subject = render("followup_day_14_email_subject", first_name="Ana")

:func:`render` raises :class:`TemplateError` (never a bare ``KeyError``) for an
unknown name or a missing value, naming both. ``first_name`` may always be left
out (it reads "there").
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from ghl_real_estate_ai.bots.templates_es import TEMPLATES_ES
from ghl_real_estate_ai.errors import JorgeError

__all__ = [
    "SMS_MAX_CHARS",
    "TEMPLATES",
    "Template",
    "TemplateError",
    "phrasings",
    "render",
    "reply_language",
    "replying_in",
    "required_values",
]

SMS_MAX_CHARS = 320
"""Two SMS segments: the longest text any SMS template may render to."""

Channel = Literal["sms", "email_subject", "email_html", "task"]


class TemplateError(JorgeError):
    """A template name is unknown or a value it needs was not given."""


@dataclass(frozen=True)
class Template:
    """One reply template."""

    text: str
    channel: Channel = "sms"


_DEFAULTS: Mapping[str, Any] = {"agent_name": "Jorge"}

# GHL's InboundMessage carries no name, so most replies are written without one. Rather
# than greeting "there" mid-sentence ("ready to buy, there!"), a missing first name is
# taken out of the sentence; these rewrites run in order on the template text.
_WITHOUT_NAME: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bHi \{first_name\}"), "Hi there"),
    (re.compile(r"\bHola \{first_name\}"), "Hola"),
    (re.compile(r"\bGracias \{first_name\},"), "Gracias,"),
    (re.compile(r"\bCall \{first_name\}"), "Call this lead"),
    (re.compile(r"\bThanks \{first_name\},"), "Thanks,"),
    (re.compile(r",? \{first_name\}(?=[.,!?:])"), ""),
    (re.compile(r"^\{first_name\}, (\w)"), "\\1"),
)


_OPTIONAL = frozenset(_DEFAULTS) | {"first_name"}
"""Values a template may be rendered without."""


def _without_name(text: str) -> str:
    for pattern, replacement in _WITHOUT_NAME:
        text = pattern.sub(replacement, text)
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


TEMPLATES: Mapping[str, Template] = {
    # --- lead bot -----------------------------------------------------------
    "lead_greeting": Template(
        "Hi {first_name}, thanks for reaching out! Are you thinking about buying a home, "
        "selling one, or both?"
    ),
    "lead_ask_intent": Template(
        "Happy to help, {first_name}. Are you looking to buy, to sell, or just curious what your "
        "home is worth?"
    ),
    "lead_ask_timeline": Template("When would you ideally like to make a move, {first_name}?"),
    # --- seller qualification: motivation, timeline, condition, price --------
    "seller_q_motivation": Template(
        "Thanks, {first_name}! What's prompting the move: a new job, more or less space, something else?"
    ),
    "seller_q_timeline": Template(
        "Got it. If the price was right, would selling in the next 30 to 45 days work for you?"
    ),
    "seller_q_condition": Template(
        "How would you describe the home's condition: move-in ready, good, a few updates needed, "
        "or needs real work?"
    ),
    "seller_q_price": Template("Do you have a price in mind you'd hope to get for the home?"),
    "seller_qualified": Template(
        "Thanks {first_name}, that gives me a clear picture. The next step is a quick visit so I can "
        "give you an exact number. Want me to find a time?"
    ),
    # --- buyer qualification: budget, pre-approval, bedrooms/areas, timeline --
    "buyer_q_budget": Template("Great, {first_name}! What price range are you comfortable with?"),
    "buyer_q_preapproval": Template(
        "Are you pre-approved with a lender yet? If not, I can connect you with one I trust."
    ),
    "buyer_q_bedrooms_areas": Template("How many bedrooms do you need, and which areas are you considering?"),
    "buyer_q_timeline": Template("When are you hoping to be in your new home?"),
    "buyer_affordability": Template(
        "Based on what you shared, homes up to about ${max_price:,} should fit your budget. "
        "Want me to send a few that match?"
    ),
    "buyer_qualified": Template(
        "You're all set to start touring, {first_name}. Want me to set up a showing?"
    ),
    # --- CMA ------------------------------------------------------------------
    "cma_summary": Template(
        "Based on {comp_count} recent sales near you in {area}, your home is likely worth about "
        "${estimate:,} (range ${low:,} to ${high:,}). Want a walkthrough for an exact number?"
    ),
    "cma_need_details": Template(
        "I can run the numbers for you! What city is the home in, and about how many bedrooms "
        "and square feet?"
    ),
    "cma_unavailable": Template(
        "I don't have enough recent sales in {area} to give a fair number by text. "
        "Can I have an agent prepare one for you?"
    ),
    # --- showings and appointments ---------------------------------------------
    "showing_offer": Template("I can show you homes {slot_1} or {slot_2}. Which works better?"),
    "showing_confirmed": Template("You're booked for a showing {slot}. See you then, {first_name}!"),
    "appointment_offer": Template(
        "I can come by to look at the home {slot_1} or {slot_2}. Which works better for you?"
    ),
    "appointment_confirmed": Template("Perfect, you're booked for {slot}. Talk soon, {first_name}!"),
    "booking_pending": Template(
        "I'm reserving {slot} for you and will text you as soon as it's confirmed, {first_name}."
    ),
    "no_slots": Template(
        "Our calendar is full for the next few days. I'll have {agent_name} reach out to find a time."
    ),
    # --- handoffs ---------------------------------------------------------------
    "handoff_lead_to_buyer": Template(
        "Sounds like you're ready to buy, {first_name}! Let's find the right home."
    ),
    "handoff_lead_to_seller": Template(
        "Sounds like you're thinking of selling, {first_name}. Let's get you the best price."
    ),
    "handoff_buyer_to_seller": Template(
        "Since you'd sell your current home too, let's start there: it shapes your buying budget."
    ),
    "handoff_seller_to_buyer": Template("Great, let's also line up your next home so the move is seamless."),
    # --- opt-out, escalation, objections ------------------------------------------
    "opt_in_confirmation": Template(
        "Welcome back, {first_name}! You'll get texts from us again. Are you thinking about buying, "
        "selling, or both?"
    ),
    "opt_out_confirmation": Template(
        "You're unsubscribed and won't get more texts from us. Reply START anytime to resume."
    ),
    "escalation_notice": Template(
        "Thanks, {first_name}. I'm passing this to {agent_name}, who will reach out to you personally soon."
    ),
    "objection_price_too_high": Template(
        "Totally fair. Prices vary a lot by street; want me to send a few options in a lower range?"
    ),
    "objection_just_looking": Template(
        "No pressure at all! Want me to send new listings that match what you like, so you can browse?"
    ),
    "objection_not_ready": Template("No rush, {first_name}. When do you think the timing might be right?"),
    "objection_has_agent": Template("Glad you're in good hands! If anything changes, I'm here to help."),
    "objection_commission": Template(
        "Good question. Our fee depends on the services you pick; happy to walk you through it "
        "on a quick call."
    ),
    # --- follow-ups (day 3 SMS, day 7 call task, day 14 e-mail, day 30 nudge) ---------
    "followup_day_3": Template(
        "Hi {first_name}, just checking in. Any questions about buying or selling I can help with?"
    ),
    "followup_day_7_call_task": Template(
        "Call {first_name}: no reply for 7 days. Last status: {temperature} lead, {summary}.", "task"
    ),
    "followup_day_14_email_subject": Template("{first_name}, your home market update", "email_subject"),
    "followup_day_14_email_html": Template(
        "<p>Hi {first_name},</p><p>I wanted to share what homes are doing in your area and see if "
        "I can help with your plans.</p><p>Just reply to this e-mail or text me anytime.</p>"
        "<p>{agent_name}</p>",
        "email_html",
    ),
    "followup_day_14_email_html_cma": Template(
        "<p>Hi {first_name},</p><p>Based on {comp_count} recent sales in {area}, homes like yours are "
        "selling for about <strong>${estimate:,}</strong> (range ${low:,} to ${high:,}).</p>"
        "<p>Want an exact number for your home? Just reply to this e-mail.</p><p>{agent_name}</p>",
        "email_html",
    ),
    "followup_day_30": Template(
        "Hi {first_name}, I'll stop checking in for now. Whenever you're ready to buy or sell, just text me."
    ),
    # --- issue 10: second phrasings (a text is never sent twice in one conversation) ----
    "lead_ask_intent_2": Template(
        "Just so I point you the right way: is it buying, selling, or a bit of both?"
    ),
    "lead_ask_timeline_2": Template("Roughly when are you hoping to move: this season, this year, or later?"),
    "buyer_q_budget_2": Template("What's the most you'd want to spend on the new place?"),
    "buyer_q_preapproval_2": Template(
        "Have you talked to a lender about a pre-approval yet? It makes an offer much stronger."
    ),
    "buyer_q_bedrooms_areas_2": Template("What size home and which neighborhoods should I search?"),
    "buyer_q_timeline_2": Template("How soon would you like to move in?"),
    "seller_q_motivation_2": Template("What has you thinking about selling right now?"),
    "seller_q_timeline_2": Template("When would you ideally want the sale done?"),
    "seller_q_condition_2": Template("What shape is the place in: ready to show, or does it need some work?"),
    "seller_q_price_2": Template("What number would you need to walk away happy?"),
    "cma_need_details_2": Template(
        "To price it, I just need the city and roughly how many bedrooms and square feet it has."
    ),
    # --- issue 10: answers to the lead's own question (sent before anything else) ---------
    "answer_process": Template(
        "Here's how it works: we talk through your goals, I map out the steps and line up the "
        "first one, and I stay with you through closing."
    ),
    "answer_fees": Template(
        "Good question. Our fee depends on the services you pick; {agent_name} can walk you "
        "through it on a quick call."
    ),
    "answer_availability": Template("Yes, I can help. I'll check that and get back to you with what's open."),
    "answer_market": Template("In {area}, {comp_count} recent sales had a median price of ${median:,}."),
    "answer_market_unknown": Template(
        "Prices depend a lot on the neighborhood; tell me the area and I'll pull recent sales."
    ),
    "answer_other": Template("Good question; I'll make sure {agent_name} gets you a full answer."),
    # --- issue 10: not a prospect: one polite closing, then silence -------------------------
    "close_renter": Template(
        "Thanks for letting me know! We focus on buying and selling homes, so I'll leave you be. "
        "If you ever want to buy, just text me."
    ),
    "close_has_agent": Template(
        "Glad you're in good hands! I won't keep texting. If anything changes, I'm here."
    ),
    "close_wrong_number": Template("Sorry about that, wrong number on our end. I won't text you again."),
    "close_not_interested": Template(
        "Understood, thanks for letting me know. I won't follow up; text me anytime if that changes."
    ),
    "handoff_seller_to_buyer_after_listing": Template(
        "With the listing visit booked, let's line up your next home too."
    ),
}
"""Every template, by name."""

_FORMATTER = string.Formatter()

_LANGUAGE: ContextVar[str] = ContextVar("reply_language", default="en")


@contextmanager
def replying_in(language: str | None) -> Iterator[None]:
    """Render every template in ``language`` ("en" or "es"; anything else is English) inside the block.

    The bots set it around a contact's turn from the language the contact writes in,
    so each ``render`` call below needs no language of its own.
    """
    token = _LANGUAGE.set(language if language == "es" else "en")
    try:
        yield
    finally:
        _LANGUAGE.reset(token)


def reply_language() -> str:
    """The language templates render in here: "en" unless inside :func:`replying_in`."""
    return _LANGUAGE.get()


def phrasings(name: str, **values: Any) -> list[str]:
    """Template ``name`` and its second phrasing (``<name>_2``) when there is one, rendered.

    Args:
        name: a key of :data:`TEMPLATES`.
        **values: as for :func:`render`.

    Returns:
        The texts, the preferred one first.
    """
    texts = [render(name, **values)]
    if f"{name}_2" in TEMPLATES:
        texts.append(render(f"{name}_2", **values))
    return texts


def required_values(name: str) -> tuple[str, ...]:
    """The value names template ``name`` needs (defaults excluded).

    Args:
        name: a key of :data:`TEMPLATES`.

    Returns:
        The names, in order of first use.

    Raises:
        TemplateError: ``name`` is unknown.
    """
    template = _lookup(name)
    fields: list[str] = []
    for _, field_name, _, _ in _FORMATTER.parse(template.text):
        if field_name and field_name not in fields and field_name not in _OPTIONAL:
            fields.append(field_name)
    return tuple(fields)


def _lookup(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        close = sorted(n for n in TEMPLATES if n.split("_")[0] == name.split("_")[0])
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise TemplateError(f"unknown reply template {name!r}{hint}") from None


def render(name: str, **values: Any) -> str:
    """Render template ``name`` with ``values``.

    Args:
        name: a key of :data:`TEMPLATES`.
        **values: the values it names; extra ones are ignored. ``agent_name``
            defaults to "Jorge"; without ``first_name`` (or with a blank one) the
            sentence is written without a name. Blank strings count as missing.

    Returns:
        The text (HTML for ``email_html`` templates, with values escaped), in the
        language of :func:`replying_in` when the template has a text in it.

    Raises:
        TemplateError: unknown name, a missing value, or a value of the wrong
            type for its format (e.g. text where dollars are expected).
    """
    template = _lookup(name)
    merged: dict[str, Any] = dict(_DEFAULTS)
    merged.update({k: v for k, v in values.items() if v is not None and not (k in _OPTIONAL and v == "")})
    source = TEMPLATES_ES.get(name, template.text) if _LANGUAGE.get() == "es" else template.text
    text = source if "first_name" in merged else _without_name(source)
    missing = [field for field in required_values(name) if field not in merged]
    if missing:
        raise TemplateError(
            f"reply template {name!r} needs value {missing[0]!r} (missing: {missing!r}); "
            f"pass render({name!r}, {', '.join(f'{m}=...' for m in missing)})"
        )
    if template.channel == "email_html":
        merged = {k: html.escape(v) if isinstance(v, str) else v for k, v in merged.items()}
    try:
        return text.format(**merged).strip()
    except (ValueError, TypeError) as exc:
        raise TemplateError(f"reply template {name!r}: a value has the wrong type ({exc})") from None
