"""No malformed input yields a 5xx anywhere in the app (issue 4, acceptance 4; DESIGN section 7).

The real app, on the embedded defaults, served by uvicorn; schemathesis
generates valid and invalid requests for every operation of the app's own
OpenAPI schema (webhook intake, health, trace viewer, Jaeger API, admin).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from serving import serve_in_thread

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.settings import Settings

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_server_error_in_any_operation(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'data' / 'jorge.db'}",
        otel_exporter_type="local",
        followup_poll_seconds=3600.0,
    )
    with serve_in_thread(create_app(settings)) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        paths = {op.path for op in operations}
        # The scan covers the parts that take input from outside, not just the webhook.
        assert {"/api/v1/webhooks/ghl", "/api/traces", "/admin/followups/run-due", "/ready"} <= paths
        cases = st.one_of(
            *(op.as_strategy() for op in operations),
            *(op.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE) for op in operations),
        )

        @given(case=cases)
        @hypothesis_settings(
            max_examples=300,
            deadline=None,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, timeout=30)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text)

        no_server_error()
