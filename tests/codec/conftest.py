"""Shared set-up for the codec tests.

The repository root goes on ``sys.path`` so that ``codec`` and ``tests.support`` import
whatever directory pytest is started from. Hypothesis keeps no example database (nothing
is written into the working tree) and runs a modest number of examples so the whole
codec suite stays well under a minute.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

settings.register_profile(
    "codec",
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("codec")


@pytest.fixture(autouse=True)
def observe_errors():
    """The codec has no Deferreds and no Twisted logging: the suite-wide Twisted error
    observer (tests/conftest.py), with its garbage collection after every test, is
    replaced here by nothing, which keeps the codec suite fast and free of Twisted."""
    yield []
