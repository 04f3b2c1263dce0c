"""A small pool of worker processes with a per-job time limit.

Each worker runs one job at a time. A job that runs past `timeout_s` (a huge search) is cut: its worker is
killed and replaced, and the request gets a clear message; the server's event loop never blocks on a job.
Answers are deterministic for a given argv, so a bounded LRU cache serves repeated jobs (shared URLs,
reloads) without running them again.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from collections import OrderedDict
from typing import Any


class JobTimeout(Exception):
    pass


class _Worker:
    def __init__(self, ctx):
        from sizeup.web.worker import serve

        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child,), daemon=True, name="sizeup-web-worker")
        self.proc.start()
        child.close()

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(timeout=5)
        finally:
            self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=2)
        self.conn.close()


class WorkerPool:
    def __init__(self, workers: int = 2, timeout_s: float = 10.0, cache_entries: int = 512,
                 cache_bytes: int = 16 * 2 ** 20):
        self.size = max(1, int(workers))
        self.timeout_s = float(timeout_s)
        self._ctx = mp.get_context("spawn")  # a fresh interpreter: no state copied from the server's event loop
        self._idle: asyncio.Queue | None = None
        self._all: list[_Worker] = []
        self._cache: OrderedDict[tuple, dict] = OrderedDict()
        self._cache_entries = cache_entries
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self.stats = {"jobs": 0, "cache_hits": 0, "timeouts": 0, "restarts": 0}

    async def start(self) -> None:
        self._idle = asyncio.Queue()
        loop = asyncio.get_running_loop()
        workers = await asyncio.gather(*[loop.run_in_executor(None, _Worker, self._ctx) for _ in range(self.size)])
        for w in workers:
            self._all.append(w)
            self._idle.put_nowait(w)

    async def close(self) -> None:
        for w in self._all:
            w.stop()
        self._all.clear()

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._all if w.proc.pid]

    async def run(self, command: str, argv: list[str], config_text: str | None, want_chart: bool) -> dict[str, Any]:
        key = (tuple(argv), config_text, want_chart)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.stats["cache_hits"] += 1
            return hit
        assert self._idle is not None, "pool not started"
        worker = await self._idle.get()
        self.stats["jobs"] += 1
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_reader(worker.conn.fileno(), done.set)
        try:
            worker.conn.send((command, argv, config_text, want_chart))
            try:
                await asyncio.wait_for(done.wait(), timeout=self.timeout_s)
                result = worker.conn.recv()
            except (asyncio.TimeoutError, EOFError, OSError) as exc:
                loop.remove_reader(worker.conn.fileno())
                timed_out = isinstance(exc, asyncio.TimeoutError)
                worker = await self._replace(worker)
                if timed_out:
                    self.stats["timeouts"] += 1
                    raise JobTimeout(f"this job ran longer than {self.timeout_s:g} s and was stopped; narrow it "
                                     "(fewer GPU kinds, a smaller --max-gpus, fewer platforms) and try again") from None
                raise RuntimeError("the worker process died while running this job") from None
            loop.remove_reader(worker.conn.fileno())
        finally:
            self._idle.put_nowait(worker)
        if result.get("rc") in (0, 2):
            self._remember(key, result)
        return result

    def _remember(self, key: tuple, result: dict) -> None:
        """Keep the answer; evict the least recently used beyond the entry and byte limits (bounded memory)."""
        size = _size(result)
        if key in self._cache or size > self._cache_bytes // 4:
            return
        self._cache[key] = result
        self._cached_bytes += size
        while len(self._cache) > self._cache_entries or self._cached_bytes > self._cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= _size(old)

    async def _replace(self, worker: _Worker) -> _Worker:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, worker.kill)
        self._all.remove(worker)
        fresh = await loop.run_in_executor(None, _Worker, self._ctx)
        self._all.append(fresh)
        self.stats["restarts"] += 1
        return fresh


def _size(result: dict) -> int:
    """Approximate bytes held by one answer (its strings dominate)."""
    n = len(result.get("stdout", "")) + len(result.get("svg", "")) + len(result.get("stderr", ""))
    for t in result.get("tables", ()):
        n += sum(len(c) for row in t["rows"] for c in row) + 64 * len(t["rows"])
    for t in result.get("terms", ()):
        n += sum(len(str(v)) for v in t.values())
    return 2 * n + 1024
