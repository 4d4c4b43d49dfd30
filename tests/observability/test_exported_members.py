"""The public tracing modules export exactly what ``__all__`` lists, and every listed name exists."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

PUBLIC_MODULES = [
    "ghl_real_estate_ai.observability.workflow_tracing",
    "ghl_real_estate_ai.observability.otel_config",
    "ghl_real_estate_ai.observability.metrics",
    "ghl_real_estate_ai.observability.redaction",
    "ghl_real_estate_ai.observability.testing",
    "ghl_real_estate_ai.observability.attributes",
    "ghl_real_estate_ai.observability.config",
    "ghl_real_estate_ai.observability.errors",
    "ghl_real_estate_ai.observability.journey",
    "ghl_real_estate_ai.observability.url_templates",
    "ghl_real_estate_ai.observability.timeline",
]


def load(name: str) -> ModuleType:
    # Every public module exists: a missing one fails here rather than skipping quietly.
    return importlib.import_module(name)


def defined_here(module: ModuleType) -> set[str]:
    """Public functions and classes the module itself defines (re-exports count when listed)."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and getattr(value, "__module__", None) == module.__name__
    }


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_lists_existing_names_once(name: str) -> None:
    module = load(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    missing = [member for member in exported if not hasattr(module, member)]
    assert missing == [], f"{name}.__all__ names what the module lacks"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_definition_is_in_all(name: str) -> None:
    module = load(name)
    assert defined_here(module) - set(module.__all__) == set()


def test_the_guides_names_are_importable() -> None:
    from ghl_real_estate_ai.observability import workflow_tracing

    for member in (
        "trace_workflow_node",
        "create_handoff_span",
        "propagate_trace_context",
        "async_workflow_span",
        "add_workflow_event",
        "get_trace_id",
    ):
        assert member in workflow_tracing.__all__
        assert callable(getattr(workflow_tracing, member))
