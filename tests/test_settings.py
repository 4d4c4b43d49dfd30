"""The one settings class: defaults, precedence, clear errors, and the README table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ghl_real_estate_ai.errors import ConfigurationError
from ghl_real_estate_ai.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_defaults_need_no_variable() -> None:
    settings = Settings()
    assert settings.database_url.startswith("sqlite:///")
    assert settings.redis_url is None
    assert settings.embedded
    assert settings.unsigned_webhooks_allowed
    assert settings.otel_service_name == "enterprisehub"
    assert settings.resolved_trace_store_path == Path("data/traces.db")


def test_argument_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert Settings().otel_service_name == "from-env"
    assert Settings(otel_service_name="from-arg").otel_service_name == "from-arg"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OTEL_EXPORTER_TYPE=otlp\n")
    assert Settings().otel_exporter_type == "otlp"


def test_bad_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert "DATABASE_URL" in message and "mysql://nope" in message
    assert "\n" not in message


def test_production_refuses_unsigned_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    settings = load_settings()
    assert not settings.unsigned_webhooks_allowed
    with pytest.raises(ConfigurationError, match="GHL_WEBHOOK_PUBLIC_KEY"):
        settings.check_production_safety()  # no key: every webhook would be refused
    monkeypatch.setenv("GHL_WEBHOOK_HMAC_SECRET", "s3cret")
    with pytest.raises(ConfigurationError, match="GHL_BASE_URL"):
        load_settings().check_production_safety()  # the sandbox is not GHL
    monkeypatch.setenv("GHL_BASE_URL", "https://services.leadconnectorhq.com")
    with pytest.raises(ConfigurationError, match="GHL_API_KEY"):
        load_settings().check_production_safety()
    monkeypatch.setenv("GHL_API_KEY", "pit-123")
    load_settings().check_production_safety()  # complete and safe
    monkeypatch.setenv("ALLOW_UNSIGNED_WEBHOOKS", "true")
    with pytest.raises(ConfigurationError, match="ALLOW_UNSIGNED_WEBHOOKS"):
        load_settings().check_production_safety()


def test_every_variable_is_documented_once_in_code_and_in_the_readme() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no docstring"
        assert field.description.startswith(f"{name.upper()}: "), name
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings-table")], capture_output=True, text=True, check=True
    ).stdout
    readme = (ROOT / "README.md").read_text()
    assert table.strip() in readme, (
        "README's configuration table is stale: paste scripts/settings-table output"
    )
