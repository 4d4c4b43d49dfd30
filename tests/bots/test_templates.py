"""Reply templates render short, complete texts and fail clearly on bad names or values."""

from __future__ import annotations

import string

import pytest

from ghl_real_estate_ai.bots.templates import (
    SMS_MAX_CHARS,
    TEMPLATES,
    TemplateError,
    render,
    reply_language,
    replying_in,
    required_values,
)
from ghl_real_estate_ai.bots.templates_es import TEMPLATES_ES
from ghl_real_estate_ai.errors import JorgeError

# Long but realistic values, to prove the SMS limit holds in the worst ordinary case.
VALUES = {
    "first_name": "Maximiliana",
    "agent_name": "Jorge Salas",
    "area": "Rancho Cucamonga",
    "estimate": 1_234_000,
    "low": 1_150_000,
    "high": 1_310_000,
    "comp_count": 12,
    "median": 1_199_000,
    "max_price": 1_450_000,
    "slot": "Wednesday, March 12 at 10:30 AM",
    "slot_1": "Wednesday, March 12 at 10:30 AM",
    "slot_2": "Thursday, March 13 at 4:00 PM",
    "temperature": "lukewarm",
    "summary": "seller, 3 bed in Upland, timeline 90 days",
}


@pytest.mark.parametrize("name", sorted(n for n, t in TEMPLATES.items() if t.channel == "sms"))
def test_every_sms_template_fits_two_segments(name: str) -> None:
    text = render(name, **VALUES)
    assert 0 < len(text) <= SMS_MAX_CHARS
    assert "{" not in text and "}" not in text


def test_the_required_template_families_exist() -> None:
    needed = {
        "seller_q_motivation", "seller_q_timeline", "seller_q_condition", "seller_q_price",
        "buyer_q_budget", "buyer_q_preapproval", "buyer_q_bedrooms_areas", "buyer_q_timeline",
        "cma_summary", "showing_offer", "appointment_offer", "handoff_lead_to_buyer",
        "handoff_lead_to_seller",
        "handoff_buyer_to_seller", "handoff_seller_to_buyer", "opt_out_confirmation", "escalation_notice",
        "followup_day_3", "followup_day_7_call_task", "followup_day_14_email_subject",
        "followup_day_14_email_html", "followup_day_14_email_html_cma", "followup_day_30",
    }  # fmt: skip
    assert needed <= set(TEMPLATES)


def test_cma_summary_formats_money() -> None:
    text = render("cma_summary", area="Upland", estimate=812_000, low=776_000, high=851_000, comp_count=9)
    assert "$812,000" in text and "$776,000 to $851,000" in text and "9 recent sales" in text


def test_first_name_defaults_when_missing_or_blank() -> None:
    assert render("followup_day_3").startswith("Hi there,")
    assert render("followup_day_3", first_name="").startswith("Hi there,")
    assert render("followup_day_3", first_name="Ana").startswith("Hi Ana,")


def test_email_html_escapes_values() -> None:
    html = render(
        "followup_day_14_email_html_cma",
        first_name="<script>x</script>",
        area="Upland",
        estimate=700_000,
        low=650_000,
        high=750_000,
        comp_count=8,
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<strong>$700,000</strong>" in html


def test_unknown_name_is_a_clear_error_not_a_key_error() -> None:
    with pytest.raises(
        TemplateError, match=r"unknown reply template 'seller_q_budget'.*seller_q_price"
    ) as info:
        render("seller_q_budget")
    assert not isinstance(info.value, KeyError)
    assert isinstance(info.value, JorgeError)


def test_missing_value_names_it_and_the_template() -> None:
    with pytest.raises(TemplateError, match=r"'showing_offer' needs value 'slot_1'.*slot_2"):
        render("showing_offer")
    assert required_values("showing_offer") == ("slot_1", "slot_2")


def test_wrong_value_type_is_a_clear_error() -> None:
    with pytest.raises(TemplateError, match="wrong type"):
        render("cma_summary", area="Upland", estimate="lots", low=1, high=2, comp_count=3)


def test_without_a_first_name_every_reply_reads_naturally() -> None:
    """GHL's webhook carries no name: no reply may say "ready to buy, there!" or keep a placeholder."""
    for name in TEMPLATES:
        text = render(name, **dict.fromkeys(required_values(name), 1))
        assert "{" not in text and "}" not in text, name
        assert ", there" not in text and "there!" not in text, (name, text)
        assert text[:1].isupper() or text.startswith("<"), (name, text)


def test_a_known_first_name_is_used() -> None:
    greeting = render("handoff_lead_to_buyer", first_name="Ana")
    assert greeting.startswith("Sounds like you're ready to buy, Ana!")
    assert render("followup_day_14_email_subject", first_name="Ana") == "Ana, your home market update"


@pytest.mark.parametrize("name", sorted(TEMPLATES_ES))
def test_every_spanish_text_belongs_to_a_template_and_needs_the_same_values(name: str) -> None:
    assert name in TEMPLATES
    fields = {f for _, f, _, _ in string.Formatter().parse(TEMPLATES_ES[name]) if f}
    english = {f for _, f, _, _ in string.Formatter().parse(TEMPLATES[name].text) if f}
    assert fields == english
    with replying_in("es"):
        text = render(name, **VALUES)
    assert text != render(name, **VALUES)
    if TEMPLATES[name].channel == "sms":
        assert 0 < len(text) <= SMS_MAX_CHARS


def test_every_text_a_lead_can_receive_has_a_spanish_version() -> None:
    to_the_lead = {n for n, t in TEMPLATES.items() if t.channel != "task"}
    assert to_the_lead <= set(TEMPLATES_ES)


def test_the_reply_language_holds_inside_the_block_only_and_anything_but_spanish_is_english() -> None:
    with replying_in("es"):
        assert reply_language() == "es"
        assert render("buyer_q_timeline") == "¿Para cuándo espera estar en su nueva casa?"
        with replying_in("fr"):
            assert render("buyer_q_timeline") == "When are you hoping to be in your new home?"
        assert reply_language() == "es"
    assert reply_language() == "en"
    assert render("lead_greeting").startswith("Hi there")


def test_a_spanish_reply_without_a_first_name_reads_naturally() -> None:
    with replying_in("es"):
        assert render("lead_greeting").startswith("Hola, ¡gracias")
        assert render("seller_qualified").startswith("Gracias, ya tengo")
        assert render("seller_qualified", first_name="Ana").startswith("Gracias Ana, ya tengo")
