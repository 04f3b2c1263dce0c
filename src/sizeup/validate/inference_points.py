"""Predict category-D (inference) points of the published-runs set with sizeup.core.inference.

`predict_inference_point(point, catalog)` returns [(quantity, value in the point's unit)] or raises
`Skip(reason)` when the point does not state what the prediction needs (no guessing).
"""

from __future__ import annotations

import math
import re
from typing import Any

from sizeup.catalog.knobs import load_serving_knobs
from sizeup.core.inference import (
    KvDtype, ServeSetup, ServingKnobs, WeightDtype, estimate_inference, kv_bytes_per_sequence, weight_bytes,
)

GiB = 1024**3


class Skip(Exception):
    """The point lacks something the prediction needs; the message says what."""


# --------------------------------------------------------------------------- point parsing

UNIT_BYTES = {"gb": 1e9, "gib": GiB, "mb": 1e6, "mib": 1024**2, "tb": 1e12, "b": 1.0, "bytes": 1.0}


def _text(*parts: Any) -> str:
    return " ".join(str(p) for p in parts if p).lower()


def _resolve_model(point: dict, catalog):
    from sizeup.errors import SizeupError

    m = point.get("model") or {}
    name = str(m.get("name") or "")
    candidates = [name, re.sub(r"\(.*?\)", "", name).strip()]
    stripped = re.sub(r"\b(instruct|chat|hf|base)\b", "", candidates[-1], flags=re.I).strip()
    candidates.append(stripped)
    # "LLaMA-13B" -> "llama-13b"; "Llama 3.3 70B" keeps its version
    for cand in candidates:
        if not cand:
            continue
        try:
            return catalog.model(cand), "catalog"
        except (SizeupError, AttributeError, KeyError):
            continue
    return None, name


def _arch_from_point(point: dict, need_timing: bool):
    """A ModelArch from the point's own architecture fields (used when the catalog lacks the preset)."""
    from sizeup.core.types import ModelArch

    m = point.get("model") or {}
    layers, hidden, heads = m.get("layers"), m.get("hidden"), m.get("heads")
    if not (layers and hidden and heads):
        raise Skip(f"model {m.get('name')!r} not in the catalog and the point lacks layers/hidden/heads")
    if need_timing and not (m.get("ffn") and m.get("vocab")):
        raise Skip(f"model {m.get('name')!r} not in the catalog and the point lacks ffn/vocab needed for timing")
    kv = m.get("kv_heads") or heads
    return ModelArch(id=str(m.get("name")), name=str(m.get("name")), vocab_size=int(m.get("vocab") or 32000),
                     hidden_size=int(hidden), num_layers=int(layers), num_heads=int(heads), num_kv_heads=int(kv),
                     head_dim=int(m.get("head_dim") or int(hidden) // int(heads)), ffn_size=int(m.get("ffn") or 0),
                     max_seq_len=int(m.get("seq_len") or 4096), source="published point")


def _model(point: dict, catalog, need_timing: bool):
    arch, _ = _resolve_model(point, catalog)
    return arch if arch is not None else _arch_from_point(point, need_timing)


def _gpu(point: dict, catalog):
    from sizeup.errors import SizeupError

    hw = point.get("hardware") or {}
    name = hw.get("gpu")
    if not name:
        raise Skip("no GPU stated")
    if not hasattr(catalog, "gpu"):
        raise Skip("the catalog has no GPUs loaded")
    for cand in (name, re.sub(r"\(.*?\)", "", str(name)).strip()):
        try:
            return catalog.gpu(cand)
        except (SizeupError, KeyError, AttributeError):
            continue
    raise Skip(f"GPU {name!r} is not in the catalog")


def _precision(point: dict) -> tuple[WeightDtype, KvDtype]:
    par = point.get("parallel") or {}
    text = _text(par.get("precision"), point.get("quote"))
    prec = _text(par.get("precision"))
    if "fp8" in prec:
        weights = WeightDtype.FP8
    elif re.search(r"int4|4-bit|4 bit|awq|gptq|q4", prec):
        weights = WeightDtype.INT4
    elif "int8" in prec or "8-bit" in prec:
        weights = WeightDtype.INT8
    elif "fp32" in prec:
        weights = WeightDtype.FP32
    elif "fp16" in prec or "bf16" in prec or "16" in prec:
        weights = WeightDtype.BF16
    else:
        weights = WeightDtype.BF16
    kv = KvDtype.FP8 if re.search(r"fp8 kv|kv cache[^,;]*fp8|fp8 kv cache", text) else KvDtype.BF16
    if weights == WeightDtype.FP8 and ("modelopt" in text or "nvidia/*-fp8" in text):
        # NVIDIA ModelOpt FP8 checkpoints (nvidia/*-FP8) are served with an FP8 KV cache
        # (hf_quant_config.json kv_cache_quant_algo); a 16-bit cache could not even reach the published
        # 2048/2048 rates at 100 % of HBM bandwidth (KV bytes read per step bound the token rate).
        kv = KvDtype.FP8
    return weights, kv


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else None
    except (TypeError, ValueError):
        return None


def _kv_fraction(point: dict) -> float | None:
    match = re.search(r"kv_cache_free_gpu_mem(?:ory)?_fraction\s*=?\s*([0-9.]+)", _text(point.get("quote"), point.get("notes")))
    return float(match.group(1)) if match else None


def _convert_bytes(value_bytes: float, unit: str) -> float:
    key = unit.strip().lower()
    if key not in UNIT_BYTES:
        raise Skip(f"unit {unit!r} is not a byte unit")
    return value_bytes / UNIT_BYTES[key]


# --------------------------------------------------------------------------- prediction


def predict_inference_point(point: dict, catalog, reasons_out: dict | None = None) -> list[tuple[str, float, str]]:
    """[(quantity, predicted value in the point's unit, how it was predicted)] for each measured quantity
    sizeup can predict. The third element is a one-line description of the setup used (the validator shows it)."""
    measured = point.get("measured") or []
    if not measured:
        raise Skip("no measured quantity")
    knobs = load_serving_knobs(catalog)
    out: list[tuple[str, float, str]] = []
    reasons: list[str] = []
    wl = point.get("workload") or {}
    under_load = bool(wl.get("engine")) and (wl.get("concurrency") is not None or wl.get("request_rate") is not None)
    sim_cache: dict = {}
    for item in measured:
        q = str(item.get("quantity", ""))
        unit = str(item.get("unit", ""))
        try:
            if q in ("kv_cache_per_sequence", "kv_cache_total", "weights_memory", "kv_cache_per_token"):
                out.append((q, *_predict_memory(point, catalog, q, unit)))
            elif under_load and q in SIM_QUANTITIES:
                out.append((q, *_predict_under_load(point, catalog, q, unit, knobs, sim_cache)))
            elif q in TIMING_QUANTITIES:
                out.append((q, *_predict_timing(point, catalog, q, unit, item, knobs)))
            else:
                reasons.append(f"quantity {q!r} is not an inference figure sizeup predicts")
                if reasons_out is not None:
                    reasons_out[q] = reasons[-1]
        except Skip as exc:
            reasons.append(str(exc))
            if reasons_out is not None:
                reasons_out[q] = str(exc)
    if not out:
        raise Skip("; ".join(dict.fromkeys(reasons)) or "nothing to predict")
    return out


def _predict_memory(point: dict, catalog, quantity: str, unit: str) -> tuple[float, str]:
    model = _model(point, catalog, need_timing=quantity == "weights_memory")
    weights, kv = _precision(point)
    wl = point.get("workload") or {}
    seq = _int(wl.get("seq_len")) or _int((point.get("model") or {}).get("seq_len"))
    batch = _int(wl.get("batch_size")) or 1
    if quantity == "weights_memory":
        return _convert_bytes(weight_bytes(model, weights).total_bytes, unit), f"core.inference.weight_bytes ({weights})"
    if quantity == "kv_cache_per_token":
        return _convert_bytes(float(kv_bytes_per_sequence(model, 1, kv)), unit), f"core.inference KV per token ({kv})"
    if not seq:
        raise Skip("KV cache size needs a sequence length; the point states none")
    per_seq = float(kv_bytes_per_sequence(model, seq, kv))
    how = f"core.inference KV cache, {seq} tokens x batch {batch}, {kv}, unpaged"
    return _convert_bytes(per_seq if quantity == "kv_cache_per_sequence" else per_seq * batch, unit), how


TIMING_QUANTITIES = {
    # quantity -> what it is; per-GPU variants are recognised from a "_per_gpu" suffix or a "/GPU" unit
    "output_throughput": "output", "output_throughput_per_gpu": "output", "generation_throughput": "output",
    "throughput": "output", "output_tokens_per_s": "output",
    "total_token_throughput": "total", "total_throughput": "total",
    "request_throughput": "requests",
    "decode_throughput": "decode",
    "per_user_throughput": "per_request", "output_throughput_per_user": "per_request",
    "time_to_first_token": "ttft", "ttft": "ttft", "mean_ttft": "ttft",
    "tpot": "tpot", "time_per_output_token": "tpot", "itl": "tpot", "inter_token_latency": "tpot", "mean_tpot": "tpot",
    "e2e_latency": "e2e", "request_latency": "e2e", "end_to_end_latency": "e2e",
}


def _first_int(wl: dict, *keys: str) -> int | None:
    for key in keys:
        value = _int(wl.get(key))
        if value:
            return value
    return None


def _rate(wl: dict, text: str) -> float | None:
    for key in ("request_rate", "qps", "rps", "requests_per_s"):
        value = wl.get(key)
        if value is None:
            continue
        try:
            rate = float(value)
        except (TypeError, ValueError):
            return None  # 'inf' strings etc.: offline / max load
        return rate if math.isfinite(rate) and rate > 0 else None
    return None


def _predict_timing(point: dict, catalog, quantity: str, unit: str, item: dict,
                    knobs: ServingKnobs) -> tuple[float, str]:
    from sizeup.core.inference import concurrency_for_rate

    kind = TIMING_QUANTITIES[quantity] if quantity in TIMING_QUANTITIES else "output"
    wl = point.get("workload") or {}
    par = point.get("parallel") or {}
    hw = point.get("hardware") or {}
    s = _first_int(wl, "input_len", "prompt_len", "isl")
    n = _first_int(wl, "output_len", "osl", "max_tokens")
    batch = _first_int(wl, "batch_size", "concurrency", "max_concurrency")
    text = _text(wl.get("kind"), wl.get("notes"), par.get("other"), par.get("precision"), point.get("quote"),
                 point.get("notes"), item.get("notes"))
    per_gpu_unit = "/gpu" in unit.lower() or quantity.endswith("_per_gpu")
    if "ambiguous" in _text(item.get("notes")) and (_int(par.get("tp")) or 1) > 1 and not per_gpu_unit:
        raise Skip("the source does not say whether the figure is per GPU or for the whole TP group")
    decode_only = kind == "decode" and batch == 1
    if (s is None or n is None) and not decode_only:
        raise Skip("prompt/output lengths not stated")
    gpu = _gpu(point, catalog)
    model = _model(point, catalog, need_timing=True)
    weights, kv = _precision(point)
    tp = _int(par.get("tp")) or 1
    pp = _int(par.get("pp")) or 1
    count = _int(hw.get("count"))
    if count and count != tp * pp and not (_int(par.get("tp")) or _int(par.get("pp"))):
        tp = count  # several GPUs, no split stated: tensor parallel is the serving default
    static = "static batch" in text
    offline = any(w in text for w in ("infinite request rate", "max load", "offline"))
    k = knobs
    engine_note = ""
    if wl.get("engine"):
        # the engine the point states (its release line's profile when it states a version): its kernels and
        # scheduler defaults, as `sizeup infer --engine` would use them
        from sizeup.catalog.engines import engine_profile_for_version

        prof = engine_profile_for_version(str(wl.get("engine")), wl.get("engine_version")).for_gpu(gpu)
        k = prof.knobs(k, model.num_layers, tp)
        static = static or prof.batching == "static"
        engine_note = f", engine profile {prof.id}"
    frac = _kv_fraction(point)
    if frac is not None:
        # TensorRT-LLM reserves `frac` of the memory left after weights + buffers: the vLLM-style utilisation
        # with the same KV budget is u = frac + (1 - frac) * (W/t + fixed)/M (fixed = what kv_budget_bytes takes
        # besides weights and activations: the non-torch memory)
        W = weight_bytes(model, weights, k.quant_group_size).total_bytes / (tp * pp)
        fixed = k.non_torch_bytes
        k = k.with_(gpu_memory_utilization=min(1.0, frac + (1 - frac) * (W + fixed) / gpu.memory_bytes))
    if offline and batch is None:
        k = k.with_(max_num_seqs=k.offline_max_num_seqs)
    assumed = ""
    if decode_only and (s is None or n is None):
        s, n = s or 128, n or 128
        assumed = " (lengths not stated: 128/128 assumed; batch-1 decode barely depends on them)"
    setup = ServeSetup(tp=tp, pp=pp, weights=weights, kv_dtype=kv, prompt_len=s, output_len=n,
                       batch=batch, static=static)
    est = estimate_inference(model, gpu, setup, k)
    rate = _rate(wl, text)
    if rate is not None and batch is None and not static:
        # a finite request rate: the replica runs at the concurrency that carries it (Little's law)
        c = concurrency_for_rate(model, gpu, setup, k, rate, max(1, min(est.max_concurrency, k.max_num_seqs)))
        est = estimate_inference(model, gpu, setup.with_(batch=c), k)
        assumed += f" (request rate {rate:g}/s -> steady concurrency {c})"
    out_tps = est.output_tokens_per_s
    if rate is not None and batch is None:
        out_tps = min(out_tps, rate * n)  # a replica cannot emit more than it is sent
    values = {
        "output": (est.output_tokens_per_s_per_gpu if per_gpu_unit else out_tps, "tokens/s"),
        "total": ((out_tps * (s + n) / n) / (est.gpus if per_gpu_unit else 1), "tokens/s"),
        "requests": (out_tps / n, "requests/s"),
        "decode": (est.batch / est.tpot_s, "tokens/s"),
        "per_request": (est.output_tokens_per_s_per_request, "tokens/s"),
        "ttft": (est.ttft_s, "s"),
        "tpot": (est.tpot_s, "s"),
        "e2e": (est.e2e_latency_s, "s"),
    }
    value, base = values[kind]
    how = (f"core.inference {est.batching} batching, batch {est.batch}, {s}/{n} tokens, tp {tp}, "
           f"{weights} weights, {kv} KV on {gpu.id}{engine_note}{assumed}")
    u = unit.strip().lower()
    if base == "s":
        scale = {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e3, "us": 1e6}
        if u not in scale:
            raise Skip(f"unit {unit!r} is not a time unit sizeup converts")
        return value * scale[u], how
    return value, how


# --------------------------------------------------------------------------- serving under load (simulator)

SIM_QUANTITIES = {
    # quantity -> (metric, statistic); metric in ttft | tpot | itl | e2e | output | requests
    "output_throughput": ("output", None), "output_tokens_per_s": ("output", None),
    "request_throughput": ("requests", None),
    "mean_ttft": ("ttft", "mean"), "median_ttft": ("ttft", 50), "p99_ttft": ("ttft", 99),
    "mean_tpot": ("tpot", "mean"), "median_tpot": ("tpot", 50), "p99_tpot": ("tpot", 99),
    "mean_itl": ("itl", "mean"), "median_itl": ("itl", 50), "p99_itl": ("itl", 99),
    "mean_e2e_latency": ("e2e", "mean"), "median_e2e_latency": ("e2e", 50),
}


def benchmark_lengths(wl: dict) -> tuple[list[int], list[int]]:
    """Per-request lengths a serving benchmark drew, regenerated from its seed when the source states the dataset
    settings but not the lengths. 'sglang-bench-serving-random': sglang.bench_serving --dataset-name random seeds
    numpy with --seed (default 1) and draws input lengths np.random.randint(max(int(L_in * r), 1), L_in + 1, n), then
    output lengths np.random.randint(int(L_out * r), L_out + 1, n) (python/sglang/bench_serving.py
    sample_random_requests; r = --random-range-ratio). The draw must give the totals the source's result states
    (workload total_input_tokens / total_output_tokens), else the point is skipped."""
    import numpy as np

    kind = str(wl.get("lengths_from"))
    if kind != "sglang-bench-serving-random":
        raise Skip(f"unknown lengths_from {kind!r}")
    n = _int(wl.get("num_requests"))
    li, lo = _int(wl.get("random_input_len")), _int(wl.get("random_output_len"))
    if not (n and li and lo):
        raise Skip("lengths_from needs num_requests, random_input_len and random_output_len")
    r = float(wl.get("random_range_ratio") or 0.0)
    rs = np.random.RandomState(_int(wl.get("seed")) or 1)  # np.random.seed(s) then np.random.randint: the same stream
    lens_in = rs.randint(max(int(li * r), 1), li + 1, size=n)
    lens_out = rs.randint(int(lo * r), lo + 1, size=n)
    for name, arr in (("total_input_tokens", lens_in), ("total_output_tokens", lens_out)):
        stated = _int(wl.get(name))
        if stated is not None and int(arr.sum()) != stated:
            raise Skip(f"regenerated lengths give {name} {int(arr.sum())}, the source states {stated}")
    return [int(x) for x in lens_in], [int(x) for x in lens_out]


SILENT_NOTE = ("requests the trace shows with 0 output tokens count with TTFT 0 and no output token, as the "
               "benchmark records them (RequestFuncOutput.ttft default 0.0)")


def _predict_under_load(point: dict, catalog, quantity: str, unit: str, knobs: ServingKnobs,
                        cache: dict) -> tuple[float, str]:
    """A point that states its engine, lengths and load (closed-loop concurrency or a request rate): simulate the
    engine's scheduler (sizeup.core.serving_sim) with the engine's catalog profile and read the quantity off the
    simulated requests. Nothing is fitted per point or per source."""
    from sizeup.catalog.engines import engine_profile_for_version
    from sizeup.core.serving_sim import Scheduler, SimInfeasible, Workload, poisson_arrivals, simulate
    from sizeup.errors import SizeupError
    import numpy as np

    wl = point.get("workload") or {}
    par = point.get("parallel") or {}
    trace_in, trace_out = wl.get("input_lens"), wl.get("output_lens")
    if wl.get("lengths_from") is not None:
        if "lengths" not in cache:  # once per point: every quantity of the point reads the same draw
            cache["lengths"] = benchmark_lengths(wl)
        trace_in, trace_out = cache["lengths"]
    s = _first_int(wl, "input_len", "prompt_len", "isl")
    n = _first_int(wl, "output_len", "osl")
    if trace_in and trace_out:
        s, n = int(np.mean(trace_in)), int(np.mean(trace_out))
    if s is None or n is None:
        raise Skip("prompt/output lengths not stated")
    conc = _int(wl.get("concurrency"))
    rate = _rate(wl, "")
    burst = conc is None and rate is None and str(wl.get("request_rate", "")).lower() == "inf" \
        and _int(wl.get("num_requests")) is not None
    if burst:
        conc = _int(wl.get("num_requests"))  # every request sent at t=0: a closed loop that never refills
    if conc is None and rate is None:
        raise Skip("neither a concurrency nor a request rate is stated")
    if "sim" not in cache:
        gpu = _gpu(point, catalog)
        model = _model(point, catalog, need_timing=True)
        weights, kv = _precision(point)
        tp = _int(par.get("tp")) or 1
        try:
            # the release the point states picks a release-line profile when the catalog has one (lmdeploy-0.1);
            # engine_opts: the engine settings the source's own launch script sets (as --engine-opt FIELD=VALUE)
            prof = engine_profile_for_version(str(wl.get("engine")), wl.get("engine_version")).for_gpu(gpu)
            opts = wl.get("engine_opts") or {}
            if opts:
                prof = prof.with_overrides({str(k): str(v) for k, v in dict(opts).items()})
        except SizeupError as exc:
            raise Skip(str(exc)) from None
        k = prof.knobs(knobs, model.num_layers, tp)
        if wl.get("gpu_memory_utilization") is not None:
            # the launch's memory fraction (vLLM --gpu-memory-utilization, SGLang --mem-fraction-static)
            k = k.with_(gpu_memory_utilization=float(wl["gpu_memory_utilization"]))
        setup = ServeSetup(tp=tp, weights=weights, kv_dtype=kv, prompt_len=s, output_len=n)
        stated_n = _int(wl.get("num_requests"))
        n_req = stated_n or 20 * (conc or 1)
        lens_p = np.full(n_req, s, dtype=np.int64)
        lens_o = np.full(n_req, n, dtype=np.int64)
        if trace_in and trace_out:
            lens_p = np.maximum(1, np.asarray(trace_in, dtype=np.int64))
            lens_o = np.maximum(1, np.asarray(trace_out, dtype=np.int64))
            n_req = len(lens_p)
        if burst:
            work = Workload(lens_p, lens_o, np.zeros(n_req), None, None)
            load = f"all {n_req} requests at t=0"
        elif conc is not None:
            work = Workload(lens_p, lens_o, None, conc, None)
            load = f"{conc} concurrent clients"
        else:
            work = Workload(lens_p, lens_o, poisson_arrivals(n_req, rate, 0), None, rate)
            load = f"Poisson {rate:g} req/s"
        sched = Scheduler.from_engine(prof, k, conc if prof.batching == "static" else None)
        try:
            res = simulate(model, gpu, setup, k, sched, work)
        except SimInfeasible as exc:
            raise Skip(f"does not fit: {exc}") from None
        how = (f"core.serving_sim, engine profile {prof.id}, {load}, {n_req} requests"
               + (" (lengths from the point's trace)" if trace_in and trace_out else "")
               + ("" if stated_n else " (count not stated: 20 per client; fixed lengths keep clients in lockstep)")
               + f", {s}/{n} tokens, tp {tp}, {weights} weights on {gpu.id}")
        cache["sim"] = (res, how)
    res, how = cache["sim"]
    metric, stat = SIM_QUANTITIES[quantity]
    if metric in ("ttft", "itl", "tpot", "e2e") and wl.get("output_len_is_mean") and conc is not None:
        raise Skip("only the mean output length is stated: closed-loop latencies depend on how the output lengths "
                   "spread the clients apart, which the source does not give")
    # a request whose stated output is 0 tokens streamed none (the trace records it): the serving benchmarks keep
    # its TTFT at RequestFuncOutput's default 0.0 in the TTFT statistics (vLLM benchmark_serving calculate_metrics:
    # 'ttfts.append(outputs[i].ttft)' for every successful request) and count 0 output tokens; the simulator still
    # runs its prefill (with one output token), so only the statistics take the benchmark's definition
    silent = (np.asarray(trace_out) == 0) if trace_in and trace_out else np.zeros(0, dtype=bool)
    if silent.size and silent.size != res.ttft_s.size:  # the statistics are per request: every one must complete
        raise Skip(f"{res.ttft_s.size} of {silent.size} simulated requests completed")
    if metric == "output":
        if silent.any():
            return max(res.output_tokens - int(silent.sum()), 0) / res.duration_s, how + "; " + SILENT_NOTE
        return res.output_tokens_per_s, how
    if metric == "requests":
        return res.request_throughput_rps, how
    if metric == "ttft" and silent.any():
        ttft = np.where(silent, 0.0, res.ttft_s)
        value = float(np.mean(ttft)) if stat == "mean" else float(np.percentile(ttft, float(stat)))
        how += "; " + SILENT_NOTE
    else:
        value = res.mean(metric) if stat == "mean" else res.pct(metric, float(stat))
    scale = {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e3, "us": 1e6}
    u = unit.strip().lower()
    if u not in scale:
        raise Skip(f"unit {unit!r} is not a time unit sizeup converts")
    return value * scale[u], how


# --------------------------------------------------------------------------- serving error report

SERVING_CLASSES = {"ttft": ("mean_ttft", "median_ttft", "p99_ttft", "time_to_first_token", "ttft"),
                   "itl_tpot": ("mean_itl", "median_itl", "p99_itl", "mean_tpot", "median_tpot", "tpot", "itl",
                                "time_per_output_token", "inter_token_latency"),
                   "output_throughput": ("output_throughput", "output_tokens_per_s", "request_throughput")}


def serving_class(row) -> str | None:
    """'ttft' | 'itl_tpot' | 'output_throughput' for a predicted row of a serving point (its prediction ran the
    scheduler simulation), else None: the one definition of a serving row for the reports."""
    if "serving_sim" not in (getattr(row, "definition", "") or ""):
        return None
    return next((cls for cls, names in SERVING_CLASSES.items() if row.quantity in names), None)


def serving_error_report(rows) -> dict:
    """Median / p90 |error| of the validator's serving rows (category D points that state an engine and a load),
    per class (TTFT, ITL/TPOT, throughput), overall and at concurrency >= 16, and each class's median with every
    source dropped in turn (how much one source moves it: `without_source_median`).

    These errors are in-sample: the rows are predicted with the active calibration, whose serving knob was fitted on
    these very rows. The leave-one-source-out figures (each family predicted with the calibration folds that left it
    out) are the 'serving TTFT', 'serving ITL/TPOT' and 'serving output throughput' groups of `sizeup validate
    --loso`."""
    import statistics

    def stats(errs):
        if not errs:
            return {"n": 0, "median_abs_error_pct": None, "p90_abs_error_pct": None}
        xs = sorted(abs(e) for e in errs)
        pos = (len(xs) - 1) * 0.9
        lo = int(pos)
        p90 = xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)
        return {"n": len(xs), "median_abs_error_pct": round(statistics.median(xs), 1), "p90_abs_error_pct": round(p90, 1)}

    out: dict = {}
    ok = [r for r in rows if r.ok]
    for cls in SERVING_CLASSES:
        sel = [r for r in ok if serving_class(r) == cls]
        hi = [r for r in sel if _row_conc(r) >= 16]
        fams = sorted({r.family for r in sel})
        out[cls] = {"all": stats([r.error_pct for r in sel]), "concurrency_ge_16": stats([r.error_pct for r in hi]),
                    "signed_median_pct": round(statistics.median([r.error_pct for r in sel]), 1) if sel else None,
                    "by_source": {f: stats([r.error_pct for r in sel if r.family == f]) for f in fams},
                    "without_source_median": {f: stats([r.error_pct for r in sel if r.family != f])["median_abs_error_pct"]
                                              for f in fams}}
    return out


def _row_conc(row) -> int:
    import re as _re

    m = _re.search(r"(\d+) concurrent clients|all (\d+) requests at t=0", getattr(row, "definition", "") or "")
    if m:
        return int(m.group(1) or m.group(2))
    return 0
