"""A lean HTTP/1.1 keep-alive client on asyncio streams, so the load generator costs as little
CPU as possible and the same for every server it measures (the machine has two shared cores)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median_low
from typing import Any

__all__ = ["Connection", "LoadResult", "Request", "Rounds", "percentile", "run_load"]


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]


class Connection:
    """One keep-alive connection; reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self._reader = self._writer = None

    async def request(self, method: str, request: Request) -> tuple[int, bytes]:
        if self._writer is None:
            await self._open()
        assert self._reader is not None and self._writer is not None
        head = [f"{method} {request.path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(request.body)}"]
        head += [f"{k}: {v}" for k, v in request.headers.items()]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body)
        await self._writer.drain()
        status, body, keep = await self._read_response(self._reader)
        if not keep:
            await self.close()
        return status, body

    @staticmethod
    async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        keep = headers.get("connection", "").lower() != "close"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            return status, b"".join(chunks), keep
        length = int(headers.get("content-length", "0"))
        return status, await reader.readexactly(length) if length else b"", keep


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, per answered request
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies)

    def per_second(self, ok_only: bool = True) -> float:
        done = self.ok if ok_only else self.answered
        return done / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.answered + self.errors,
            "ok": self.ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "seconds": round(self.seconds, 4),
            "per_second": round(self.per_second(), 1),
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 2),
            "max_ms": round(max(self.latencies, default=0.0) * 1000, 2),
        }


@dataclass(frozen=True)
class Rounds:
    """One row of a table, repeated: each figure (rate, p50, p99) is the median of the rounds'
    own figures (of an even count, the lower: a figure some round had), so a burst of noise on
    the machine that lands in one round's tail does not decide the row; requests that failed
    or were not 2xx are summed over every round."""

    rounds: Sequence[LoadResult]

    def per_second(self) -> float:
        return median_low([r.per_second() for r in self.rounds])

    def p50_ms(self) -> float:
        return median_low([percentile(r.latencies, 50) * 1000 for r in self.rounds])

    def p99_ms(self) -> float:
        return median_low([r.p99_ms() for r in self.rounds])

    @property
    def ok(self) -> int:
        """2xx answers in the round with the fewest."""
        return min((r.ok for r in self.rounds), default=0)

    @property
    def failed(self) -> int:
        """Requests that got no 2xx, in every round together."""
        return sum(r.answered + r.errors - r.ok for r in self.rounds)

    def summary(self) -> dict[str, Any]:
        return {
            "rounds": len(self.rounds),
            "per_second": round(self.per_second(), 1),
            "p50_ms": round(self.p50_ms(), 2),
            "p99_ms": round(self.p99_ms(), 2),
            "max_ms": round(max((max(r.latencies, default=0.0) for r in self.rounds),
                                default=0.0) * 1000, 2),
            "ok_fewest": self.ok,
            "failed": self.failed,
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (the value below which `pct`% of the values fall)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


async def run_load(host: str, port: int, requests: Sequence[Request], concurrency: int,
                   method: str = "POST") -> LoadResult:
    """Send `requests` over `concurrency` keep-alive connections, each as soon as its connection
    is free (closed loop); latencies from writing the request to the whole answer read."""
    result = LoadResult()
    pending = iter(requests)
    connections = [Connection(host, port) for _ in range(concurrency)]
    for conn in connections:  # connect before the clock starts, as a pooled client would be
        await conn._open()

    async def worker(conn: Connection) -> None:
        for request in pending:
            started = time.perf_counter()
            try:
                status, _ = await conn.request(method, request)
            except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                await conn.close()
                continue
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in connections))
    result.seconds = time.perf_counter() - started
    for conn in connections:
        await conn.close()
    return result
