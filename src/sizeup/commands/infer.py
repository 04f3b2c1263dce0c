"""`sizeup infer` (one serving replica) and `sizeup serve-plan` (fleet sizing from traffic and latency targets)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sizeup.cli import app
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
    "--prompt-len", help="Prompt tokens (default 512). serve-plan also takes percentiles: p50=512,p95=2048.")]
OutputLenOpt = Annotated[Optional[str], typer.Option(
    "--output-len", help="Output tokens (default 128). serve-plan also takes percentiles: p50=200,p95=800.")]
BatchOpt = Annotated[Optional[int], typer.Option(
    "--batch", help="Sequences decoded together (default: as many as memory allows, up to max_num_seqs).")]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", help="Concurrent requests (same as --batch).")]
StaticOpt = Annotated[bool, typer.Option("--static", help="Static batching (prefill all, then decode) instead of continuous batching.")]
PricePerGpuHourOpt = Annotated[Optional[float], typer.Option(
    "--price-per-gpu-hour", help="USD per GPU-hour (overrides the platform price).")]
UtilizationOpt = Annotated[Optional[float], typer.Option(
    "--utilization", help="Average fleet utilisation for $/token, 0-1 (default 0.5).")]
GpuMemUtilOpt = Annotated[Optional[float], typer.Option(
    "--gpu-memory-utilization", help="Fraction of GPU memory the engine may use (vLLM default 0.9).")]
AllowLongOpt = Annotated[bool, typer.Option(
    "--allow-long-context", help="Allow prompt + output longer than the model's max_seq_len.")]


# --------------------------------------------------------------------------- shared parsing


def shown_terms(est, knobs, price: float | None, price_note: str, batch_given: bool = False) -> list:
    """Terms for the figures `sizeup infer` prints that the core estimate does not explain itself."""
    from sizeup.core.explain import Term

    out = [
        Term("weights/bytes_per_gpu", est.weights_bytes_per_gpu, "B", "W / (tp * pp)",
             {"W": est.weights_bytes, "tp": est.tp, "pp": est.pp}, "weights sharded evenly over TP ranks and PP stages"),
        Term("serve/batch", float(est.batch), "sequences",
             "--batch / --concurrency" if batch_given else "max(1, min(max_concurrency, max_num_seqs))",
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


def check_layout(arch, tp: int, pp: int) -> None:
    """Serving engines (vLLM, SGLang, TensorRT-LLM) shard attention heads over TP ranks and layers over PP stages."""
    if arch.num_heads % tp:
        ok = [t for t in range(1, arch.num_heads + 1) if arch.num_heads % t == 0 and t <= 64]
        raise SizeupError(f"--tp {tp} must divide {arch.id}'s {arch.num_heads} attention heads; "
                          f"allowed: {', '.join(map(str, ok))}")
    if pp > arch.num_layers:
        raise SizeupError(f"--pp {pp} cannot exceed {arch.id}'s {arch.num_layers} layers")


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
    """'512' -> fixed; 'p50=512,p95=2048' -> percentiles (p95 >= p50)."""
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
    p50 = parts.get("p50") or parts.get("mean")
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


@app.command("infer")
def infer_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    gpu: GpuOpt = None,
    gpus: GpusOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    weights: WeightsOpt = None,
    kv_dtype: KvDtypeOpt = None,
    prompt_len: PromptLenOpt = None,
    output_len: OutputLenOpt = None,
    batch: BatchOpt = None,
    concurrency: ConcurrencyOpt = None,
    static: StaticOpt = False,
    platform: PlatformOpt = None,
    pricing: PricingOpt = None,
    price_per_gpu_hour: PricePerGpuHourOpt = None,
    utilization: UtilizationOpt = None,
    gpu_memory_utilization: GpuMemUtilOpt = None,
    allow_long_context: AllowLongOpt = False,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    plot: PlotOpt = None,
) -> None:
    """Size one inference replica: weights, KV cache, max concurrency, TTFT/TPOT, tokens/s and $/1M tokens.

    Examples:

      sizeup infer llama-2-7b --gpu a100-80gb

      sizeup infer llama-3-70b --gpu h100 --tp 4 --weights fp8 --kv-dtype fp8 --prompt-len 2048 --output-len 256

      sizeup infer mistral-7b --gpu l4 --weights int4 --concurrency 32 --price-per-gpu-hour 0.8 --json

      sizeup infer deepseek-v3 --gpu h200 --tp 8 --weights fp8 --explain
    """
    from sizeup.catalog import load_catalog, resolve_model
    from sizeup.core.inference import ServeSetup, estimate_inference
    from sizeup.report import Report, Table
    from sizeup.validate.inference_points import load_serving_knobs

    from sizeup.commands.common import is_scenario

    name = pick_target(target, model)
    if not name:
        raise SizeupError("give a model: a preset id (see 'sizeup models') or a path to config.json")
    if is_scenario(name):
        raise SizeupError(f"{name!r} is a scenario file; 'sizeup infer' takes a model preset id or a config.json")
    for flag, val in (("tp", tp), ("pp", pp), ("gpus", gpus), ("batch", batch), ("concurrency", concurrency)):
        positive(flag, val)
    if batch is not None and concurrency is not None and batch != concurrency:
        raise SizeupError(f"--batch {batch} and --concurrency {concurrency} disagree; give one")
    if utilization is not None and not (0 < utilization <= 1):
        raise SizeupError(f"--utilization must be in (0, 1], got {utilization}")
    if gpu_memory_utilization is not None and not (0 < gpu_memory_utilization <= 1):
        raise SizeupError(f"--gpu-memory-utilization must be in (0, 1], got {gpu_memory_utilization}")
    catalog = load_catalog()
    arch = resolve_model(name)
    w = parse_weights(weights)
    kv = parse_kv(kv_dtype, w)
    s = parse_tokens("prompt-len", prompt_len, 512)
    n = parse_tokens("output-len", output_len, 128)
    if s + n > arch.max_seq_len and not allow_long_context:
        raise SizeupError(f"prompt {s} + output {n} = {s + n} tokens exceeds {arch.id}'s max_seq_len "
                          f"{arch.max_seq_len}; shorten them or pass --allow-long-context")
    tp_ = tp or (gpus // (pp or 1) if gpus else 1)
    pp_ = pp or 1
    if gpus is not None and gpus != tp_ * pp_:
        raise SizeupError(f"--gpus {gpus} must equal --tp x --pp = {tp_ * pp_} for one replica "
                          "(use 'sizeup serve-plan' to size several replicas)")
    if tp_ < 1:
        raise SizeupError(f"--gpus {gpus} is smaller than --pp {pp_}")
    check_layout(arch, tp_, pp_)
    g = resolve_gpu(gpu, catalog)
    knobs = load_serving_knobs(catalog)
    if gpu_memory_utilization is not None:
        knobs = knobs.with_(gpu_memory_utilization=gpu_memory_utilization)
    price, price_note = gpu_price(catalog, g, platform, pricing, price_per_gpu_hour)
    setup = ServeSetup(tp=tp_, pp=pp_, weights=w, kv_dtype=kv, prompt_len=s, output_len=n,
                       batch=batch if batch is not None else concurrency, static=static)
    est = estimate_inference(arch, g, setup, knobs, price, utilization)

    data = est.to_dict() | {"model": arch.id, "gpu": g.id, "price_note": price_note,
                            "max_seq_len": arch.max_seq_len}
    rows = [
        ("weights (total)", _fmt_bytes(est.weights_bytes), f"{est.weights_dtype}"),
        ("weights per GPU", _fmt_bytes(est.weights_bytes_per_gpu), f"tp={tp_} pp={pp_}"),
        ("KV cache per token (whole model)", f"{est.kv_cache_bytes_per_token:,.0f} B", est.kv_dtype),
        ("KV cache per sequence per GPU", _fmt_bytes(est.kv_cache_bytes_per_sequence), f"{s + n} tokens, paged"),
        ("KV budget per GPU", _fmt_bytes(max(est.kv_budget_bytes_per_gpu, 0.0)),
         f"{knobs.gpu_memory_utilization:.0%} of {_fmt_bytes(g.memory_bytes)} minus weights/activations/graphs"),
        ("max concurrency", f"{est.max_concurrency:,}", f"sequences of {s + n} tokens"),
        ("batch used", f"{est.batch:,}", est.batching),
    ]
    perf = [
        ("TTFT", f"{est.ttft_s * 1e3:,.1f} ms", "time to first token"),
        ("TPOT", f"{est.tpot_s * 1e3:,.2f} ms", f"decode step at batch {est.batch}, {est.decode_bound}-bound"),
        ("end-to-end latency", f"{est.e2e_latency_s:,.2f} s", f"{s} in + {n} out"),
        ("output tokens/s (replica)", f"{est.output_tokens_per_s:,.0f}", f"{est.gpus} GPU(s)"),
        ("output tokens/s per GPU", f"{est.output_tokens_per_s_per_gpu:,.0f}", ""),
        ("output tokens/s per request", f"{est.output_tokens_per_s_per_request:,.1f}", "1 / TPOT"),
        ("decode turns compute-bound at batch", str(est.compute_bound_batch or "never (<65536)"), "weight GEMMs"),
    ]
    if est.usd_per_1m_output_tokens is not None:
        perf += [
            ("$ per GPU-hour", f"{price:,.3f}", price_note),
            ("$ per 1M output tokens", f"{est.usd_per_1m_output_tokens:,.3f}", f"at {est.utilization:.0%} utilisation"),
            ("$ per 1M input tokens", f"{est.usd_per_1m_input_tokens:,.3f}", f"at {est.utilization:.0%} utilisation"),
        ]
    report = Report(
        data=data,
        tables=[Table(f"{arch.name} on {est.gpus} x {g.name}: memory", ["figure", "value", "note"], rows, name="memory"),
                Table("latency, throughput, cost", ["figure", "value", "note"], perf, name="performance")],
        terms=list(est.terms) + shown_terms(est, knobs, price, price_note, batch is not None or concurrency is not None),
        notes=list(est.notes) + ([price_note] if est.usd_per_1m_output_tokens is None else [])
        + ([] if gpu else [f"no --gpu given: assumed {g.id}"]),
        warnings=[f"does not fit: {r}" for r in est.reasons],
    )
    emit(report, json_, csv_, markdown, explain, plot=plot)


# --------------------------------------------------------------------------- serve-plan


@app.command("serve-plan")
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
    weights: WeightsOpt = None,
    kv_dtype: KvDtypeOpt = None,
    platform: PlatformOpt = None,
    pricing: PricingOpt = None,
    price_per_gpu_hour: PricePerGpuHourOpt = None,
    allow_long_context: AllowLongOpt = False,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    plot: PlotOpt = None,
) -> None:
    """Size a serving fleet: replicas, GPUs and $/month for a request rate and latency targets.

    Examples:

      sizeup serve-plan llama-3-8b --rps 5 --prompt-len 512 --output-len 256 --ttft-p95 2s --tpot-p95 50ms

      sizeup serve-plan llama-3-70b --rps 20 --prompt-len p50=512,p95=2048 --output-len p50=200,p95=800 --gpu h100,a100-80gb

      sizeup serve-plan mistral-7b --rps 50 --tpot-p95 30ms --weights int4 --price-per-gpu-hour 2.5 --json
    """
    from sizeup.catalog import load_catalog, resolve_model
    from sizeup.core.inference import LatencyTargets, Traffic, plan_fleet
    from sizeup.report import Report, Table
    from sizeup.units import parse_duration
    from sizeup.validate.inference_points import load_serving_knobs

    name = pick_target(target, model)
    if not name:
        raise SizeupError("give a model: a preset id (see 'sizeup models') or a path to config.json")
    if rps is None:
        raise SizeupError("--rps is required: the request rate to serve, e.g. --rps 5")
    if rps <= 0:
        raise SizeupError(f"--rps must be > 0 requests per second, got {rps}")
    positive("tp", tp)
    catalog = load_catalog()
    arch = resolve_model(name)
    w = parse_weights(weights)
    kv = parse_kv(kv_dtype, w)
    pl = parse_length_dist("prompt-len", prompt_len, 512)
    ol = parse_length_dist("output-len", output_len, 128)
    if pl.p95 + ol.p95 > arch.max_seq_len and not allow_long_context:
        raise SizeupError(f"p95 prompt {pl.p95:.0f} + p95 output {ol.p95:.0f} tokens exceeds {arch.id}'s "
                          f"max_seq_len {arch.max_seq_len}; pass --allow-long-context to go on")

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

    targets = LatencyTargets(ttft_p95_s=seconds("ttft-p95", ttft_p95), tpot_p95_s=seconds("tpot-p95", tpot_p95),
                             ttft_p50_s=seconds("ttft-p50", ttft_p50), tpot_p50_s=seconds("tpot-p50", tpot_p50))
    names = [x.strip() for x in (gpu or "h100-sxm,a100-80gb,l40s").split(",") if x.strip()]
    gpu_list = []
    for gname in names:
        g = resolve_gpu(gname, catalog)
        price, _ = gpu_price(catalog, g, platform, pricing, price_per_gpu_hour)
        gpu_list.append((g, price))
    knobs = load_serving_knobs(catalog)
    if tp:
        check_layout(arch, tp, 1)
    tp_choices = (tp,) if tp else tuple(t for t in (1, 2, 4, 8) if arch.num_heads % t == 0)
    plan = plan_fleet(arch, gpu_list, Traffic(rps, pl, ol), targets, w, kv, knobs, tp_choices=tp_choices)

    def money(x):
        return None if x is None else f"{x:,.2f}" if x < 1000 else f"{x:,.0f}"

    rows = [(o.gpu_id, o.tp, "yes" if o.feasible else "no", o.replicas or "-", o.gpus or "-",
             f"{o.operating_concurrency}/{o.concurrency_per_replica}" if o.feasible else "-",
             f"{o.ttft_p95_s * 1e3:,.0f} ms" if o.feasible else "-",
             f"{o.tpot_p95_s * 1e3:,.1f} ms" if o.feasible else "-",
             money(o.usd_per_hour), money(o.usd_per_month), o.binding if o.feasible else o.reason)
            for o in plan.options]
    best = plan.best
    data = {"model": arch.id, "rps": rps, "prompt_len": {"p50": pl.p50, "p95": pl.p95, "mean": pl.mean},
            "output_len": {"p50": ol.p50, "p95": ol.p95, "mean": ol.mean},
            "targets": {"ttft_p95_s": targets.ttft_p95_s, "tpot_p95_s": targets.tpot_p95_s,
                        "ttft_p50_s": targets.ttft_p50_s, "tpot_p50_s": targets.tpot_p50_s},
            "weights_dtype": str(w), "kv_dtype": str(kv),
            "best": best.to_dict() if best else None, "options": [o.to_dict() for o in plan.options]}
    warnings = [] if best else ["no option meets the targets: relax them, allow more tensor parallelism or a bigger GPU"]
    notes = list(plan.notes)
    if best:
        notes.insert(0, f"best: {best.replicas} replica(s) x tp {best.tp} on {best.gpu_id} = {best.gpus} GPUs"
                        + (f", ${best.usd_per_month:,.0f}/month" if best.usd_per_month is not None else "")
                        + f"; binding constraint: {best.binding}")
    report = Report(
        data=data,
        tables=[Table(f"{arch.name}: {rps:g} req/s", ["gpu", "tp", "feasible", "replicas", "gpus", "conc/replica (now/max)",
                                                      "TTFT p95", "TPOT p95", "$/hour", "$/month", "binding / reason"],
                      rows, name="options")],
        terms=list(plan.terms) + option_terms(plan.options, rps, pl, ol), notes=notes, warnings=warnings,
    )
    emit(report, json_, csv_, markdown, explain, plot=plot)
