"""Text no database keeps reaching the store anyway: a StoreError on both databases, never a
driver's own exception (front ends refuse such text before, see bot/storable.py)."""

from __future__ import annotations

import pytest

from bot.store import Store, StoreError


@pytest.mark.parametrize("key", ["claim-\ud800", "claim-\udfff-x"])
def test_a_lone_surrogate_is_a_store_error(store: Store, key: str) -> None:
    with pytest.raises(StoreError):
        store.claim_delivery(key)
    assert store.claim_delivery("claim-ok")  # the store still works
