"""`sizeup infer` (one serving replica) and `sizeup serve-plan` (fleet sizing from traffic and latency targets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import numpy as np
import typer

from sizeup.cli import app  # noqa: F401
from sizeup.commands.common import job_command, refusals_except
from sizeup.commands.common import CalibrationOpt, NoCalibrationOpt
from sizeup.commands.common import (
    CsvOpt, ExplainOpt, GpuOpt, GpusOpt, JsonOpt, MarkdownOpt, ModelArg, ModelOpt, PlatformOpt, PpOpt,
    PricingOpt, TpOpt, emit, pick_target, positive,
)
from sizeup.commands.common import PlotOpt
from sizeup.errors import SizeupError

WeightsOpt = Annotated[Optional[str], typer.Option(
    "--weights", help="Serving weight precision: fp16 | bf16 | fp8 | int8 | int4 (AWQ/GPTQ, group 128) | fp32 (default bf16).")]
KvDtypeOpt = Annotated[Optional[str], typer.Option(
    "--kv-dtype", help="KV-cache dtype: fp16 | bf16 | fp8 | int8 | fp32 (default 16-bit).")]
PromptLenOpt = Annotated[Optional[str], typer.Option(
    "--prompt-len", help="Prompt tokens (default 512), or a log-normal spread: p50=512,p95=2048 (or mean=730,p95=2048); "
                         "the simulated load draws each request's length from it.")]
OutputLenOpt = Annotated[Optional[str], typer.Option(
    "--output-len", help="Output tokens (default 128), or a log-normal spread: p50=200,p95=800 (or mean=...,p95=...).")]
BatchOpt = Annotated[Optional[int], typer.Option(
    "--batch", help="Sequences decoded together (default: as many as memory allows, up to max_num_seqs).")]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", help="Concurrent clients (closed loop). A continuous-batching engine runs as many as fit (KV memory, max_num_seqs) and queues the rest; --batch instead sets sequences decoded together, which must fit.")]
StaticOpt = Annotated[bool, typer.Option("--static", help="Static batching (prefill all, then decode) instead of continuous batching.")]
PricePerGpuHourOpt = Annotated[Optional[float], typer.Option(
    "--price-per-gpu-hour", help="USD per GPU-hour (overrides the platform price).")]
UtilizationOpt = Annotated[Optional[float], typer.Option(
    "--utilization", help="Average fleet utilisation for $/token, 0-1 (default 0.5).")]
GpuMemUtilOpt = Annotated[Optional[float], typer.Option(
    "--gpu-memory-utilization", help="Fraction of GPU memory the engine may use (vLLM default 0.9).")]
AllowLongOpt = Annotated[bool, typer.Option(
    "--allow-long-context", help="Allow prompt + output longer than the model's max_seq_len.")]


EngineOpt = Annotated[Optional[str], typer.Option(
    "--engine", help="Serving engine profile: vllm | sglang | trtllm | tgi | lmdeploy | llama.cpp | hf-generate | gpt-fast "
                     "| hf-generate-compiled, or an older release line: vllm-0.6 | vllm-0.2 | trtllm-0.6 | trtllm-0.14 |"
                     " lmdeploy-0.1 "
                     "(catalog/data/engines.yaml; default: the generic catalog knobs).")]
EngineOptOpt = Annotated[Optional[list[str]], typer.Option(
    "--engine-opt", help="Override one engine field, FIELD=VALUE (repeatable), e.g. max_num_seqs=128, "
                         "chunked_prefill=false, speculative.num_tokens=4, admission=finish-order (SGLang with "
                         "--disable-radix-cache and clients that ignore EOS).")]
TraceOpt = Annotated[Optional[str], typer.Option(
    "--trace", help="Request trace: JSONL or CSV with input/output token lengths per request (input_len/prompt_tokens, "
                    "output_len/completion_tokens; optional arrival_s).")]
RequestsOpt = Annotated[Optional[int], typer.Option(
    "--requests", help="Requests to simulate (default 2000 for infer, 800 per sizing run for serve-plan).")]

MAJOR_CLOUDS = ("aws", "gcp", "azure")


def ttft_scope(knobs) -> str:
    """What the TTFT and end-to-end figures include of the API server's own time per request."""
    from sizeup.core.inference import api_server_s

    api = api_server_s(knobs)
    if not knobs.api_server:
        return ("TTFT counts the engine's scheduling and GPU work only: the engine runs in-process, with no API "
                "server in front of it")
    what = ("HTTP, chat template, tokenization, streaming; published light-load runs showed about 8 ms for TensorRT-LLM "
            "behind Triton to 50 ms for vLLM 0.11's chat endpoint")
    if api > 0:
        return (f"TTFT and end-to-end latency include {api * 1e3:.3g} ms of API-server time per request ({what}); the "
                "value is the active calibration's api_server_ttft_s (docs/methodology.md, 'Serving knobs fitted on "
                "the serving rows'); --engine-opt api_server=false for in-process use")
    return (f"TTFT counts the engine's scheduling and GPU work, not the API server's own time per request ({what}); "
            "no single value carried over between engines under leave-one-source-out, so the packaged calibration "
            "leaves api_server_ttft_s at 0: set it in a calibration profile (--calibration FILE) to add your "
            "server's time")


COST_RULE = ("$/1M tokens = price x GPUs x hours of the simulated run (idle included) / tokens served; the GPU time of "
             "prompt work is charged to input tokens, decode work to output tokens (a mixed step splits its weight "
             "and communication time by token count, attention by who causes it)")


def parse_engine(name: str | None, opts: list[str] | None, gpu, arch, base_knobs, tp: int = 1):
    """(EngineProfile for this GPU with --engine-opt applied, ServingKnobs at tensor-parallel degree `tp`). No
    engine and no options -> the generic profile and the catalog knobs unchanged."""
    from sizeup.catalog.engines import engine_profile

    prof = engine_profile(name).for_gpu(gpu)
    overrides: dict[str, str] = {}
    for item in opts or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise SizeupError(f"--engine-opt {item!r}: give FIELD=VALUE, e.g. max_num_seqs=128")
        overrides[key.strip()] = value.strip()
    if overrides:
        prof = prof.with_overrides(overrides)
    if name is None and not overrides:
        return prof, base_knobs
    return prof, prof.knobs(base_knobs, arch.num_layers, tp)


def read_trace(path: str):
    """(prompt lengths, output lengths, arrival times or None) from a JSONL or CSV request trace."""
    import csv
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise SizeupError(f"--trace {path!r} not found")
    in_keys = ("input_len", "prompt_len", "input_tokens", "prompt_tokens", "isl", "input_length")
    out_keys = ("output_len", "output_tokens", "completion_tokens", "osl", "max_tokens", "output_length")
    t_keys = ("arrival_s", "timestamp", "arrival_time")
    rows: list[dict] = []
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise SizeupError(f"--trace {path}: cannot read ({type(exc).__name__})") from None
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson") or text.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise SizeupError(f"--trace {path}: line {n} is not JSON") from None
            if not isinstance(obj, dict):
                raise SizeupError(f"--trace {path}: line {n} is not a JSON object")
            rows.append(obj)
    else:
        rows = list(csv.DictReader(text.splitlines()))

    def pick(row: dict, keys, n: int, required: bool):
        for k in keys:
            if k in row and row[k] not in (None, ""):
                try:
                    v = float(row[k])
                except (TypeError, ValueError):
                    raise SizeupError(f"--trace {path}: request {n}: {k}={row[k]!r} is not a number") from None
                if not np.isfinite(v) or v < (1 if required else 0) or (required and v != int(v)):
                    raise SizeupError(f"--trace {path}: request {n}: {k}={row[k]!r} must be a whole number >= 1"
                                      if required else f"--trace {path}: request {n}: {k} must be >= 0")
                return v
        if required:
            raise SizeupError(f"--trace {path}: request {n} has none of {', '.join(keys)}")
        return None

    if not rows:
        raise SizeupError(f"--trace {path}: no requests")
    pl = np.array([pick(r, in_keys, i + 1, True) for i, r in enumerate(rows)], dtype=np.int64)
    ol = np.array([pick(r, out_keys, i + 1, True) for i, r in enumerate(rows)], dtype=np.int64)
    ts = [pick(r, t_keys, i + 1, False) for i, r in enumerate(rows)]
    arrivals = None
    if all(t is not None for t in ts):
        a = np.array(ts, dtype=float)
        arrivals = np.sort(a - a.min())
    return pl, ol, arrivals


def default_price(catalog, gpu, platform: str | None, pricing: str | None, override: float | None):
    """(USD per GPU-hour, description, platform id) for $/token: --price-per-gpu-hour; else --platform's offer;
    else the on-demand price of a major cloud (AWS, then GCP, then Azure) for this GPU. Marketplace and
    neocloud prices are used only when asked for with --platform."""
    if override is not None or platform:
        price, note = gpu_price(catalog, gpu, platform, pricing, override)
        return price, note, (platform or "user")
    if not hasattr(catalog, "offers"):
        return None, "no prices in the catalog; pass --price-per-gpu-hour", None
    kind = pricing or "on-demand"
    for cloud in MAJOR_CLOUDS:
        try:
            offers = catalog.offers(cloud, gpu.id, kind, strict=False)
        except SizeupError:
            continue
        if offers:
            o = offers[0]
            return (o.price_usd_per_gpu_hour,
                    f"{o.platform} {o.instance} {o.pricing}, ${o.price_usd_per_gpu_hour:.2f}/GPU-h as of {o.price_as_of} "
                    f"(default: the first major cloud - AWS, GCP, Azure - renting {gpu.id}; --platform for others)",
                    o.platform)
    return (None, f"no AWS/GCP/Azure {kind} price for {gpu.id} in the catalog; pass --platform (e.g. a marketplace) "
                  "or --price-per-gpu-hour", None)


def _cut_note(lengths: "RequestLengths", wl, max_seq_len: int) -> str:
    """How many simulated requests were cut to the model's context (their drawn or stated lengths exceed it)."""
    if lengths.source == "trace":
        cut = int(np.count_nonzero((wl.prompt_len != lengths.prompt[:wl.n]) | (wl.output_len != lengths.output[:wl.n])))
    else:
        cut = int(np.count_nonzero(wl.prompt_len + wl.output_len >= max_seq_len))
    return (f"; {cut:,} of {wl.n:,} requests were cut to the model's {max_seq_len:,}-token context "
            "(--allow-long-context keeps them)" if cut else "")


@dataclass(frozen=True)
class RequestLengths:
    """The requests' lengths, from one of: --prompt-len/--output-len (fixed or log-normal) or a --trace file
    (per-request arrays and optional arrival times). `prompt`/`output` are what the simulator draws from."""

    prompt: Any
    output: Any
    arrivals: Any = None
    source: str = "flags"

    @property
    def varies(self) -> bool:
        return self.source == "trace" or self.prompt.varies or self.output.varies

    def spread(self, which: str):
        """The p50 / p95 of the prompt or output lengths (a trace's empirical ones) as a LengthDist."""
        from sizeup.core.inference import LengthDist

        x = self.prompt if which == "prompt" else self.output
        if self.source == "trace":
            return LengthDist(float(np.percentile(x, 50)), float(np.percentile(x, 95)))
        return x

    def mean(self, which: str) -> float:
        x = self.prompt if which == "prompt" else self.output
        if self.source == "trace":
            return float(np.mean(x))
        return float(x.mean)

    def to_dict(self) -> dict:
        out: dict = {"source": self.source, "varies": self.varies}
        for which in ("prompt", "output"):
            d = self.spread(which)
            out[which] = {"p50": float(d.p50), "p95": float(d.p95), "mean": self.mean(which)}
        return out

    def check_context(self, arch) -> None:
        """One line and exit 2 when the p95 prompt + p95 output (the lengths themselves when fixed) exceed the
        model's context."""
        p95_in, p95_out = self.spread("prompt").p95, self.spread("output").p95
        if p95_in + p95_out <= arch.max_seq_len:
            return
        if self.varies:
            raise SizeupError(f"p95 prompt {p95_in:,.0f} + p95 output {p95_out:,.0f} tokens exceeds {arch.id}'s "
                              f"max_seq_len {arch.max_seq_len}; pass --allow-long-context to go on")
        s, n = int(p95_in), int(p95_out)
        raise SizeupError(f"prompt {s} + output {n} = {s + n} tokens exceeds {arch.id}'s max_seq_len "
                          f"{arch.max_seq_len}; shorten them or pass --allow-long-context")

    def describe(self) -> str:
        if self.source == "trace":
            return f"the trace's {len(self.prompt):,} requests"
        def one(d) -> str:
            return f"p50 {d.p50:,.0f} / p95 {d.p95:,.0f}" if d.varies else f"{d.p50:,.0f}"
        return f"prompt {one(self.prompt)}, output {one(self.output)} tokens (log-normal)"


def request_lengths(prompt_len: str | None, output_len: str | None, trace: str | None) -> RequestLengths:
    """Lengths from the flags or from a trace, never both (a trace states every request's lengths)."""
    if trace:
        if prompt_len is not None or output_len is not None:
            raise SizeupError("--trace gives every request's lengths; drop --prompt-len/--output-len (or the trace)")
        pl, ol, arrivals = read_trace(trace)
        return RequestLengths(pl, ol, arrivals, "trace")
    return RequestLengths(parse_length_dist("prompt-len", prompt_len, 512),
                          parse_length_dist("output-len", output_len, 128))


def load_workload(n: int, lengths: RequestLengths, rps: float | None, concurrency: int | None, max_len: int | None):
    """The simulated requests: the trace's lengths (and arrivals, unless --rps/--concurrency is given), or n
    requests drawn from the length distributions; Poisson at --rps, else closed-loop at `concurrency`."""
    from sizeup.core.serving_sim import Workload, make_workload

    if lengths.source == "trace":
        pl, ol, arrivals = lengths.prompt, lengths.output, lengths.arrivals
        if rps is None and concurrency is None and arrivals is not None:
            return Workload(pl, ol, arrivals, None, len(pl) / max(float(arrivals[-1]), 1e-9)), "trace arrivals"
        return make_workload(len(pl), pl, ol, rate_rps=rps, concurrency=None if rps else concurrency,
                             max_total_len=max_len), ("trace lengths, " + (f"Poisson {rps:g} req/s" if rps else
                                                                           f"{concurrency} concurrent clients"))
    wl = make_workload(n, lengths.prompt, lengths.output, rate_rps=rps, concurrency=None if rps else concurrency,
                       max_total_len=max_len if lengths.varies else None)
    return wl, ((f"Poisson arrivals at {rps:g} req/s" if rps else f"{concurrency} concurrent clients (closed loop)")
                + (f"; {lengths.describe()}" if lengths.varies else ""))


def _plan_intervals(opt: dict, rps: float, tp: int, price: float | None) -> dict:
    """P10/P50/P90 of a feasible serve-plan option: latencies and $/token as `infer` gives them
    (pipeline.serving_intervals), and the replicas (and $/month) needed if the true per-replica capacity is
    max_rps_per_replica x the inference_rate factor (P10 replicas at the rate's P90, P90 replicas at its P10)."""
    import math

    from sizeup.pipeline import serving_intervals

    iv = serving_intervals(tp, {
        "max_rps_per_replica": ("rate", opt["max_rps_per_replica"]), "ttft_p95_s": ("time", opt["ttft_p95_s"]),
        "tpot_p95_s": ("time", opt["tpot_p95_s"]),
        "usd_per_1m_input_tokens": ("cost", opt.get("usd_per_1m_input_tokens")),
        "usd_per_1m_output_tokens": ("cost", opt.get("usd_per_1m_output_tokens"))})
    cap = iv.get("max_rps_per_replica")
    if cap and min(cap["p10"], cap["p50"], cap["p90"]) > 0:
        # more capacity, fewer replicas: the replicas' P10 comes from the capacity's P90 and vice versa
        reps = {q: max(1, math.ceil(rps / cap[c] - 1e-9)) for q, c in (("p10", "p90"), ("p50", "p50"), ("p90", "p10"))}
        reps["interval_regime"] = cap.get("interval_regime")
        iv["replicas"] = reps
        if price is not None:
            iv["usd_per_month"] = {q: reps[q] * tp * price * 730.0 for q in ("p10", "p50", "p90")} | {
                "interval_regime": cap.get("interval_regime")}
    return iv


def sim_rows(res) -> list:
    def ms(x: float) -> str:
        return f"{x * 1e3:,.1f} ms"

    s = res.summary()
    return [
        ("TTFT", ms(s["ttft_p50_s"]), ms(s["ttft_p90_s"]), ms(s["ttft_p99_s"])),
        ("TPOT (per request)", ms(s["tpot_p50_s"]), ms(s["tpot_p90_s"]), ms(s["tpot_p99_s"])),
        ("ITL (per token)", ms(s["itl_p50_s"]), ms(s["itl_p90_s"]), ms(s["itl_p99_s"])),
        ("end-to-end latency", f"{s['e2e_p50_s']:,.2f} s", f"{s['e2e_p90_s']:,.2f} s", f"{s['e2e_p99_s']:,.2f} s"),
    ]


def sim_terms(prefix: str, res, load_text: str, engine) -> list:
    from sizeup.core.explain import Term

    s = res.summary()
    src = ("sizeup.core.serving_sim: step-level simulation of the engine scheduler (Orca iteration-level batching; "
           "Sarathi-Serve chunked prefill; vLLM recompute preemption), each step timed by the roofline step model")
    ins = {"load": load_text, "engine": engine.id, "requests": res.n_requests, "steps": res.steps,
           "preemptions": res.preemptions, "mean_running": round(res.running_mean, 2),
           "mean_queued": round(res.queue_mean, 2)}
    out = []
    for what, label in (("ttft", "time to first token"), ("tpot", "(e2e - ttft)/(n - 1) per request"),
                        ("itl", "gap between tokens, over all tokens"), ("e2e", "arrival to last token")):
        for q in (50, 90, 99):
            out.append(Term(f"{prefix}load/{what}_p{q}", s[f"{what}_p{q}_s"], "s", f"p{q} over simulated requests: {label}",
                            ins, src))
    out += [Term(f"{prefix}load/output_tokens_per_s", res.output_tokens_per_s, "tokens/s", "output tokens / makespan",
                 {"output_tokens": res.output_tokens, "makespan_s": res.duration_s}, src),
            Term(f"{prefix}load/request_throughput", res.request_throughput_rps, "requests/s", "completed / makespan",
                 {"completed": res.completed, "makespan_s": res.duration_s}, src),
            Term(f"{prefix}load/gpu_utilization", res.gpu_utilization, "fraction", "busy GPU time / makespan",
                 {"busy_s": res.busy_s, "makespan_s": res.duration_s}, src)]
    return out


def cost_terms(prefix: str, cost, res, price_note: str) -> list:
    from sizeup.core.explain import Term

    ins = {"price": cost.price_usd_per_gpu_hour, "gpus": cost.gpus, "run_s": res.duration_s, "busy_s": res.busy_s,
           "prefill_s": res.prefill_gpu_s, "input_tokens": res.input_tokens, "output_tokens": res.output_tokens}
    return [Term(f"{prefix}cost/usd_per_1m_input_tokens", cost.usd_per_1m_input_tokens, "USD",
                 "price*gpus*run_h * prefill_s/busy_s / input_tokens * 1e6", ins, COST_RULE + "; price: " + price_note),
            Term(f"{prefix}cost/usd_per_1m_output_tokens", cost.usd_per_1m_output_tokens, "USD",
                 "price*gpus*run_h * (1 - prefill_s/busy_s) / output_tokens * 1e6", ins,
                 COST_RULE + "; price: " + price_note)]


# --------------------------------------------------------------------------- shared parsing


def shown_terms(est, knobs, price: float | None, price_note: str, batch_given: bool = False,
                clients: bool = False) -> list:
    """Terms for the figures `sizeup infer` prints that the core estimate does not explain itself (`clients`: the
    batch came from --concurrency, capped at what runs at once)."""
    from sizeup.core.explain import Term

    batch_rule = ("min(--concurrency, max_concurrency, max_num_seqs)" if clients else
                  "--batch / --concurrency" if batch_given else "max(1, min(max_concurrency, max_num_seqs))")
    out = [
        Term("weights/bytes_per_gpu", est.weights_bytes_per_gpu, "B", "W / (tp * pp)",
             {"W": est.weights_bytes, "tp": est.tp, "pp": est.pp}, "weights sharded evenly over TP ranks and PP stages"),
        Term("serve/batch", float(est.batch), "sequences", batch_rule,
             {"max_concurrency": est.max_concurrency, "max_num_seqs": knobs.max_num_seqs},
             "vLLM scheduler: --max-num-seqs caps the running batch"),
        Term("time/e2e_latency", est.e2e_latency_s, "s", "ttft + (n - 1) * tpot",
             {"ttft": est.ttft_s, "n": est.output_len, "tpot": est.tpot_s}, "one request: prefill, then n-1 decode steps"),
        Term("throughput/output_tokens_per_s_per_gpu", est.output_tokens_per_s_per_gpu, "tokens/s",
             "output_tokens_per_s / gpus", {"output_tokens_per_s": est.output_tokens_per_s, "gpus": est.gpus},
             "replica throughput split over its GPUs"),
        Term("throughput/output_tokens_per_s_per_request", est.output_tokens_per_s_per_request, "tokens/s",
             "1 / tpot", {"tpot": est.tpot_s}, "each running request gets one token per decode step"),
    ]
    if est.compute_bound_batch is not None:
        out.append(Term("serve/compute_bound_batch", float(est.compute_bound_batch), "sequences",
                        "smallest B with gemm_compute(B) >= gemm_weight_reads", {"B_limit": 65536},
                        "decode roofline (Williams et al. 2009; Pope et al. 2022): weight reads are shared by the batch"))
    if price is not None:
        out.append(Term("price/usd_per_gpu_hour", price, "USD/GPU-h", "catalog or --price-per-gpu-hour",
                        {"choice": price_note}, price_note))
    return out


def option_terms(options, rps: float, pl, ol) -> list:
    """One set of Terms per feasible serve-plan row (named '<gpu> tp<t>: ...'): the figures its columns show."""
    from sizeup.core.explain import Term

    src = "sizeup.core.inference.plan_replica: roofline prefill/decode (Pope et al. 2022), continuous batching (Orca)"
    out = []
    for o in options:
        if not o.feasible:
            continue
        k = f"{o.gpu_id} tp{o.tp}"
        out += [
            Term(f"{k}: serve/concurrency_per_replica", float(o.concurrency_per_replica), "sequences",
                 "largest C <= min(KV memory limit, max_num_seqs) meeting the TTFT/TPOT targets",
                 {"binding": o.binding}, src),
            Term(f"{k}: fleet/replicas", float(o.replicas), "replicas", "max(1, ceil(rps / X(C)))",
                 {"rps": rps, "X": o.requests_per_s_per_replica, "C": o.concurrency_per_replica}, src),
            Term(f"{k}: fleet/gpus", float(o.gpus), "GPUs", "replicas * tp", {"replicas": o.replicas, "tp": o.tp}, src),
            Term(f"{k}: time/ttft_p95", o.ttft_p95_s, "s", "prefill(s_p95) + step(C_op, s_p95 + n_p95)",
                 {"s_p95": pl.p95, "n_p95": ol.p95, "C_op": o.operating_concurrency}, src),
            Term(f"{k}: time/tpot_p95", o.tpot_p95_s, "s", "step(C_op, s_p95 + n_p95)",
                 {"s_p95": pl.p95, "n_p95": ol.p95, "C_op": o.operating_concurrency}, src),
        ]
        if o.usd_per_hour is not None:
            out += [
                Term(f"{k}: fleet/usd_per_hour", o.usd_per_hour, "USD/h", "gpus * price",
                     {"gpus": o.gpus, "price": o.price_usd_per_gpu_hour}, "price: catalog or --price-per-gpu-hour"),
                Term(f"{k}: fleet/usd_per_month", o.usd_per_month, "USD", "usd_per_hour * 730 h",
                     {"usd_per_hour": o.usd_per_hour}, "730 h = 8760/12"),
            ]
    return out


def check_layout(arch, tp: int | None, pp: int, ep: int = 1) -> None:
    """Serving engines (vLLM, SGLang, TensorRT-LLM) shard attention heads over TP ranks, layers over PP stages and,
    with expert parallelism, a MoE model's experts over ep groups inside the TP group (tp None: not chosen yet)."""
    from sizeup.core.inference import check_decoder_only, check_expert_parallel

    check_decoder_only(arch)
    check_expert_parallel(arch, ep, tp)
    if tp is None:
        return
    if arch.num_heads % tp:
        ok = [t for t in range(1, arch.num_heads + 1) if arch.num_heads % t == 0 and t <= 64]
        raise SizeupError(f"--tp {tp} must divide {arch.id}'s {arch.num_heads} attention heads; "
                          f"allowed: {', '.join(map(str, ok))}")
    if pp > arch.num_layers:
        raise SizeupError(f"--pp {pp} cannot exceed {arch.id}'s {arch.num_layers} layers")


def serving_values(target: str | None, model: str | None, given: dict,
                   gpu_list: bool = False) -> tuple[str | None, dict]:
    """The model and the serving values of `infer` / `serve-plan`: a scenario file's serving keys (the serving part of
    scenario.OTHER_KEYS, the flags' own names) under the flags that were given. A switch left off (False) is 'not
    given', so a file's `static: true` holds; `engine_opt` may be a mapping in the file; a latency target given as a
    number is seconds; with `gpu_list` (serve-plan compares GPU kinds) a file's list of GPUs is kept whole."""
    from sizeup.commands.common import from_scenario

    given = {k: (None if v is False or v == [] else v) for k, v in given.items()}
    name, vals = from_scenario(pick_target(target, model), given, whole_lists=("gpu",) if gpu_list else ())
    if isinstance(vals.get("engine_opt"), dict):
        vals["engine_opt"] = [f"{k}={v}" for k, v in vals["engine_opt"].items()]
    for key in ("ttft_p95", "tpot_p95", "ttft_p50", "tpot_p50"):
        if isinstance(vals.get(key), (int, float)) and not isinstance(vals.get(key), bool):
            vals[key] = f"{vals[key]}s"
    for key in ("static", "allow_long_context"):
        vals[key] = bool(vals.get(key))
    return name, vals


def parse_tokens(name: str, value: str | None, default: int) -> int:
    from sizeup.units import parse_count

    if value is None:
        return default
    try:
        n = parse_count(str(value))
    except Exception:
        raise SizeupError(f"--{name} must be a token count like 512 or 2K, got {value!r}") from None
    if n != int(n) or n < 1:
        raise SizeupError(f"--{name} must be a whole number of tokens >= 1, got {value!r}")
    return int(n)


def parse_length_dist(name: str, value: str | None, default: int):
    """'512' -> fixed; 'p50=512,p95=2048' -> percentiles (p95 >= p50); 'mean=730,p95=2048' -> the log-normal with
    that mean and p95 (LengthDist.from_mean)."""
    from sizeup.core.inference import LengthDist

    if value is None:
        return LengthDist.fixed(default)
    text = str(value).strip()
    if "=" not in text:
        return LengthDist.fixed(parse_tokens(name, text, default))
    parts: dict[str, int] = {}
    for item in text.split(","):
        key, _, num = item.partition("=")
        key = key.strip().lower()
        if key not in ("p50", "p95", "mean"):
            raise SizeupError(f"--{name}: unknown percentile {key!r}; give p50=...,p95=... (or a single number)")
        parts[key] = parse_tokens(name, num.strip(), default)
    if "p50" in parts and "mean" in parts:
        raise SizeupError(f"--{name}: give p50=... or mean=..., not both")
    if "mean" in parts:
        mean = parts["mean"]
        return LengthDist.from_mean(float(mean), float(parts.get("p95", mean)))
    p50 = parts.get("p50")
    if p50 is None:
        raise SizeupError(f"--{name}: give at least p50=..., e.g. p50=512,p95=2048")
    p95 = parts.get("p95", p50)
    if p95 < p50:
        raise SizeupError(f"--{name}: p95 ({p95}) must be >= p50 ({p50})")
    return LengthDist(float(p50), float(p95))


def parse_weights(value: str | None):
    from sizeup.commands.common import parse_choice
    from sizeup.core.inference import WEIGHT_ALIASES, WeightDtype

    return parse_choice("weight precision (--weights)", value, WeightDtype, WEIGHT_ALIASES) or WeightDtype.BF16


def parse_kv(value: str | None, weights):
    from sizeup.commands.common import parse_choice
    from sizeup.core.inference import KV_ALIASES, KvDtype

    kv = parse_choice("KV-cache dtype (--kv-dtype)", value, KvDtype, KV_ALIASES)
    if kv is not None:
        return kv
    return KvDtype.FP16 if str(weights) == "fp16" else (KvDtype.FP32 if str(weights) == "fp32" else KvDtype.BF16)


def resolve_gpu(name: str | None, catalog):
    if not name:
        name = "h100-sxm"
    if not hasattr(catalog, "gpu"):
        raise SizeupError("the GPU catalog is not available in this build")
    try:
        from sizeup.units import parse_bytes

        parse_bytes(name)
    except Exception:
        return catalog.gpu(name)
    raise SizeupError(f"--gpu {name!r} is a memory size; inference needs a GPU kind from the catalog "
                      "(bandwidth and FLOP/s), e.g. --gpu a100-80gb. Run 'sizeup gpus' for the list")


def gpu_price(catalog, gpu, platform: str | None, pricing: str | None, override: float | None):
    """(USD per GPU-hour, description) from --price-per-gpu-hour, --platform, or the cheapest catalog offer."""
    if override is not None:
        if override < 0:
            raise SizeupError(f"--price-per-gpu-hour must be >= 0, got {override}")
        return override, "--price-per-gpu-hour"
    kind = pricing or "on-demand"
    if platform and not hasattr(catalog, "offers"):
        raise SizeupError("platform prices are not available in this build; pass --price-per-gpu-hour")
    if not hasattr(catalog, "offers"):
        return None, "no prices in the catalog; pass --price-per-gpu-hour"
    offers = catalog.offers(platform, gpu.id, kind, strict=bool(platform))
    if not offers:
        return None, f"no {kind} price in the catalog for {gpu.id}; pass --price-per-gpu-hour"
    o = offers[0]  # cheapest per GPU first
    where = f"{o.platform} {o.instance}" if platform else f"cheapest in the catalog: {o.platform} {o.instance}"
    return o.price_usd_per_gpu_hour, f"{where}, {o.pricing}, ${o.price_usd_per_gpu_hour:.2f}/GPU-h as of {o.price_as_of}"


def _fmt_bytes(b: float) -> str:
    from sizeup.units import format_bytes

    try:
        return format_bytes(b)
    except Exception:
        return f"{b / 2**30:.2f} GiB"


# --------------------------------------------------------------------------- infer

ServeEpOpt = Annotated[Optional[int], typer.Option(
    "--ep", help="Expert-parallel degree of a MoE model's experts inside the TP group (divides --tp and the expert "
                 "count; default 1: every expert split over the TP ranks).")]


@job_command("infer", refuse=refusals_except(['target', 'model', 'gpu', 'gpus', 'tp', 'pp', 'ep', 'weights', 'kv_dtype', 'prompt_len', 'output_len', 'batch', 'concurrency', 'rps', 'engine', 'engine_opt', 'trace', 'requests', 'static', 'platform', 'pricing', 'price_per_gpu_hour', 'gpu_memory_utilization', 'allow_long_context', 'json_', 'csv_', 'markdown', 'explain', 'plot'], "a serving estimate has no training workload, optimizer, sharding, recompute or adapters; this is a training field ('sizeup train' takes it)"))
def infer_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    gpu: GpuOpt = None,
    gpus: GpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    ep: ServeEpOpt = None,
    weights: WeightsOpt = None,
    kv_dtype: KvDtypeOpt = None,
    prompt_len: PromptLenOpt = None,
    output_len: OutputLenOpt = None,
    batch: BatchOpt = None,
    concurrency: ConcurrencyOpt = None,
    rps: Annotated[Optional[float], typer.Option("--rps", help="Simulate Poisson arrivals at this request rate instead of a fixed concurrency.")] = None,
    engine: EngineOpt = None,
    engine_opt: EngineOptOpt = None,
    trace: TraceOpt = None,
    requests: RequestsOpt = None,
    static: StaticOpt = False,
    platform: PlatformOpt = None,
    pricing: PricingOpt = None,
    price_per_gpu_hour: PricePerGpuHourOpt = None,
    gpu_memory_utilization: GpuMemUtilOpt = None,
    allow_long_context: AllowLongOpt = False,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    plot: PlotOpt = None,
    calibration: CalibrationOpt = None,
    no_calibration: NoCalibrationOpt = False,
    flags: dict = None,
) -> None:
    """Size one inference replica: weights, KV cache, max concurrency, TTFT/TPOT, tokens/s and $/1M tokens.

    Latency and throughput are the closed-form answer at one batch; the load section simulates the engine's
    scheduler (default: --concurrency/--batch clients, else the memory-limited batch; or --rps Poisson arrivals),
    and $/1M tokens come from that simulated load.

    Examples:

      sizeup infer llama-2-7b --gpu a100-80gb

      sizeup infer llama-3-70b --gpu h100 --tp 4 --weights fp8 --kv-dtype fp8 --prompt-len 2048 --output-len 256

      sizeup infer llama-3-8b --gpu h100 --engine vllm --rps 10 --prompt-len 1024 --output-len 256

      sizeup infer mistral-7b --gpu l4 --weights int4 --concurrency 32 --price-per-gpu-hour 0.8 --json
    """
    from sizeup.catalog import load_catalog, resolve_model
    from sizeup.core.inference import ServeSetup, estimate_inference, fit_fixes, graph_fallback
    from sizeup.core.serving_sim import Scheduler, SimInfeasible, sim_token_cost, simulate
    from sizeup.report import Report, Table
    from sizeup.catalog.knobs import load_serving_knobs

    from sizeup.calib import use_from_flags

    # the serving GEMMs' in-model fraction and the intervals come from the calibration profile (default: packaged)
    use_from_flags(calibration, no_calibration)
    name, vals = serving_values(target, model, dict(
        gpu=gpu, gpus=gpus, tp=tp, pp=pp, ep=ep, platform=platform, pricing=pricing, rps=rps, concurrency=concurrency,
        engine=engine, weights=weights, kv_dtype=kv_dtype, prompt_len=prompt_len, output_len=output_len, batch=batch,
        engine_opt=engine_opt, trace=trace, requests=requests, static=static,
        gpu_memory_utilization=gpu_memory_utilization, allow_long_context=allow_long_context))
    (gpu, gpus, tp, pp, ep, platform, pricing, rps, concurrency, engine, weights, kv_dtype, prompt_len, output_len,
     batch, engine_opt, trace, requests, static, gpu_memory_utilization, allow_long_context) = (vals.get(k) for k in (
        "gpu", "gpus", "tp", "pp", "ep", "platform", "pricing", "rps", "concurrency", "engine", "weights", "kv_dtype",
        "prompt_len", "output_len", "batch", "engine_opt", "trace", "requests", "static", "gpu_memory_utilization",
        "allow_long_context"))
    if not name:
        raise SizeupError("give a model: a preset id (see 'sizeup models'), a path to config.json or a scenario .yaml")
    for flag, val in (("tp", tp), ("pp", pp), ("ep", ep), ("gpus", gpus), ("batch", batch),
                      ("concurrency", concurrency), ("requests", requests)):
        positive(flag, val)
    if batch is not None and concurrency is not None and batch != concurrency:
        raise SizeupError(f"--batch {batch} and --concurrency {concurrency} disagree; give one")
    if rps is not None and not (rps > 0 and rps < float("inf")):
        raise SizeupError(f"--rps must be a finite number > 0 requests per second, got {rps}")
    if gpu_memory_utilization is not None and not (0 < gpu_memory_utilization <= 1):
        raise SizeupError(f"--gpu-memory-utilization must be in (0, 1], got {gpu_memory_utilization}")
    catalog = load_catalog()
    arch = resolve_model(name)
    w = parse_weights(weights)
    kv = parse_kv(kv_dtype, w)
    lengths = request_lengths(prompt_len, output_len, trace)
    # the closed form sizes one batch at the mean lengths (they keep the token totals); the simulated load draws
    # (or, from a trace, takes) every request's own lengths
    s = max(1, int(round(lengths.mean("prompt"))))
    n = max(1, int(round(lengths.mean("output"))))
    from sizeup.core.inference import check_decoder_only

    check_decoder_only(arch)
    if not allow_long_context:
        lengths.check_context(arch)
    tp_ = tp or (gpus // (pp or 1) if gpus else 1)
    pp_ = pp or 1
    if gpus is not None and gpus != tp_ * pp_:
        raise SizeupError(f"--gpus {gpus} must equal --tp x --pp = {tp_ * pp_} for one replica "
                          "(use 'sizeup serve-plan' to size several replicas)")
    if tp_ < 1:
        raise SizeupError(f"--gpus {gpus} is smaller than --pp {pp_}")
    ep_ = int(ep or 1)
    check_layout(arch, tp_, pp_, ep_)
    g = resolve_gpu(gpu, catalog)
    knobs = load_serving_knobs(catalog)
    if gpu_memory_utilization is not None:
        knobs = knobs.with_(gpu_memory_utilization=gpu_memory_utilization)
    prof, knobs = parse_engine(engine, engine_opt, g, arch, knobs, tp_)
    if static and prof.batching != "static":
        prof = prof.with_overrides({"batching": "static"})
    price, price_note, price_platform = default_price(catalog, g, platform, pricing, price_per_gpu_hour)
    given = batch if batch is not None else concurrency
    # --concurrency counts clients: a continuous-batching engine runs as many of them as its KV memory and
    # max_num_seqs allow and queues the rest (their wait is in the simulated TTFT), so more clients than fit is a
    # load, not a misfit. --batch (and a static batch) is sequences decoded together: those must fit.
    clients_only = batch is None and concurrency is not None and prof.batching != "static"
    setup = ServeSetup(tp=tp_, pp=pp_, weights=w, kv_dtype=kv, prompt_len=s, output_len=n,
                       batch=None if clients_only else given, static=prof.batching == "static", ep=ep_)
    est = estimate_inference(arch, g, setup, knobs, None)
    queued_note = None
    if clients_only and est.fits:
        running = min(int(concurrency), est.batch)
        if concurrency > running and rps is None:
            queued_note = (f"{concurrency:,} concurrent clients, at most {running:,} sequences in flight at once "
                           f"(min(memory limit {est.max_concurrency:,}, max_num_seqs {knobs.max_num_seqs:,})); "
                           "the rest wait in the engine's queue: the closed form is that batch, and the simulated "
                           "load queues every client beyond it (its TTFT includes the wait)")
        setup = setup.with_(batch=running)
        est = estimate_inference(arch, g, setup, knobs, None)
    engine_note = f"engine: {prof.describe()}"
    mean_tag = " (mean)" if lengths.varies else ""
    longest_misfit = False
    wl = load_text = None
    if est.fits:
        clients = given if given is not None else est.batch
        wl, load_text = load_workload(requests or 2000, lengths, rps, clients if rps is None else None,
                                      arch.max_seq_len if not allow_long_context else None)
        if lengths.varies:
            # a spread of lengths fits only if its longest request does, alone on the replica
            i = int(np.argmax(wl.prompt_len + wl.output_len))
            long_setup = setup.with_(prompt_len=int(wl.prompt_len[i]), output_len=int(wl.output_len[i]), batch=1)
            long_est = estimate_inference(arch, g, long_setup, knobs, None)
            if not long_est.fits:
                setup, est, mean_tag, longest_misfit = long_setup, long_est, " (the longest request)", True
                s, n = long_setup.prompt_len, long_setup.output_len

    rows = [
        ("weights (total)", _fmt_bytes(est.weights_bytes), f"{est.weights_dtype}"),
        ("weights per GPU", _fmt_bytes(est.weights_bytes_per_gpu), f"tp={tp_} pp={pp_}"),
        ("KV cache per token (whole model)", f"{est.kv_cache_bytes_per_token:,.0f} B", est.kv_dtype),
        ("KV cache per sequence per GPU", _fmt_bytes(est.kv_cache_bytes_per_sequence),
         f"{s + n:,} tokens{mean_tag}, paged"),
        ("KV budget per GPU", _fmt_bytes(max(est.kv_budget_bytes_per_gpu, 0.0)),
         f"{knobs.gpu_memory_utilization:.0%} of {_fmt_bytes(g.memory_bytes)} minus weights/activations/graphs"),
        ("max concurrency", f"{est.max_concurrency:,}", f"sequences of {s + n:,} tokens{mean_tag}"),
    ]
    from sizeup.core.inference import kv_bytes_per_token_by_context, window_layers

    ctx_points = sorted({c for c in (1024, 8192, 32768, 131072, s + n) if c <= max(arch.max_seq_len, s + n)})
    kv_by_ctx = kv_bytes_per_token_by_context(arch, kv, ctx_points, tp_, pp_)
    if window_layers(arch):
        rows.insert(3, ("KV per token of context (per GPU)",
                        ", ".join((f"{c // 1024}K" if c % 1024 == 0 else f"{c:,}") + f": {v / 1024:,.1f} KiB"
                                  for c, v in kv_by_ctx.items()),
                        f"{window_layers(arch)} of {arch.num_layers} layers keep only {arch.sliding_window} tokens"))
    base = {"model": arch.id, "gpu": g.id, "engine": prof.id, "engine_profile": prof.describe(),
            "max_seq_len": arch.max_seq_len, "kv_bytes_per_token_by_context": kv_by_ctx,
            "request_lengths": lengths.to_dict()}
    if not est.fits:
        fixes = fit_fixes(arch, g, setup, knobs)
        data = {k: v for k, v in est.to_dict().items()
                if not k.startswith(("ttft", "tpot", "e2e", "output_tokens", "input_tokens", "usd", "decode_",
                                     "compute_bound"))}
        data |= base | {"fits": False, "reasons": list(est.reasons), "fixes": fixes, "ttft_s": None, "tpot_s": None,
                        "e2e_latency_s": None, "output_tokens_per_s": None, "usd_per_1m_input_tokens": None,
                        "usd_per_1m_output_tokens": None, "load": None, "cost": None}
        report = Report(
            data=data,
            tables=[Table(f"{arch.name} on {est.gpus} x {g.name}: does not fit", ["figure", "value", "note"], rows),
                    Table("fixes", ["change"], [(f,) for f in fixes] or [("none found",)])],
            terms=[t for t in est.terms if t.name.startswith(("weights", "kv", "memory", "serve/max"))],
            notes=([f"request lengths vary ({lengths.describe()}); the mean request fits, the longest drawn "
                    f"({s:,} + {n:,} tokens) does not, even alone"] if longest_misfit else [])
            + [f"does not fit: {r}" for r in est.reasons] + ["no latency, throughput or price for a replica that "
                                                               "does not fit"] + [engine_note]
            + ([f"--plot {plot}: nothing drawn; the chart plots latency against throughput, which a replica that "
                "does not fit does not have"] if plot else []),
        )
        emit(report, json_, csv_, markdown, explain)
        return

    # ---------------------------------------------------------------- the load: simulate the engine's scheduler
    sched = Scheduler.from_engine(prof, knobs, est.batch if prof.batching == "static" else None)
    try:
        res = simulate(arch, g, setup, knobs, sched, wl)
    except SimInfeasible as exc:
        raise SizeupError(f"the simulated load cannot be served: {exc}") from None
    cost = sim_token_cost(res, price, est.gpus) if price is not None else None
    summ = res.summary()
    notes = list(est.notes) + ([queued_note] if queued_note else []) + [engine_note, ttft_scope(knobs)]
    if lengths.varies:
        notes.append(f"request lengths vary ({lengths.describe()}): the closed form and the memory table use the mean "
                     f"lengths, {s:,} in + {n:,} out; the simulated load "
                     + ("uses each request's own lengths" if lengths.source == "trace" else
                        "draws each request's lengths")
                     + (_cut_note(lengths, wl, arch.max_seq_len) if not allow_long_context else ""))
    if cost is not None:
        notes.append("$/1M tokens: " + COST_RULE + f"; at the simulated load ({load_text})")
    else:
        notes.append(price_note)
    if bool(graph_fallback(knobs, max(est.batch, summ["mean_running"]))[0]):
        notes.append(f"{prof.name} replays CUDA graphs only up to {knobs.graph_max_tokens} tokens per forward; "
                     "larger decode batches "
                     f"(closed form {est.batch:,}, simulated mean {summ['mean_running']:,.1f} in flight) run eager, "
                     f"{knobs.eager_fallback_launch_s * 1e3:,.1f} ms of host launches per forward, and the slower steps "
                     "keep more requests in flight; --engine-opt cuda_graph_max_batch=N models a larger capture "
                     "(the engine's own setting, e.g. SGLang --cuda-graph-max-bs)")
    if summ["ttft_p50_s"] > 1.2 * est.ttft_s or abs(summ["tpot_p50_s"] - est.tpot_s) > 0.2 * est.tpot_s:
        notes.append(f"under load ({load_text}) the simulated engine gives TTFT p50 {summ['ttft_p50_s'] * 1e3:,.1f} ms "
                     f"and TPOT p50 {summ['tpot_p50_s'] * 1e3:,.2f} ms vs the closed-form {est.ttft_s * 1e3:,.1f} / "
                     f"{est.tpot_s * 1e3:,.2f} ms at batch {est.batch} ("
                     + (f"the load keeps {summ['mean_running']:,.1f} requests in flight on average, fewer than that "
                        "batch; --batch sets the closed form's batch" if summ["mean_running"] < 0.5 * est.batch
                        else "queueing, prefill/decode interference") + ")")
    data = est.to_dict() | base | {
        "price_note": price_note, "price_platform": price_platform, "price_usd_per_gpu_hour": price,
        "load": {"description": load_text, **summ},
        "cost": cost.to_dict() if cost else None,
        "usd_per_hour": cost.usd_per_hour if cost else None,
        "usd_per_month": cost.usd_per_hour * 730.0 if cost else None,
        "usd_per_1m_input_tokens": cost.usd_per_1m_input_tokens if cost else None,
        "usd_per_1m_output_tokens": cost.usd_per_1m_output_tokens if cost else None,
        "utilization": res.gpu_utilization, "fixes": [],
    }
    rows.append(("batch used (closed form)", f"{est.batch:,}", est.batching))
    perf = [
        ("TTFT", f"{est.ttft_s * 1e3:,.1f} ms",
         next(t.formula for t in est.terms if t.name == "time/ttft") + " (no queueing)"),
        ("TPOT", f"{est.tpot_s * 1e3:,.2f} ms", f"decode step at batch {est.batch}, {est.decode_bound}-bound"),
        ("end-to-end latency", f"{est.e2e_latency_s:,.2f} s", f"{s} in + {n} out"),
        ("output tokens/s (replica)", f"{est.output_tokens_per_s:,.0f}", f"{est.gpus} GPU(s)"),
        ("output tokens/s per GPU", f"{est.output_tokens_per_s_per_gpu:,.0f}", ""),
        ("output tokens/s per request", f"{est.output_tokens_per_s_per_request:,.1f}", "1 / TPOT"),
        ("decode turns compute-bound at batch", str(est.compute_bound_batch or "never (<65536)"), "weight GEMMs"),
    ]
    load_rows = sim_rows(res) + [
        ("output tokens/s", f"{res.output_tokens_per_s:,.0f}", "", ""),
        ("requests/s", f"{res.request_throughput_rps:,.2f}", "", ""),
        ("GPU busy", f"{res.gpu_utilization:.0%}", "", ""),
        ("mean running / queued", f"{res.running_mean:,.1f} / {res.queue_mean:,.1f}", "", ""),
        ("preemptions / prompt tokens recomputed",
         f"{res.preemptions:,} / {res.prompt_tokens_recomputed:,}", "", ""),
    ]
    tables = [Table(f"{arch.name} on {est.gpus} x {g.name}: memory", ["figure", "value", "note"], rows, name="memory"),
              Table("closed form (one batch, no queueing)", ["figure", "value", "note"], perf, name="performance"),
              Table(f"under load: {load_text}, {res.n_requests:,} requests, engine {prof.id}",
                    ["figure", "p50", "p90", "p99"], load_rows)]
    if cost is not None:
        tables.append(Table("cost at the simulated load", ["figure", "value", "note"], [
            ("$ per GPU-hour", f"{price:,.3f}", price_note),
            ("$ per 1M input tokens", f"{cost.usd_per_1m_input_tokens:,.4f}",
             f"{cost.input_share_of_gpu_time:.0%} of busy GPU time is prompt work"),
            ("$ per 1M output tokens", f"{cost.usd_per_1m_output_tokens:,.4f}", "decode work"),
            ("$ per hour / month", f"{cost.usd_per_hour:,.2f} / {cost.usd_per_hour * 730:,.0f}", "730 h month"),
        ]))
    report = Report(
        data=data, tables=tables,
        terms=[t for t in est.terms if not t.name.startswith("cost/")]
        + shown_terms(est, knobs, price, price_note, given is not None, clients_only) + sim_terms("", res, load_text, prof)
        + (cost_terms("", cost, res, price_note) if cost else []),
        notes=notes + ([] if gpu else [f"no --gpu given: assumed {g.id}"]),
        warnings=[],
    )
    from sizeup.calib.report import decorate_infer
    from sizeup.pipeline import serving_intervals

    decorate_infer(report, serving_intervals(est.gpus, {
        "ttft_s": ("time", est.ttft_s), "tpot_s": ("time", est.tpot_s), "e2e_latency_s": ("time", est.e2e_latency_s),
        "output_tokens_per_s": ("rate", est.output_tokens_per_s),
        "output_tokens_per_s_per_gpu": ("rate", est.output_tokens_per_s_per_gpu),
        "load_ttft_p50_s": ("time", summ["ttft_p50_s"]), "load_tpot_p50_s": ("time", summ["tpot_p50_s"]),
        "load_itl_p50_s": ("time", summ["itl_p50_s"]), "load_e2e_p50_s": ("time", summ["e2e_p50_s"]),
        "load_output_tokens_per_s": ("rate", res.output_tokens_per_s),
        "usd_per_1m_input_tokens": ("cost", cost.usd_per_1m_input_tokens if cost else None),
        "usd_per_1m_output_tokens": ("cost", cost.usd_per_1m_output_tokens if cost else None)}))
    emit(report, json_, csv_, markdown, explain, plot=plot)


# --------------------------------------------------------------------------- serve-plan


@job_command("serve-plan", refuse=refusals_except(['target', 'model', 'rps', 'prompt_len', 'output_len', 'ttft_p95', 'tpot_p95', 'ttft_p50', 'tpot_p50', 'gpu', 'tp', 'ep', 'weights', 'kv_dtype', 'engine', 'engine_opt', 'trace', 'requests', 'platform', 'pricing', 'price_per_gpu_hour', 'allow_long_context', 'json_', 'csv_', 'markdown', 'explain', 'plot'], 'the serving plan sizes replicas over GPU kinds and tensor parallelism; this training or layout field is not part of a serving plan here'))
def serve_plan_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    rps: Annotated[Optional[float], typer.Option("--rps", help="Requests per second to serve.")] = None,
    prompt_len: PromptLenOpt = None,
    output_len: OutputLenOpt = None,
    ttft_p95: Annotated[Optional[str], typer.Option("--ttft-p95", help="p95 time-to-first-token target, e.g. 2s or 500ms.")] = None,
    tpot_p95: Annotated[Optional[str], typer.Option("--tpot-p95", help="p95 time-per-output-token target, e.g. 50ms.")] = None,
    ttft_p50: Annotated[Optional[str], typer.Option("--ttft-p50", help="Median time-to-first-token target.")] = None,
    tpot_p50: Annotated[Optional[str], typer.Option("--tpot-p50", help="Median time-per-output-token target.")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help="GPU kinds to compare, comma-separated (default h100-sxm,a100-80gb,l40s).")] = None,
    tp: TpOpt = None,
    ep: ServeEpOpt = None,
    weights: WeightsOpt = None,
    kv_dtype: KvDtypeOpt = None,
    engine: EngineOpt = None,
    engine_opt: EngineOptOpt = None,
    trace: TraceOpt = None,
    requests: RequestsOpt = None,
    platform: PlatformOpt = None,
    pricing: PricingOpt = None,
    price_per_gpu_hour: PricePerGpuHourOpt = None,
    allow_long_context: AllowLongOpt = False,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    plot: PlotOpt = None,
    calibration: CalibrationOpt = None,
    no_calibration: NoCalibrationOpt = False,
    flags: dict = None,
) -> None:
    """Size a serving fleet: replicas, GPUs, $/month and $/1M tokens for a request rate and latency targets.

    Each (GPU, TP) option simulates the engine's scheduler under Poisson arrivals to find the largest request
    rate one replica carries within the p50/p95 targets; replicas = ceil(rps / that rate).

    Examples:

      sizeup serve-plan llama-3-8b --rps 5 --prompt-len 512 --output-len 256 --ttft-p95 2s --tpot-p95 50ms

      sizeup serve-plan llama-3-70b --rps 20 --prompt-len p50=512,p95=2048 --output-len p50=200,p95=800 --gpu h100,a100-80gb

      sizeup serve-plan mistral-7b --rps 50 --tpot-p95 30ms --weights int4 --engine vllm --price-per-gpu-hour 2.5 --json
    """
    import math

    from sizeup.calib import use_from_flags
    from sizeup.catalog import load_catalog, resolve_model
    from sizeup.core.explain import Term
    from sizeup.core.inference import SERVING_TP_CHOICES, ServeSetup, estimate_inference, fit_fixes, tp_layout_ok

    use_from_flags(calibration, no_calibration)
    from sizeup.core.serving_sim import Scheduler, SimInfeasible, SloTargets, sim_token_cost, size_replicas
    from sizeup.report import Report, Table
    from sizeup.units import parse_duration
    from sizeup.catalog.knobs import load_serving_knobs

    name, vals = serving_values(target, model, dict(
        gpu=gpu, tp=tp, ep=ep, platform=platform, pricing=pricing, rps=rps, engine=engine, weights=weights,
        kv_dtype=kv_dtype, prompt_len=prompt_len, output_len=output_len, engine_opt=engine_opt, trace=trace,
        requests=requests, allow_long_context=allow_long_context, ttft_p95=ttft_p95, tpot_p95=tpot_p95,
        ttft_p50=ttft_p50, tpot_p50=tpot_p50), gpu_list=True)
    (gpu, tp, ep, platform, pricing, rps, engine, weights, kv_dtype, prompt_len, output_len, engine_opt, trace,
     requests, allow_long_context, ttft_p95, tpot_p95, ttft_p50, tpot_p50) = (vals.get(k) for k in (
        "gpu", "tp", "ep", "platform", "pricing", "rps", "engine", "weights", "kv_dtype", "prompt_len", "output_len",
        "engine_opt", "trace", "requests", "allow_long_context", "ttft_p95", "tpot_p95", "ttft_p50", "tpot_p50"))
    if isinstance(gpu, (list, tuple)):
        gpu = ",".join(map(str, gpu))
    if rps is not None and not isinstance(rps, (int, float)):
        raise SizeupError(f"rps must be a number of requests per second, got {rps!r}")
    if not name:
        raise SizeupError("give a model: a preset id (see 'sizeup models'), a path to config.json or a scenario .yaml")
    if rps is None:
        raise SizeupError("--rps is required: the request rate to serve, e.g. --rps 5")
    if not (rps > 0) or not math.isfinite(rps):
        raise SizeupError(f"--rps must be a finite number > 0 requests per second, got {rps}")
    positive("tp", tp)
    positive("ep", ep)
    positive("requests", requests)
    catalog = load_catalog()
    arch = resolve_model(name)
    w = parse_weights(weights)
    kv = parse_kv(kv_dtype, w)
    lengths = request_lengths(prompt_len, output_len, trace)
    # the fit and the latency targets are checked at the p95 request; the simulator draws from the lengths
    pl, ol = lengths.spread("prompt"), lengths.spread("output")
    prompt_src, output_src = lengths.prompt, lengths.output
    if not allow_long_context:
        lengths.check_context(arch)

    def seconds(flag: str, text: str | None) -> float | None:
        if text is None:
            return None
        try:
            value = float(parse_duration(text))
        except Exception:
            raise SizeupError(f"--{flag} must be a duration like 2s or 50ms, got {text!r}") from None
        if value <= 0:
            raise SizeupError(f"--{flag} must be > 0, got {text!r}")
        return value

    targets = SloTargets(ttft_p95_s=seconds("ttft-p95", ttft_p95), tpot_p95_s=seconds("tpot-p95", tpot_p95),
                         ttft_p50_s=seconds("ttft-p50", ttft_p50), tpot_p50_s=seconds("tpot-p50", tpot_p50))
    names = [x.strip() for x in (gpu or "h100-sxm,a100-80gb,l40s").split(",") if x.strip()]
    base_knobs = load_serving_knobs(catalog)
    ep_ = int(ep or 1)
    check_layout(arch, tp or None, 1, ep_)  # without --tp, the TP degrees ep does not divide are skipped below
    # with --ep, only the TP degrees it divides (the experts are split inside the TP group)
    tp_choices = (tp,) if tp else tuple(t for t in SERVING_TP_CHOICES if arch.num_heads % t == 0 and t % ep_ == 0)
    if not tp_choices:
        raise SizeupError(f"--ep {ep_} divides none of the tensor-parallel degrees tried "
                          f"({', '.join(map(str, SERVING_TP_CHOICES))}); give --tp")
    n_req = requests or 800
    options: list[dict] = []
    terms: list = []
    prof_desc = ""
    scope_knobs = base_knobs
    if names:  # a bad --engine / --engine-opt is refused before any GPU's options are sized
        scope_knobs = parse_engine(engine, engine_opt, resolve_gpu(names[0], catalog), arch, base_knobs)[1]
    for gname in names:
        g = resolve_gpu(gname, catalog)
        price, price_note, price_platform = default_price(catalog, g, platform, pricing, price_per_gpu_hour)
        for t in tp_choices:
            if not tp_layout_ok(g, t, ep_):
                continue
            prof, knobs = parse_engine(engine, engine_opt, g, arch, base_knobs, t)
            prof_desc = prof.describe()
            opt: dict = {"gpu_id": g.id, "tp": t, "ep": ep_, "engine": prof.id, "feasible": False, "fits": True,
                         "reason": "",
                         "binding": "", "fixes": [], "replicas": None, "gpus": None, "max_rps_per_replica": None, "requests_per_s_per_replica": None,
                         "operating_rps_per_replica": None, "ttft_p50_s": None, "ttft_p95_s": None,
                         "tpot_p50_s": None, "tpot_p95_s": None, "itl_p95_s": None, "e2e_p95_s": None,
                         "gpu_utilization": None, "price_usd_per_gpu_hour": price, "price_note": price_note,
                         "platform": price_platform, "usd_per_hour": None, "usd_per_month": None,
                         "usd_per_1m_input_tokens": None, "usd_per_1m_output_tokens": None}
            setup = ServeSetup(tp=t, weights=w, kv_dtype=kv, prompt_len=int(round(pl.p95)),
                               output_len=int(round(ol.p95)), batch=1, ep=ep_)
            est = estimate_inference(arch, g, setup, knobs)
            if not est.fits:
                opt |= {"fits": False, "reason": "does not fit: " + "; ".join(est.reasons),
                        "fixes": fit_fixes(arch, g, setup, knobs), "binding": "memory"}
                options.append(opt)
                continue
            sched = Scheduler.from_engine(prof, knobs, est.max_concurrency if prof.batching == "static" else None)
            try:
                sz = size_replicas(arch, g, setup, knobs, sched, prompt_src, output_src, rps, targets, n_req)
            except SimInfeasible as exc:
                opt |= {"fits": False, "reason": f"does not fit: {exc}", "binding": "memory",
                        "fixes": fit_fixes(arch, g, setup, knobs)}
                options.append(opt)
                continue
            if not sz.feasible:
                opt |= {"reason": sz.reason, "binding": sz.binding}
                options.append(opt)
                continue
            res = sz.result
            summ = res.summary()
            gpus_total = sz.replicas * t
            opt |= {"feasible": True, "binding": sz.binding, "replicas": sz.replicas, "gpus": gpus_total,
                    "max_rps_per_replica": sz.max_rps_per_replica, "saturation_rps_per_replica": sz.saturation_rps,
                    "requests_per_s_per_replica": sz.max_rps_per_replica,
                    "operating_rps_per_replica": sz.operating_rps_per_replica,
                    "ttft_p50_s": summ["ttft_p50_s"], "ttft_p95_s": summ["ttft_p95_s"],
                    "tpot_p50_s": summ["tpot_p50_s"], "tpot_p95_s": summ["tpot_p95_s"],
                    "itl_p95_s": summ["itl_p95_s"], "e2e_p95_s": summ["e2e_p95_s"],
                    "gpu_utilization": res.gpu_utilization}
            k = f"{g.id} tp{t}"
            src = "sizeup.core.serving_sim.size_replicas: bisection on simulated Poisson load (same random stream)"
            terms += [
                Term(f"{k}: fleet/max_rps_per_replica", sz.max_rps_per_replica, "requests/s",
                     "largest Poisson rate whose simulated p50/p95 TTFT/TPOT meet the targets (<= 95% of saturation)",
                     {"saturation_rps": sz.saturation_rps, "binding": sz.binding, "requests_simulated": n_req}, src),
                Term(f"{k}: fleet/replicas", float(sz.replicas), "replicas", "max(1, ceil(rps / max_rps_per_replica))",
                     {"rps": rps, "max_rps_per_replica": sz.max_rps_per_replica}, src),
                Term(f"{k}: fleet/gpus", float(gpus_total), "GPUs", "replicas * tp", {"replicas": sz.replicas, "tp": t}, src),
                Term(f"{k}: time/ttft_p95", summ["ttft_p95_s"], "s", "p95 TTFT of the simulated run at rps / replicas",
                     {"rps_per_replica": sz.operating_rps_per_replica}, src),
                Term(f"{k}: time/tpot_p95", summ["tpot_p95_s"], "s", "p95 TPOT of the simulated run at rps / replicas",
                     {"rps_per_replica": sz.operating_rps_per_replica}, src),
            ]
            if price is not None:
                cost = sim_token_cost(res, price, t)
                usd_h = price * gpus_total
                opt |= {"usd_per_hour": usd_h, "usd_per_month": usd_h * 730.0,
                        "usd_per_1m_input_tokens": cost.usd_per_1m_input_tokens,
                        "usd_per_1m_output_tokens": cost.usd_per_1m_output_tokens,
                        "input_share_of_gpu_time": cost.input_share_of_gpu_time}
                terms += [
                    Term(f"{k}: fleet/usd_per_hour", usd_h, "USD/h", "gpus * price", {"gpus": gpus_total, "price": price},
                         price_note),
                    Term(f"{k}: fleet/usd_per_month", usd_h * 730.0, "USD", "usd_per_hour * 730 h",
                         {"usd_per_hour": usd_h}, "730 h = 8760/12"),
                ] + cost_terms(f"{k}: ", cost, res, price_note)
            if opt["feasible"]:
                opt["intervals"] = _plan_intervals(opt, rps, t, price)
            options.append(opt)

    feasible = [o for o in options if o["feasible"]]

    def key(o):
        return (o["usd_per_hour"] if o["usd_per_hour"] is not None else math.inf, o["gpus"], o["tp"])

    best = min(feasible, key=key) if feasible else None

    def money(x):
        return "-" if x is None else f"{x:,.2f}" if x < 1000 else f"{x:,.0f}"

    def ms(x):
        return "-" if x is None else f"{x * 1e3:,.0f} ms" if x >= 0.1 else f"{x * 1e3:,.1f} ms"

    rows = [(o["gpu_id"], o["tp"] if o["ep"] == 1 else f"{o['tp']} (ep {o['ep']})",
             "yes" if o["feasible"] else ("no" if o["fits"] else "does not fit"),
             o["replicas"] or "-", o["gpus"] or "-",
             f"{o['max_rps_per_replica']:,.2f}" if o["max_rps_per_replica"] else "-",
             ms(o["ttft_p95_s"]), ms(o["tpot_p95_s"]), money(o["usd_per_month"]),
             "-" if o["usd_per_1m_input_tokens"] is None else f"{o['usd_per_1m_input_tokens']:,.3f}",
             "-" if o["usd_per_1m_output_tokens"] is None else f"{o['usd_per_1m_output_tokens']:,.3f}",
             o["platform"] or "-",
             o["binding"] if o["feasible"] else (o["reason"] + (f"; fixes: {', '.join(o['fixes'])}" if o["fixes"] else "")))
            for o in options]
    data = {"model": arch.id, "rps": rps, "prompt_len": {"p50": pl.p50, "p95": pl.p95, "mean": pl.mean},
            "output_len": {"p50": ol.p50, "p95": ol.p95, "mean": ol.mean},
            "targets": {"ttft_p95_s": targets.ttft_p95_s, "tpot_p95_s": targets.tpot_p95_s,
                        "ttft_p50_s": targets.ttft_p50_s, "tpot_p50_s": targets.tpot_p50_s},
            "weights_dtype": str(w), "kv_dtype": str(kv), "engine": engine or "generic", "engine_profile": prof_desc,
            "cost_rule": COST_RULE, "requests_simulated": n_req,
            "best": best, "options": options}
    warnings = [] if best else ["no option meets the targets: relax them, allow more tensor parallelism or a bigger GPU"]
    notes = [f"engine: {prof_desc}",
             f"each option: {n_req} simulated requests per run, Poisson arrivals, lengths "
             + ("from the trace" if trace else f"log-normal with prompt p50 {pl.p50:.0f}/p95 {pl.p95:.0f} and output "
                                               f"p50 {ol.p50:.0f}/p95 {ol.p95:.0f}"),
             "$/1M tokens: " + COST_RULE + "; at each option's operating load (rps / replicas)",
             "replicas run at rps / replicas; no headroom for bursts beyond the Poisson variation is added",
             ttft_scope(scope_knobs)]
    if best:
        ivb = best.get("intervals") or {}
        rep = ivb.get("replicas")
        notes.insert(0, f"best: {best['replicas']} replica(s) x tp {best['tp']} on {best['gpu_id']} = {best['gpus']} GPUs"
                        + (f" (P10–P90 {rep['p10']:.0f}–{rep['p90']:.0f} replicas)" if rep else "")
                        + (f", ${best['usd_per_month']:,.0f}/month on {best['platform']}"
                           + (f" (P10–P90 ${ivb['usd_per_month']['p10']:,.0f}–${ivb['usd_per_month']['p90']:,.0f})"
                              if "usd_per_month" in ivb else "") + ", "
                           f"${best['usd_per_1m_input_tokens']:,.3f} / ${best['usd_per_1m_output_tokens']:,.3f} "
                           "per 1M input / output tokens" if best["usd_per_month"] is not None else "")
                        + f"; binding constraint: {best['binding']}")
        notes.append("P10–P90 of a plan: the replicas needed if the true per-replica capacity is the model's at the "
                     "P90 / P10 of the inference tokens/s residuals (calibration.yaml inference_rate, LOSO), and their "
                     "$/month; latency and $/token ranges in the JSON 'intervals' of each option")
    report = Report(
        data=data,
        tables=[Table(f"{arch.name}: {rps:g} req/s", ["gpu", "tp", "feasible", "replicas", "gpus", "max req/s/replica",
                                                      "TTFT p95", "TPOT p95", "$/month", "$/1M in", "$/1M out",
                                                      "platform", "binding / reason"], rows)],
        terms=terms, notes=notes, warnings=warnings,
    )
    emit(report, json_, csv_, markdown, explain, plot=plot)
