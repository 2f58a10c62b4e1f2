"""Which month's partition a time belongs to: months are +08:00 months (the standard's zone)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from codec import CST
from relay.store.partitions import bounds, month_of


@pytest.mark.parametrize("when, month", [
    # a collection time as the codec decodes it
    pytest.param(datetime(2026, 12, 1, 0, 0, 0, tzinfo=CST), (2026, 12), id="first_second_of_a_month_cst"),
    pytest.param(datetime(2026, 11, 30, 23, 59, 59, tzinfo=CST), (2026, 11), id="last_second_of_a_month_cst"),
    # a receive time in UTC: 16:00 UTC is already the next day in +08:00
    pytest.param(datetime(2026, 11, 30, 16, 0, 0, tzinfo=timezone.utc), (2026, 12), id="utc_past_16h_is_next_month"),
    pytest.param(datetime(2026, 11, 30, 15, 59, 59, tzinfo=timezone.utc), (2026, 11), id="utc_before_16h"),
    # another object for the same offset
    pytest.param(datetime(2026, 12, 31, 23, 0, 0, tzinfo=timezone(timedelta(hours=8))), (2026, 12),
                 id="equal_offset_other_object"),
    pytest.param(datetime(2026, 12, 31, 18, 0, 0, tzinfo=timezone(timedelta(hours=2))), (2027, 1),
                 id="another_zone_across_the_year"),
])
def test_month_of(when, month):
    assert month_of(when) == month
    start, end = bounds(*month)
    assert start <= when < end
