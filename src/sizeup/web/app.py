"""The Starlette app: the page (`/`), the JSON API (`/api/<command>`), static files and a health check.

Stack: Starlette (routing, requests, static files) on uvicorn (ASGI server), Jinja2 templates rendering the
page on the server with the charts inline as SVG; a little vanilla JS; no CDN, everything ships in the wheel.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sizeup.web.jobs import COMMANDS, MAX_REQUEST_BYTES, JobError, field_of, normalize, to_argv
from sizeup.web.pool import JobTimeout, WorkerPool

HERE = Path(__file__).parent
VIEWS = ("train", "memory", "compare", "search", "infer", "serve-plan")
VIEW_TITLES = {"train": "Train (time and cost)", "memory": "Memory", "compare": "Compare GPUs and platforms",
               "search": "Search plans (Pareto)", "infer": "Inference replica", "serve-plan": "Serving plan"}

# form fields: (flag, label, placeholder/help, views, choices)
TRAIN_VIEWS = ("train", "memory", "compare", "search")
FIELDS: list[dict[str, Any]] = [
    {"name": "tokens", "label": "training tokens", "hint": "15M, 2B, 1.5T", "views": ("train", "compare", "search")},
    {"name": "samples", "label": "samples", "hint": "10000 (or tokens)", "views": ("train", "compare", "search")},
    {"name": "tokens-per-sample", "label": "tokens per sample", "hint": "500", "views": ("train", "compare", "search")},
    {"name": "epochs", "label": "epochs", "hint": "3", "views": ("train", "compare", "search")},
    {"name": "seq", "label": "sequence length", "hint": "2048", "views": TRAIN_VIEWS},
    {"name": "global-batch", "label": "global batch (sequences)", "hint": "16", "views": TRAIN_VIEWS},
    {"name": "micro-batch", "label": "micro-batch", "hint": "1", "views": ("train", "memory", "compare")},
    {"name": "gpu", "label": "GPU", "hint": "a10 (comma list to compare)", "views": VIEWS, "list": "gpus"},
    {"name": "gpus", "label": "GPU count", "hint": "1", "views": ("train", "memory", "compare", "search", "infer")},
    {"name": "tp", "label": "tensor parallel", "hint": "1 (serve-plan: try 1, 2, 4, 8)",
     "views": ("train", "memory", "infer", "serve-plan")},
    {"name": "pp", "label": "pipeline parallel", "hint": "1", "views": ("train", "memory", "infer")},
    {"name": "ep", "label": "expert parallel (MoE)", "hint": "1", "views": ("train", "memory", "infer", "serve-plan")},
    {"name": "zero", "label": "sharding", "views": ("train", "memory", "compare"),
     "choices": ("", "none", "1", "2", "3", "fsdp-full", "fsdp-grad-op", "fsdp-hybrid")},
    {"name": "recompute", "label": "activation recompute", "views": ("train", "memory", "compare"),
     "choices": ("", "none", "selective", "full")},
    {"name": "precision", "label": "precision", "views": TRAIN_VIEWS,
     "choices": ("", "fp32", "tf32", "fp16-mixed", "bf16-mixed", "bf16", "fp8")},
    {"name": "optimizer", "label": "optimizer", "views": TRAIN_VIEWS,
     "choices": ("", "adamw", "adam8bit", "adafactor", "sgd", "lion")},
    {"name": "framework", "label": "framework", "views": TRAIN_VIEWS, "choices_from": "frameworks"},
    {"name": "peft", "label": "PEFT", "views": TRAIN_VIEWS, "choices": ("", "none", "lora", "qlora")},
    {"name": "lora-rank", "label": "LoRA rank", "hint": "16", "views": TRAIN_VIEWS},
    {"name": "platform", "label": "platform", "hint": "lambda (comma list to compare)",
     "views": ("train", "compare", "search", "infer", "serve-plan"), "list": "platforms"},
    {"name": "pricing", "label": "pricing", "hint": "on-demand, spot, reserved",
     "views": ("train", "compare", "search", "infer", "serve-plan")},
    {"name": "objective", "label": "objective", "views": ("search",), "choices": ("", "time", "cost", "pareto")},
    {"name": "max-gpus", "label": "max GPUs", "hint": "64", "views": ("search",)},
    {"name": "deadline", "label": "deadline", "hint": "72h, 30d", "views": ("compare", "search")},
    {"name": "budget", "label": "budget (USD)", "hint": "5000", "views": ("compare", "search")},
    {"name": "prompt-len", "label": "prompt tokens", "hint": "512 or p50=512,p95=2048", "views": ("infer", "serve-plan")},
    {"name": "output-len", "label": "output tokens", "hint": "128 or p50=200,p95=800", "views": ("infer", "serve-plan")},
    {"name": "weights", "label": "weights dtype", "hint": "bf16, fp8, int4", "views": ("infer", "serve-plan")},
    {"name": "kv-dtype", "label": "KV-cache dtype", "views": ("infer", "serve-plan"),
     "choices_from": "kv_dtypes"},
    {"name": "engine", "label": "serving engine", "views": ("infer", "serve-plan"), "choices_from": "engines"},
    {"name": "batch", "label": "batch", "hint": "max that fits", "views": ("infer",)},
    {"name": "rps", "label": "requests/s", "hint": "5 (infer: simulate this load)", "views": ("infer", "serve-plan")},
    {"name": "requests", "label": "simulated requests", "hint": "2000 (infer), 800 (serve-plan)",
     "views": ("infer", "serve-plan")},
    {"name": "ttft-p95", "label": "TTFT p95 target", "hint": "2s", "views": ("serve-plan",)},
    {"name": "tpot-p95", "label": "TPOT p95 target", "hint": "50ms", "views": ("serve-plan",)},
]
FIELD_NAMES = {f["name"] for f in FIELDS} | {"model", "config"}


def _catalog_lists() -> dict[str, list[str]]:
    from sizeup.catalog import load_catalog

    c = load_catalog()
    try:
        from sizeup.job.frameworks import framework_profiles

        frameworks = [""] + sorted(framework_profiles())
    except ImportError:  # a sizeup without framework profiles
        frameworks = []
    from sizeup.catalog.engines import load_engines
    from sizeup.core.inference import KvDtype

    return {"models": sorted(c.models), "gpus": sorted(c.gpus), "platforms": sorted(c.platforms),
            "frameworks": frameworks, "engines": [""] + sorted(load_engines()),
            "kv_dtypes": [""] + [k.value for k in KvDtype]}


def _templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))
    return env


def _error_payload(exc: JobError) -> dict:
    return {"error": str(exc), "field": exc.field}


DRAIN_BYTES = 16 * MAX_REQUEST_BYTES  # read (and drop) an oversized body up to this, so the client gets the 413


async def _read_body(request: Request) -> bytes:
    size = request.headers.get("content-length")
    declared = int(size) if size and size.isdigit() else None
    body = bytearray()
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen <= MAX_REQUEST_BYTES:
            body += chunk
        elif seen > DRAIN_BYTES:
            break
    if seen > MAX_REQUEST_BYTES or (declared or 0) > MAX_REQUEST_BYTES:
        raise JobError(f"request is {max(seen, declared or 0):,} bytes; the limit is {MAX_REQUEST_BYTES:,} (1 MB)",
                       status=413)
    return bytes(body)


def _query_job(request: Request) -> dict[str, Any]:
    job: dict[str, Any] = {}
    for key, value in parse_qsl(request.url.query, keep_blank_values=False):
        job[key] = f"{job[key]},{value}" if key in job and key not in ("config",) else value
    return job


class Server:
    def __init__(self, workers: int = 2, timeout_s: float = 10.0):
        self.pool = WorkerPool(workers=workers, timeout_s=timeout_s)
        self.env = _templates()
        self.lists: dict[str, list[str]] = {}

    async def startup(self) -> None:
        self.lists = _catalog_lists()
        await self.pool.start()

    async def shutdown(self) -> None:
        await self.pool.close()

    async def execute(self, command: str, job: dict[str, Any], want_chart: bool) -> tuple[int, dict]:
        """(HTTP status, result) for one job; result has stdout (the --json text) or error + field."""
        try:
            job = normalize(job)
            argv = to_argv(command, job, "@config")
        except JobError as exc:
            return exc.status, _error_payload(exc)
        try:
            result = await self.pool.run(command, argv, job.get("config"), want_chart)
        except JobTimeout as exc:
            return 504, {"error": str(exc), "field": None}
        except RuntimeError as exc:
            return 500, {"error": str(exc), "field": None}
        rc = result.get("rc")
        if rc == 0:
            return 200, result
        message = result.get("stderr") or "error: the command failed"
        message = message.splitlines()[-1].removeprefix("error: ").strip()
        return (400 if rc == 2 else 500), {"error": message, "field": field_of(message, job)}

    # ------------------------------------------------------------------ routes

    async def api(self, request: Request) -> Response:
        command = request.path_params["command"]
        try:
            if request.method == "POST":
                body = await _read_body(request)
                try:
                    job = json.loads(body or b"{}")
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise JobError(f"the body is not JSON ({getattr(exc, 'msg', exc)})") from None
            else:
                job = _query_job(request)
            if not isinstance(job, dict):
                raise JobError("the job must be a JSON object of flag -> value")
        except JobError as exc:
            return JSONResponse(_error_payload(exc), status_code=exc.status)
        status, result = await self.execute(command, job, want_chart=False)
        if status != 200:
            return JSONResponse(result, status_code=status)
        # exactly what `sizeup <command> ... --json` prints
        return Response(result["stdout"], media_type="application/json")

    async def page(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                body = await _read_body(request)
                job = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=False))
            else:
                job = _query_job(request)
        except JobError as exc:
            return HTMLResponse(self._render({"view": "train", "job": {}, "error": str(exc), "field": exc.field}),
                                status_code=exc.status)
        view = job.pop("view", "train")
        if view not in VIEWS:
            view = "train"
        # only the fields this view shows (switching views keeps what applies and drops the rest)
        shown = {f["name"] for f in FIELDS if view in f["views"]} | {"model", "config"}
        job = {k: v for k, v in job.items() if k in shown}
        ctx: dict[str, Any] = {"view": view, "job": job}
        status = 200
        if job.get("model") or job.get("config"):
            status, result = await self.execute(view, job, want_chart=True)
            if status == 200:
                ctx["result"] = result
                ctx["data"] = json.loads(result["stdout"])
                ctx["api_url"] = f"/api/{view}?" + urlencode({k: v for k, v in job.items() if k != "config"})
            else:
                ctx["error"], ctx["field"] = result["error"], result.get("field")
        if request.method == "POST" and job.get("config"):
            ctx["posted_config"] = True
        return HTMLResponse(self._render(ctx), status_code=status)

    def _render(self, ctx: dict[str, Any]) -> str:
        from markupsafe import Markup

        ctx.setdefault("job", {})
        ctx.setdefault("view", "train")
        share = {"view": ctx["view"], **{k: v for k, v in ctx["job"].items() if k != "config"}}
        if "result" in ctx and ctx["result"].get("svg"):
            svg = ctx["result"]["svg"]
            ctx["chart_svg"] = Markup(svg[svg.find("<svg"):])
        return self.env.get_template("page.html").render(
            **ctx, fields=FIELDS, views=VIEWS, view_titles=VIEW_TITLES, lists=self.lists,
            share_query=urlencode(share), summary=_summary(ctx["view"], ctx.get("data")))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "workers": self.pool.pids(), **self.pool.stats})


def _money(x) -> str:
    return "-" if x is None else f"${x:,.2f}"


def _num(x, scale: float, fmt: str) -> str:
    return "-" if x is None else format(x * scale, fmt)


def _summary(view: str, data: dict | None) -> list[tuple[str, str, str]]:
    """The headline figures of an answer: (id, label, text); the browser test reads them by id."""
    if not data:
        return []
    out: list[tuple[str, str, str]] = []
    if view == "train":
        cost = data.get("cost") or {}
        hours = cost.get("estimated_hours", data.get("gpu_hours"))
        out.append(("hours", "wall-clock hours", f"{hours}" if hours is not None else "-"))
        out.append(("gpu-hours", "GPU-hours", f"{data['gpu_hours']:.3f}" if data.get("gpu_hours") is not None else "-"))
        out.append(("cost", "total cost (USD)", f"{cost.get('total_cost_usd'):.4f}" if cost.get("total_cost_usd") is not None else "-"))
        out.append(("fits", "fits in memory", "yes" if data.get("fits") else "no"))
    elif view == "memory":
        out.append(("peak", "peak reserved per GPU (GiB)", f"{data['peak_reserved_bytes'] / 2**30:.2f}"))
        out.append(("fits", "fits in memory", "yes" if data.get("fits") else "no"))
    elif view == "compare":
        c = data.get("cheapest") or {}
        out.append(("cheapest", "cheapest", f"{c.get('platform')} {c.get('gpu')}: {_money(c.get('total_cost_usd'))}" if c else "-"))
        out.append(("rows", "offers compared", str(len(data.get("rows") or []))))
    elif view == "search":
        out.append(("plans", "plans shown", str(len(data.get("plans") or []))))
        out.append(("feasible", "feasible plans", f"{data.get('feasible', 0):,}"))
    elif view == "infer":  # a replica that does not fit has no latency, throughput or price (null, shown '-')
        out.append(("fits", "fits in memory", "yes" if data.get("fits") else "no"))
        out.append(("tpot", "TPOT (ms)", _num(data.get("tpot_s"), 1e3, ".2f")))
        out.append(("throughput", "output tokens/s", _num(data.get("output_tokens_per_s"), 1.0, ",.0f")))
        out.append(("usd-out", "USD per 1M output tokens",
                    _num(data.get("usd_per_1m_output_tokens"), 1.0, ",.3f")))
    elif view == "serve-plan":
        b = data.get("best") or {}
        ok = bool(b.get("feasible"))
        b = b if ok else {}  # an infeasible plan has no replicas, month or price to show
        out.append(("best", "plan", f"{b.get('replicas')} x {b.get('gpu_id')} tp{b.get('tp')}" if ok else "none feasible"))
        out.append(("month", "$ per month", _money(b.get("usd_per_month"))))
        out.append(("usd-out", "USD per 1M output tokens", _num(b.get("usd_per_1m_output_tokens"), 1.0, ",.3f")))
    return out


def create_app(workers: int | None = None, timeout_s: float = 10.0) -> Starlette:
    server = Server(workers=workers or int(os.environ.get("SIZEUP_WEB_WORKERS", "2")), timeout_s=timeout_s)
    routes = [
        Route("/", server.page, methods=["GET", "POST"]),
        Route("/api/{command}", server.api, methods=["GET", "POST"]),
        Route("/healthz", server.health),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        await server.startup()
        try:
            yield
        finally:
            await server.shutdown()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app


__all__ = ["create_app", "COMMANDS"]


class BackgroundServer:
    """The app on a free loopback port in a background thread (tests and benchmarks): `.url`, `.stop()`."""

    def __init__(self, workers: int = 1, timeout_s: float = 10.0, host: str = "127.0.0.1", port: int = 0):
        import socket
        import threading
        import time

        import uvicorn

        if not port:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.app = create_app(workers=workers, timeout_s=timeout_s)
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the sizeup web server did not start")
            time.sleep(0.05)

    @property
    def server(self) -> Server:
        return self.app.state.server

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
