"""Fixtures of the forecasting tests: an in-process dispatcher for the executor, and a clean probe store."""

from __future__ import annotations

import pytest

from forecasting.services import execution
from tests.forecasting.inline import InlineDispatcher

__all__ = ["InlineDispatcher"]


@pytest.fixture
def inline(monkeypatch):
    dispatcher = InlineDispatcher()
    monkeypatch.setattr(execution.dispatch, "dispatcher", dispatcher)
    return dispatcher


@pytest.fixture
def probe_store():
    from tests.probe import steps

    client = steps.store()
    for key in client.scan_iter(steps.PREFIX + "*"):
        client.delete(key)
    return steps
