"""Short, sortable, unique ids for stored rows (``ex-01J...``).

ULID layout (48-bit millisecond time + 80 random bits, Crockford base32) written
here so the store needs no extra dependency. Ids from one process are strictly
increasing even within a millisecond; ids from several replicas sort by time.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1

_lock = threading.Lock()
_last_ms = -1
_last_random = 0

# The random part comes from the OS in bulk: one `os.urandom` per 409 ids, not per id. The
# call gives up the interpreter's lock, and on a busy process each give-up can cost the event
# loop a switch interval (5 ms) before it gets it back from a worker thread.
_POOL_BYTES = 4096
_pool = b""
_pool_at = 0


def _random80() -> int:
    """80 bits from the OS's random source, top bit cleared (called under `_lock`)."""
    global _pool, _pool_at
    if _pool_at + 10 > len(_pool):
        _pool, _pool_at = os.urandom(_POOL_BYTES), 0
    start = _pool_at
    _pool_at = start + 10
    return int.from_bytes(_pool[start:start + 10], "big") >> 1


def _forget_pool() -> None:
    # A forked child must not hand out its parent's random bytes again.
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


# Two characters per 10 bits: an id is 13 lookups, not 26 divisions (ids are made per
# notification on the Alertmanager intake's path).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _encode(value: int, length: int) -> str:
    """`value` in `length` Crockford base32 characters (`length` even), most significant
    first."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(5 * length - 10, -1, -10)])


def new_id(prefix: str) -> str:
    """Return ``<prefix>-<26 chars>``; later calls in this process sort after earlier ones."""
    global _last_ms, _last_random
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            # Same (or an earlier, after a clock step back) millisecond: keep the
            # previous time and count up, as monotonic ULIDs do.
            now_ms = _last_ms
            rand = _last_random + 1
            if rand > _RANDOM_MAX:
                now_ms += 1
                rand = _random80()
        else:
            # Top bit cleared to leave room for counting up without overflow.
            rand = _random80()
        _last_ms, _last_random = now_ms, rand
    return f"{prefix}-{_encode(now_ms, 10)}{_encode(rand, 16)}"
