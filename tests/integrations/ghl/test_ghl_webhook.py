"""InboundMessage parsing and webhook signature verification, with keys generated here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from pydantic import ValidationError

from ghl_real_estate_ai.errors import ConfigurationError, SignatureError
from ghl_real_estate_ai.integrations.ghl.webhook import (
    ED25519_HEADER,
    HMAC_HEADER,
    RSA_HEADER,
    WebhookVerifier,
    parse_timestamp,
    parse_webhook,
    webhook_json_schema,
)
from ghl_real_estate_ai.settings import Settings


def _pem(public_key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _body(**overrides: object) -> bytes:
    data = {
        "type": "InboundMessage",
        "locationId": "loc-1",
        "contactId": "c-1",
        "body": "Hi, I want to sell my house",
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": "m-1",
        "webhookId": "w-1",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    data.update(overrides)
    return json.dumps(data).encode()


# --- parsing -------------------------------------------------------------------------


def test_flat_form_with_camel_case_is_parsed() -> None:
    message = parse_webhook(
        json.loads(_body(dateAdded="2025-01-02T03:04:05.000Z", attachments=["https://x/y"]))
    )
    assert message.type == "InboundMessage"
    assert (message.location_id, message.contact_id, message.message_id) == ("loc-1", "c-1", "m-1")
    assert message.date_added == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert message.attachments == ["https://x/y"]
    assert message.should_process and message.reply_channel == "SMS"


def test_snake_case_names_are_accepted_too() -> None:
    message = parse_webhook({"type": "InboundMessage", "location_id": "l", "contact_id": "c", "body": "x"})
    assert message.contact_id == "c"


def test_nested_message_form_is_normalised() -> None:
    message = parse_webhook(
        {
            "locationId": "l",
            "contactId": "c",
            "message": {"type": "Email", "body": "hello", "direction": "inbound"},
        }
    )
    assert message.type == "InboundMessage"
    assert message.body == "hello"
    assert message.message_type == "Email"
    assert message.reply_channel == "Email"


def test_nested_numeric_message_type_maps_to_ghl_names() -> None:
    message = parse_webhook({"locationId": "l", "contactId": "c", "message": {"type": 2, "body": "yo"}})
    assert message.message_type == "SMS"


def test_nested_outbound_message_is_not_processed() -> None:
    message = parse_webhook(
        {
            "locationId": "l",
            "contactId": "c",
            "message": {"type": "SMS", "body": "x", "direction": "outbound"},
        }
    )
    assert message.type == "OutboundMessage"
    assert not message.should_process


def test_unknown_event_type_needs_only_its_type() -> None:
    message = parse_webhook({"type": "ContactTagUpdate", "id": "abc"})
    assert not message.is_message and not message.should_process


def test_message_event_without_contact_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        parse_webhook({"type": "InboundMessage", "locationId": "l"})
    assert [e["loc"] for e in info.value.errors()] == [("contactId",)]


def test_wrong_types_name_the_field_in_ghl_spelling() -> None:
    with pytest.raises(ValidationError) as info:
        parse_webhook({"type": "InboundMessage", "locationId": "l", "contactId": 5})
    assert info.value.errors()[0]["loc"] == ("contactId",)


def test_non_object_body_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        parse_webhook([1, 2])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1735787045000, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("1735787045000", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05Z", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-01T19:04:05-08:00", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_timestamps_accept_iso_and_epoch_millis(raw: object, expected: datetime) -> None:
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize("raw", ["yesterday", True, None, [1], 10**30])
def test_unreadable_timestamps_are_refused(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(raw)


def test_openapi_schema_is_self_contained_and_camel_case() -> None:
    schema = webhook_json_schema()
    assert "$ref" not in json.dumps(schema)
    assert {"contactId", "locationId", "messageType", "webhookId"} <= set(schema["properties"])


# --- signatures ----------------------------------------------------------------------


def test_valid_ed25519_signature_passes(ed_key: ed25519.Ed25519PrivateKey) -> None:
    verifier = WebhookVerifier.from_settings(Settings(ghl_webhook_public_key=_pem(ed_key.public_key())))
    body = _body()
    signature = base64.b64encode(ed_key.sign(body)).decode()
    assert verifier.verify(body, {ED25519_HEADER: signature}) == "ed25519"


def test_pem_with_escaped_newlines_from_env_files_is_accepted(ed_key: ed25519.Ed25519PrivateKey) -> None:
    escaped = _pem(ed_key.public_key()).replace("\n", "\\n")
    verifier = WebhookVerifier.from_settings(Settings(ghl_webhook_public_key=escaped))
    body = _body()
    assert verifier.verify(body, {ED25519_HEADER: base64.b64encode(ed_key.sign(body)).decode()}) == "ed25519"


def test_valid_legacy_rsa_signature_passes(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = WebhookVerifier.from_settings(Settings(ghl_webhook_rsa_public_key=_pem(rsa_key.public_key())))
    body = _body()
    signature = base64.b64encode(rsa_key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    assert verifier.verify(body, {RSA_HEADER: signature}) == "rsa"


@pytest.mark.parametrize("encoding", ["hex", "sha256=hex", "base64"])
def test_hmac_signature_passes_as_hex_or_base64(encoding: str) -> None:
    verifier = WebhookVerifier.from_settings(Settings(ghl_webhook_hmac_secret="s3cret"))
    body = _body()
    digest = hmac.new(b"s3cret", body, hashlib.sha256).digest()
    value = {
        "hex": digest.hex(),
        "sha256=hex": "sha256=" + digest.hex(),
        "base64": base64.b64encode(digest).decode(),
    }[encoding]
    assert verifier.verify(body, {HMAC_HEADER: value}) == "hmac"


def test_tampered_body_fails_ed25519(ed_key: ed25519.Ed25519PrivateKey) -> None:
    verifier = WebhookVerifier.from_settings(Settings(ghl_webhook_public_key=_pem(ed_key.public_key())))
    body = _body()
    signature = base64.b64encode(ed_key.sign(body)).decode()
    with pytest.raises(SignatureError, match="does not match"):
        verifier.verify(body.replace(b"sell", b"buy "), {ED25519_HEADER: signature})


def test_tampered_body_fails_rsa(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = WebhookVerifier.from_settings(Settings(ghl_webhook_rsa_public_key=_pem(rsa_key.public_key())))
    body = _body()
    signature = base64.b64encode(rsa_key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    with pytest.raises(SignatureError, match="does not match"):
        verifier.verify(body + b" ", {RSA_HEADER: signature})


def test_wrong_key_fails(ed_key: ed25519.Ed25519PrivateKey) -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    verifier = WebhookVerifier.from_settings(Settings(ghl_webhook_public_key=_pem(other.public_key())))
    body = _body()
    with pytest.raises(SignatureError, match="does not match"):
        verifier.verify(body, {ED25519_HEADER: base64.b64encode(ed_key.sign(body)).decode()})


def test_missing_header_fails_when_a_key_is_configured(ed_key: ed25519.Ed25519PrivateKey) -> None:
    verifier = WebhookVerifier.from_settings(
        Settings(ghl_webhook_public_key=_pem(ed_key.public_key()), allow_unsigned_webhooks=False)
    )
    with pytest.raises(SignatureError, match=r"missing signature header.*X-GHL-Signature"):
        verifier.verify(_body(), {})


@pytest.mark.parametrize("value", ["N/A", "", "not base64!!", base64.b64encode(b"short").decode()])
def test_malformed_signature_values_fail(ed_key: ed25519.Ed25519PrivateKey, value: str) -> None:
    verifier = WebhookVerifier.from_settings(Settings(ghl_webhook_public_key=_pem(ed_key.public_key())))
    with pytest.raises(SignatureError):
        verifier.verify(_body(), {ED25519_HEADER: value})


def test_present_but_bad_signature_fails_even_when_unsigned_is_allowed(
    ed_key: ed25519.Ed25519PrivateKey,
) -> None:
    verifier = WebhookVerifier.from_settings(
        Settings(ghl_webhook_public_key=_pem(ed_key.public_key()), allow_unsigned_webhooks=True)
    )
    assert verifier.verify(_body(), {}) == "unsigned"
    with pytest.raises(SignatureError):
        verifier.verify(_body(), {ED25519_HEADER: "N/A"})


def test_unsigned_is_refused_in_production_with_no_key() -> None:
    verifier = WebhookVerifier.from_settings(Settings(environment="production"))
    with pytest.raises(SignatureError, match="no webhook key is configured"):
        verifier.verify(_body(), {})


def test_unsigned_is_allowed_by_default_outside_production() -> None:
    assert WebhookVerifier.from_settings(Settings()).verify(_body(), {}) == "unsigned"


def test_stale_and_future_timestamps_fail_the_replay_window() -> None:
    verifier = WebhookVerifier()
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert verifier.check_fresh({"timestamp": (now - timedelta(minutes=4)).isoformat()}, now=now)
    with pytest.raises(SignatureError, match="old"):
        verifier.check_fresh({"timestamp": (now - timedelta(minutes=6)).isoformat()}, now=now)
    with pytest.raises(SignatureError, match="in the future"):
        verifier.check_fresh({"timestamp": int((now + timedelta(minutes=6)).timestamp() * 1000)}, now=now)
    with pytest.raises(SignatureError, match="no `timestamp`"):
        verifier.check_fresh({}, now=now)
    with pytest.raises(SignatureError, match="unreadable"):
        verifier.check_fresh({"timestamp": "soon"}, now=now)


def test_bad_pem_is_a_configuration_error_naming_the_variable(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigurationError, match="GHL_WEBHOOK_PUBLIC_KEY is not a PEM"):
        WebhookVerifier.from_settings(Settings(ghl_webhook_public_key="hello"))
    with pytest.raises(ConfigurationError, match="not an Ed25519 key"):
        WebhookVerifier.from_settings(Settings(ghl_webhook_public_key=_pem(rsa_key.public_key())))
    with pytest.raises(ConfigurationError, match="GHL_WEBHOOK_RSA_PUBLIC_KEY holds"):
        ed = ed25519.Ed25519PrivateKey.generate()
        WebhookVerifier.from_settings(Settings(ghl_webhook_rsa_public_key=_pem(ed.public_key())))
