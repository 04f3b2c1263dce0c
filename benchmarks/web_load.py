"""Load test of `sizeup serve` over loopback: 10,000 mixed requests from 16 concurrent clients.

Starts the server as its own process (`sizeup serve`, 2 workers), warms it, records its resident memory,
sends the requests (API jobs of every kind with varied values, result pages with charts, static files,
bad input that must be answered 400, health checks), then prints errors, p50/p99 latency per kind and
overall, the server's RSS before/after (must not grow by more than 50 MB) and the workers' RSS.

    python benchmarks/web_load.py [--requests 10000] [--clients 16] [--workers 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(x) for x in fh.read().split()]
        except OSError:
            pass
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# a platform that rents each GPU of the mix (Lambda has no L4/T4)
LAMBDA_OR_GCP = {"a10": "lambda", "l4": "gcp", "t4": "gcp", "a100-40gb-sxm": "lambda", "h100-sxm": "lambda"}


def request_mix(rng: random.Random, n: int) -> list[tuple[str, str, str, bytes | None, int]]:
    """(kind, method, path, body, expected status) for n requests."""
    tokens = [f"{x}M" for x in range(5, 205, 5)]  # 40 values
    gpus = ["a10", "l4", "t4", "a100-40gb-sxm", "h100-sxm"]
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.30:
            gpu = rng.choice(gpus)
            job = {"model": "llama-2-7b", "peft": "lora", "tokens": rng.choice(tokens), "seq": 512,
                   "global-batch": 16, "gpu": gpu, "platform": LAMBDA_OR_GCP[gpu]}
            out.append(("api/train", "GET", "/api/train?" + urllib.parse.urlencode(job), None, 200))
        elif r < 0.45:
            job = {"model": rng.choice(["llama-2-7b", "gpt2-xl", "llama-3-8b"]), "gpu": rng.choice(gpus),
                   "seq": rng.choice([256, 512, 1024]), "peft": rng.choice(["lora", "none"])}
            out.append(("api/memory POST", "POST", "/api/memory", json.dumps(job).encode(), 200))
        elif r < 0.52:
            job = {"model": "llama-2-7b", "peft": "lora", "tokens": rng.choice(tokens[:10]), "gpu": "a10,l4,t4",
                   "platform": "lambda,aws"}
            out.append(("api/compare", "GET", "/api/compare?" + urllib.parse.urlencode(job), None, 200))
        elif r < 0.55:
            job = {"model": "llama-2-7b", "tokens": rng.choice(["1B", "2B", "3B"]), "gpu": "h100-sxm",
                   "max-gpus": 8, "objective": "pareto"}
            out.append(("api/search", "GET", "/api/search?" + urllib.parse.urlencode(job), None, 200))
        elif r < 0.58:
            job = {"model": "llama-3-8b", "gpu": rng.choice(["h100-sxm", "a100-80gb-sxm", "l4"]),
                   "batch": rng.choice([1, 8, 32])}
            out.append(("api/infer", "GET", "/api/infer?" + urllib.parse.urlencode(job), None, 200))
        elif r < 0.78:
            job = {"view": "train", "model": "llama-2-7b", "peft": "lora", "tokens": rng.choice(tokens[:20]),
                   "seq": 512, "global-batch": 16, "gpu": "a10", "platform": "lambda"}
            out.append(("page/train+chart", "GET", "/?" + urllib.parse.urlencode(job), None, 200))
        elif r < 0.88:
            out.append(("static", "GET", rng.choice(["/static/style.css", "/static/app.js", "/?view=search"]), None, 200))
        elif r < 0.95:
            job = {"model": "llama-2-7b", "gpu": "a10", "tokens": rng.choice(["lots", "-5", "nan", "1e400"])}
            out.append(("bad input (400)", "GET", "/api/train?" + urllib.parse.urlencode(job), None, 400))
        else:
            out.append(("healthz", "GET", "/healthz", None, 200))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()

    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, "-c", "import sys; from sizeup.cli import main; sys.exit(main(sys.argv[1:]))",
                               "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print("server did not start:", server.stderr.read().decode() if server.poll() is not None else "")
                    return 1
                time.sleep(0.2)
        rng = random.Random(args.seed)
        # warm-up: one request of each kind so imports and the catalog are loaded before "before" is read
        for kind, method, path, body, _ in request_mix(random.Random(0), 60):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request(method, path, body=body, headers={"content-type": "application/json"} if body else {})
            c.getresponse().read()
        rss_before = rss_mb(server.pid)
        workers_before = sum(rss_mb(p) for p in children(server.pid))
        plan = request_mix(rng, args.requests)
        chunks = [plan[i::args.clients] for i in range(args.clients)]
        lat: dict[str, list[float]] = defaultdict(list)
        errors: list[str] = []
        lock = threading.Lock()

        def client(items):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for kind, method, path, body, expect in items:
                t0 = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers={"content-type": "application/json"} if body else {})
                    resp = conn.getresponse()
                    payload = resp.read()
                    ok = resp.status == expect and (expect != 200 or not path.startswith("/api/") or payload[:1] == b"{")
                    why = f"{kind}: HTTP {resp.status} (expected {expect}) {payload[:120]!r}"
                except (OSError, http.client.HTTPException) as exc:
                    ok, why = False, f"{kind}: {type(exc).__name__}: {exc}"
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                dt = time.perf_counter() - t0
                with lock:
                    lat[kind].append(dt)
                    if not ok:
                        errors.append(why)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(ch,)) for ch in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rss_after = rss_mb(server.pid)
        workers_after = sum(rss_mb(p) for p in children(server.pid))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/healthz")
        stats = json.loads(c.getresponse().read())
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3

    every = [x for xs in lat.values() for x in xs]
    print(f"{len(every):,} requests from {args.clients} clients over loopback in {wall:.1f} s "
          f"({len(every) / wall:,.0f} req/s), {args.workers} worker processes")
    print(f"errors: {len(errors)}")
    for e in errors[:10]:
        print("  ", e)
    print(f"{'kind':<20} {'n':>6} {'p50 ms':>9} {'p99 ms':>9}")
    for kind in sorted(lat):
        print(f"{kind:<20} {len(lat[kind]):>6} {pct(lat[kind], 0.5):>9.1f} {pct(lat[kind], 0.99):>9.1f}")
    print(f"{'all':<20} {len(every):>6} {pct(every, 0.5):>9.1f} {pct(every, 0.99):>9.1f}")
    print(f"jobs run {stats['jobs']:,}, answered from cache {stats['cache_hits']:,}, timeouts {stats['timeouts']}")
    growth = rss_after - rss_before
    print(f"server RSS: before {rss_before:.1f} MB, after {rss_after:.1f} MB, growth {growth:+.1f} MB (limit +50 MB)")
    print(f"worker RSS (sum of {args.workers}): before {workers_before:.1f} MB, after {workers_after:.1f} MB")
    return 0 if not errors and growth <= 50 else 1


if __name__ == "__main__":
    sys.exit(main())
