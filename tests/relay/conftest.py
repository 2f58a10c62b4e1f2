"""Set-up for the relay tests.

The root ``observe_errors`` fixture runs ``gc.collect()`` after every test so that a
Deferred dropped with an unhandled failure is reported by the test that dropped it. With
the ~80,000 objects that importing Twisted, construct, psycopg and the codec leaves
behind, each collection costs ~0.1 s, more than most protocol tests themselves. Those
objects never become garbage, so they are moved out of the collector's way once
(``gc.freeze``); objects made by the tests are still collected and checked.
"""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(scope="session", autouse=True)
def freeze_start_up_objects():
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()
