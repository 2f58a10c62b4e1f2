"""A batch-store hook for tests of the store process (``StoreSpec.hooks`` names it): it
fails any batch that holds the poison VIN with an error that is not the database's."""

from __future__ import annotations

POISON = "LNBSMX01000000666"


def fail_on_poison(cur, inserted: list) -> None:
    if any(item.frame.vin == POISON for _, item in inserted):
        raise RuntimeError(f"test hook: {POISON} in the batch")
