"""TracingConfig: the library's own configuration from OTEL_* variables, .env and arguments."""

from __future__ import annotations

from pathlib import Path

from ghl_real_estate_ai.observability.config import TracingConfig


def test_precedence_is_argument_then_environment_then_dotenv_then_default(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\nOTEL_SERVICE_NAME=from-dotenv\nexport OTEL_EXPORTER_TYPE='otlp'\nOTEL_ENDPOINT=http://x:4317\n",
        encoding="utf-8",
    )
    environ = {"OTEL_EXPORTER_TYPE": "console", "OTEL_BSP_MAX_QUEUE_SIZE": "64"}
    config = TracingConfig.from_env(environ, env_file=env_file, endpoint="http://arg:4317")
    assert config.service_name == "from-dotenv"
    assert config.exporter_type == "console"
    assert config.endpoint == "http://arg:4317"
    assert config.bsp_max_queue_size == 64
    assert config.bsp_schedule_delay_ms == 1000.0  # default
    assert config.problems == ()


def test_bad_values_are_reported_and_replaced_by_defaults_never_raised() -> None:
    """A typo in OTEL_* cannot stop a service: the value is named in `problems`, the default kept."""
    environ = {
        "OTEL_ENABLED": "perhaps",
        "OTEL_BSP_MAX_QUEUE_SIZE": "lots",
        "OTEL_TRACES_SAMPLER_ARG": "1.5",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "0",
        "ENVIRONMENT": "qa",  # the app's variable: the library does not read it
    }
    config = TracingConfig.from_env(environ, env_file=None)
    assert (config.enabled, config.bsp_max_queue_size, config.traces_sampler_arg) == (True, 2048, None)
    assert config.otlp_timeout_ms == 3000.0
    assert config.environment is None
    assert [p.split("=", 1)[0] for p in config.problems] == [
        "OTEL_ENABLED",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_BSP_MAX_QUEUE_SIZE",
    ]
    assert "'perhaps' is not a boolean" in config.problems[0]


def test_the_guides_variables_are_read() -> None:
    environ = {
        "OTEL_ENABLED": "true",
        "OTEL_SERVICE_NAME": "enterprisehub",
        "OTEL_EXPORTER_TYPE": "otlp",
        "OTEL_ENDPOINT": "http://localhost:4317",
        "HONEYCOMB_API_KEY": "hc",
        "OTEL_CAPTURE_CONTENT": "TRUE",
        "TRACE_STORE_PATH": "/tmp/t.db",
    }
    config = TracingConfig.from_env(environ, env_file=None)
    assert (config.exporter_type, config.endpoint, config.honeycomb_api_key) == (
        "otlp",
        "http://localhost:4317",
        "hc",
    )
    assert config.capture_content is True and config.trace_store_path == Path("/tmp/t.db")
