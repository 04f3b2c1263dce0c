#!/usr/bin/env python3
"""Ground truth from a GPU: measure the quantities sizeup's model assumes, with every input recorded.

    python benchmarks/gpu_truth.py OUT_DIR [--device cpu|cuda] [--tiny] [--budget-s 450]

One prepared run (about 8 minutes on one H200 at the default budget) writes OUT_DIR/results.json and one CSV
per section:

  gemm       GEMM time and efficiency (achieved / catalog dense peak): bf16 torch.mm and fp8 torch._scaled_mm
             (tensorwise and rowwise scales) over M, N, K in 256..16384, plus the forward / dgrad / wgrad GEMMs
             of a few catalog models (Hugging Face Llama module shapes, real operand layouts).
  attention  torch SDPA forward and backward vs sequence length, head dim and causal mask (default dispatch,
             and each SDPA backend separately at one shape).
  bandwidth  elementwise copy / add / SwiGLU, RMSNorm (HF eager and fused), LayerNorm, softmax, cross-entropy:
             bytes moved per second and the fraction of the catalog HBM bandwidth.
  training   real training steps of Llama-style models built from configs with random weights (no downloads):
             step time, tokens/s, torch.cuda.max_memory_allocated / max_memory_reserved, the nvidia-smi figure
             and the exact bytes of weights, gradients and optimizer states, varying size, micro-batch,
             sequence, recompute (none / HF gradient checkpointing / every 2nd layer), bf16-mixed vs pure bf16,
             AdamW fused vs foreach, LoRA (peft).
  inference  prefill (time to first token) and decode (time per output token) of a 1B model with HF generate:
             dynamic cache, static cache, static cache + torch.compile (CUDA graphs), batch 1..64.

Timing: CUDA events around each repetition (one synchronize at the end) on a GPU, perf_counter on a CPU;
warm-up runs first, the median of the repeats is reported. A global wall budget (--budget-s) is split across
the sections; an item that does not fit the time left is skipped and listed with the reason. results.json is
rewritten after every item, so a run cut short still leaves its data.

On a CPU (--device cpu, --tiny) the same code runs with tiny sizes (the test suite does this); CUDA-only
figures are null there with the reason recorded. Convert the results with benchmarks/gpu_truth_report.py
(catalog efficiency source, development-set rows, predicted-vs-measured table).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import gc
import hashlib
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
if (ROOT / "src" / "sizeup").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

GIB = 2.0**30
SECTIONS = ("gemm", "attention", "bandwidth", "training", "inference")
# share of the time still left that each section may use (leftover time passes on to the next sections)
SHARES = {"gemm": 0.15, "attention": 0.10, "bandwidth": 0.04, "training": 0.46, "inference": 0.25}


class UsageError(Exception):
    """Bad input: one line, exit code 2."""


# --------------------------------------------------------------------------- budget


class Budget:
    """Global wall budget; each section gets its share of what is left when it starts."""

    def __init__(self, total_s: float):
        self.total_s = float(total_s)
        self.t0 = time.perf_counter()
        self.section = ""
        self.section_end = self.t0 + self.total_s
        self.used: dict[str, float] = {}
        self._section_t0 = self.t0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def start(self, section: str, remaining: tuple[str, ...]) -> float:
        now = time.perf_counter()
        share = SHARES[section] / sum(SHARES[s] for s in remaining)
        self.section = section
        self._section_t0 = now
        self.section_end = now + max(0.0, self.left()) * share
        return self.section_end - now

    def end(self) -> None:
        self.used[self.section] = round(time.perf_counter() - self._section_t0, 3)

    def section_left(self) -> float:
        return min(self.section_end, self.t0 + self.total_s) - time.perf_counter()

    def allows(self, need_s: float) -> bool:
        return self.section_left() >= need_s

    def reason(self, need_s: float) -> str:
        return (f"over budget: section {self.section!r} had {max(0.0, self.section_left()):.1f} s left "
                f"(global {max(0.0, self.left()):.1f} s of {self.total_s:g} s); item needs ~{need_s:g} s")


# --------------------------------------------------------------------------- results


class Results:
    """results.json + one CSV per section, rewritten after every item (atomic replace)."""

    def __init__(self, out: Path, metadata: dict):
        self.out = out
        self.data = {"metadata": metadata, "sections": {s: {"rows": [], "skipped": [], "notes": {}}
                                                         for s in SECTIONS}}

    def sec(self, name: str) -> dict:
        return self.data["sections"][name]

    def add(self, section: str, row: dict) -> None:
        self.sec(section)["rows"].append(row)
        self.write()

    def skip(self, section: str, item: str, reason: str) -> None:
        self.sec(section)["skipped"].append({"item": item, "reason": reason})

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=1, default=_json_default, allow_nan=False))
        os.replace(tmp, self.out / "results.json")
        for name in SECTIONS:
            rows = self.sec(name)["rows"]
            path = self.out / f"{name}.csv"
            if not rows:
                path.unlink(missing_ok=True)
                continue
            keys: list[str] = []
            for r in rows:
                keys += [k for k in r if k not in keys]
            with open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                for r in rows:
                    w.writerow({k: _csv_cell(r.get(k)) for k in keys})


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _csv_cell(v):
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=_json_default)
    return "" if v is None else v


def _err(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:300]


# --------------------------------------------------------------------------- device helpers


class Dev:
    def __init__(self, torch, kind: str):
        self.torch = torch
        self.kind = kind
        self.device = torch.device("cuda:0" if kind == "cuda" else "cpu")
        self.cuda = kind == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, fn, warmup: int, reps: int, target_s: float = 0.0, max_reps: int = 50) -> list[float]:
        """Seconds per call for `reps` calls after `warmup` calls. With target_s, reps grows until the
        repeats take about target_s in total (at most max_reps)."""
        torch = self.torch
        for _ in range(warmup):
            fn()
        self.sync()
        if target_s > 0:
            t = time.perf_counter()
            fn()
            self.sync()
            one = max(time.perf_counter() - t, 1e-7)
            reps = int(min(max_reps, max(reps, target_s / one)))
        if self.cuda:
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
            for s, e in zip(starts, ends):
                s.record()
                fn()
                e.record()
            torch.cuda.synchronize()
            return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]
        out = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()


def _stats(times: list[float]) -> dict:
    return {"time_s_median": statistics.median(times), "time_s_min": min(times), "time_s_max": max(times),
            "reps": len(times)}


# --------------------------------------------------------------------------- catalog (sizeup, or raw YAML)


class CatalogView:
    """Model shapes and GPU peaks from sizeup's catalog (`sizeup.catalog`), or from the raw YAML files when
    sizeup's dependencies are not installed on the measuring machine (the reason is recorded)."""

    def __init__(self):
        self.how = ""
        self.cat = None
        try:
            from sizeup.catalog import load_catalog

            self.cat = load_catalog()
            self.how = "sizeup.catalog.load_catalog"
        except Exception as exc:  # pydantic / PyYAML missing on the device machine
            self.how = f"raw catalog YAML (import of sizeup.catalog failed: {_err(exc)})"
        self.data_dir = ROOT / "src" / "sizeup" / "catalog" / "data"

    def model(self, model_id: str) -> dict:
        keys = ("name", "vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                "ffn_size", "tie_embeddings")
        if self.cat is not None:
            try:
                from sizeup.catalog import resolve_model

                arch = resolve_model(model_id, self.cat)
            except ImportError as exc:  # the catalog cache loads without pydantic, model files need it
                self.cat = None
                self.how = f"raw catalog YAML (sizeup.catalog.resolve_model failed: {_err(exc)})"
            else:
                out = {k: getattr(arch, k) for k in keys}
                out["id"] = arch.id
                out["gated_mlp"] = bool(arch.mlp_kind.gated)
                out["is_moe"] = bool(arch.is_moe)
                return out
        import yaml

        raw = yaml.safe_load((self.data_dir / "models" / f"{model_id}.yaml").read_text())
        out = {k: raw.get(k) for k in keys}
        out["head_dim"] = out["head_dim"] or out["hidden_size"] // out["num_heads"]
        out["num_kv_heads"] = out["num_kv_heads"] or out["num_heads"]
        out["tie_embeddings"] = bool(out["tie_embeddings"])
        out["id"] = model_id
        out["gated_mlp"] = str(raw.get("mlp_kind", "swiglu")).lower() in ("swiglu", "geglu")
        out["is_moe"] = bool(raw.get("num_experts"))
        return out

    def gpu(self, device_name: str) -> dict | None:
        """{'id', 'peak_flops_per_s': {dtype: FLOP/s}, 'hbm_bytes_per_s', 'sources'} or None."""
        if self.cat is not None:
            try:
                g = self.cat.gpu(device_name)
            except ImportError as exc:  # the catalog cache loads without pydantic, GPU files need it
                self.cat = None
                self.how = f"raw catalog YAML (sizeup catalog GPU lookup failed: {_err(exc)})"
                return self.gpu(device_name)
            except Exception:
                return None
            return {"id": g.id, "name": g.name, "peak_flops_per_s": dict(g.peak_flops_per_s),
                    "hbm_bytes_per_s": g.hbm_bytes_per_s, "memory_bytes": g.memory_bytes,
                    "sources": {k: v for k, v in g.sources.items() if k.startswith(("peak", "hbm", "memory"))}}
        import yaml

        norm = re.sub(r"[^a-z0-9]", "", device_name.lower())
        best = None
        for path in sorted((self.data_dir / "gpus").glob("*.yaml")):
            raw = yaml.safe_load(path.read_text())
            for alias in [raw.get("name", ""), *raw.get("aliases", [])]:
                a = re.sub(r"[^a-z0-9]", "", str(alias).lower())
                if a and a in norm and (best is None or len(a) > best[0]):
                    best = (len(a), path.stem, raw)
        if best is None:
            return None
        raw = best[2]
        peaks = {k: float(v["value"]) * 1e12 for k, v in raw["peak_tflops_dense"].items()}
        bw = str(raw["hbm_bandwidth"]["value"])
        m = re.match(r"([\d.]+)\s*TB/s", bw)
        return {"id": best[1], "name": raw["name"], "peak_flops_per_s": peaks,
                "hbm_bytes_per_s": float(m.group(1)) * 1e12 if m else None, "memory_bytes": None,
                "sources": {"peak_flops_per_s": "raw gpus/*.yaml"}}


# --------------------------------------------------------------------------- metadata


def _git_commit() -> tuple[str | None, bool | None]:
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if sha.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _nvidia_smi(query: str, uuid: str | None = None) -> list[list[str]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        p = subprocess.run([exe, f"--query-{query}", "--format=csv,noheader,nounits"], capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    return [[c.strip() for c in line.split(",")] for line in p.stdout.strip().splitlines() if line.strip()]


def metadata(torch, dev: Dev, args, catalog: CatalogView) -> dict:
    import transformers

    commit, dirty = _git_commit()
    md = {
        "benchmark": "benchmarks/gpu_truth.py",
        "script_sha256": hashlib.sha256(SCRIPT.read_bytes()).hexdigest(),
        "git_commit": commit,
        "git_dirty": dirty,
        "git_note": None if commit else "no git repository next to the script (copied working tree)",
        "argv": list(args.argv),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": dev.kind,
        "tiny": bool(args.tiny),
        "plan": args.plan,
        "budget_s": args.budget_s,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "catalog": catalog.how,
    }
    try:
        import peft

        md["peft_version"] = peft.__version__
    except ImportError as exc:
        md["peft_version"] = None
        md["peft_note"] = f"peft not installed ({_err(exc)}): LoRA runs are skipped"
    if dev.cuda:
        props = torch.cuda.get_device_properties(0)
        md.update({
            "device_name": torch.cuda.get_device_name(0),
            "compute_capability": list(torch.cuda.get_device_capability(0)),
            "sm_count": props.multi_processor_count,
            "device_memory_bytes": props.total_memory,
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version(),
            "device_uuid": str(getattr(props, "uuid", "")) or None,
        })
        smi = _nvidia_smi("gpu=name,driver_version,memory.total,clocks.max.sm,power.limit")
        md["nvidia_smi"] = smi
    else:
        md["device_name"] = f"CPU ({platform.processor() or platform.machine()})"
    gpu = catalog.gpu(md["device_name"]) if dev.cuda else None
    md["catalog_gpu"] = gpu
    if gpu is None:
        md["catalog_gpu_note"] = ("CPU run: no catalog peak, efficiencies are null" if not dev.cuda
                                  else f"{md['device_name']!r} not found in sizeup's GPU catalog: efficiencies are null")
    return md


def _peak(md: dict, dtype: str) -> float | None:
    g = md.get("catalog_gpu")
    if not g:
        return None
    v = g["peak_flops_per_s"].get(dtype)
    return float(v) if v else None


# --------------------------------------------------------------------------- 1. GEMM


def gemm_section(torch, dev: Dev, budget: Budget, res: Results, catalog: CatalogView, tiny: bool) -> None:
    sec = "gemm"
    md = res.data["metadata"]
    sizes = [16, 32, 64] if tiny else [256, 512, 1024, 2048, 4096, 8192, 16384]
    notes = res.sec(sec)["notes"]
    notes["measured_fields"] = ["time_s_median", "tflops"]
    notes["definition"] = ("FLOPs = 2*M*N*K; tflops = FLOPs / median time / 1e12; efficiency = achieved / catalog dense "
                           "peak of the dtype (bf16 peak for bf16, fp8 peak for fp8)")
    notes["surface_layout"] = "surface: C[M,N] = A[M,K] @ B[K,N]; bf16 A, B row-major; fp8 B column-major (as _scaled_mm requires)"
    notes["peak_flops_per_s"] = {d: _peak(md, d) for d in ("bf16", "fp8")}
    warmup, reps = (1, 2) if tiny else (3, 5)
    target_s = 0.0 if tiny else 0.02

    variants = [("bf16", None)]
    fp8_ok = None
    if not dev.cuda:
        fp8_ok = ("fp8 GEMMs are measured only on CUDA GPUs with fp8 tensor cores (compute capability >= 8.9); "
                  "a CPU has no fp8 matrix units, so torch._scaled_mm there would not measure what the model assumes")
    elif tuple(md["compute_capability"]) < (8, 9):
        fp8_ok = f"compute capability {md['compute_capability']} < 8.9: no fp8 tensor cores"
    elif not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        fp8_ok = f"torch {torch.__version__} has no torch._scaled_mm / float8_e4m3fn"
    if fp8_ok is None:
        variants += [("fp8", "tensorwise"), ("fp8", "rowwise")]
    else:
        for scaling in ("tensorwise", "rowwise"):
            res.skip(sec, f"fp8 {scaling} (all shapes)", fp8_ok)
    broken: dict[tuple, str] = {}

    def run(dtype: str, scaling: str | None, M: int, N: int, K: int, kind: str, extra: dict | None = None,
            layout: str = "NN") -> None:
        item = f"{dtype}{'-' + scaling if scaling else ''} {kind} M={M} N={N} K={K}"
        if (dtype, scaling) in broken:
            return
        if not budget.allows(0.0):
            res.skip(sec, item, budget.reason(0.0))
            return
        try:
            if dtype == "bf16":
                bf = torch.bfloat16
                if layout == "NT":  # y = x @ W^T, W stored [N, K] (nn.Linear forward)
                    a = torch.randn(M, K, device=dev.device, dtype=bf)
                    b = torch.randn(N, K, device=dev.device, dtype=bf).t()
                elif layout == "TN":  # dW = dY^T @ X, dY stored [K, M]
                    a = torch.randn(K, M, device=dev.device, dtype=bf).t()
                    b = torch.randn(K, N, device=dev.device, dtype=bf)
                else:
                    a = torch.randn(M, K, device=dev.device, dtype=bf)
                    b = torch.randn(K, N, device=dev.device, dtype=bf)
                c = torch.empty(M, N, device=dev.device, dtype=bf)
                fn = lambda: torch.mm(a, b, out=c)  # noqa: E731
            else:
                f8 = torch.float8_e4m3fn
                a = torch.randn(M, K, device=dev.device).to(f8)
                b = torch.randn(N, K, device=dev.device).to(f8).t()
                if scaling == "tensorwise":
                    sa = torch.tensor(1.0, device=dev.device)
                    sb = torch.tensor(1.0, device=dev.device)
                else:
                    sa = torch.ones(M, 1, device=dev.device, dtype=torch.float32)
                    sb = torch.ones(1, N, device=dev.device, dtype=torch.float32)
                fn = lambda: torch._scaled_mm(a, b, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)  # noqa: E731
                layout = "TN (A row-major, B column-major)"
            times = dev.time(fn, warmup, reps, target_s)
        except Exception as exc:
            if dtype == "fp8":
                broken[(dtype, scaling)] = _err(exc)
                res.skip(sec, f"fp8 {scaling} (all shapes)", f"torch._scaled_mm failed: {_err(exc)}")
            else:
                res.skip(sec, item, _err(exc))
            dev.free()
            return
        finally:
            a = b = None  # noqa: F841
        flops = 2.0 * M * N * K
        st = _stats(times)
        tflops = flops / st["time_s_median"] / 1e12
        peak = _peak(md, dtype)
        row = {"kind": kind, "dtype": dtype, "scaling": scaling, "layout": layout, "M": M, "N": N, "K": K,
               "flops": flops, **st, "tflops": tflops,
               "efficiency": (tflops * 1e12 / peak) if peak else None}
        if extra:
            row.update(extra)
        res.add(sec, row)

    # priority 1: the cube diagonal (where MAMF lives), every variant
    for dtype, scaling in variants:
        for s in sizes:
            run(dtype, scaling, s, s, s, "surface")
    # priority 2: the GEMMs of catalog models in a training step (forward, dgrad, wgrad per HF module)
    model_ids = ["qwen2.5-0.5b"] if tiny else ["llama-3.2-1b", "llama-3.1-8b", "llama-3-70b", "mistral-7b"]
    tokens = 8 if tiny else 4096
    notes["model_shapes"] = {"tokens_per_gemm": tokens, "models": model_ids,
                             "lm_head": "skipped in --tiny runs" if tiny else "included",
                             "definition": "per nn.Linear (in=I, out=O) with T tokens: fwd x@W^T M=T N=O K=I (NT); "
                                           "dgrad dY@W M=T N=I K=O (NN); wgrad dY^T@X M=O N=I K=T (TN)"}
    for mid in model_ids:
        try:
            m = catalog.model(mid)
        except Exception as exc:
            res.skip(sec, f"model shapes {mid}", f"catalog: {_err(exc)}")
            continue
        h, nh, kv, d, f, V = (m["hidden_size"], m["num_heads"], m["num_kv_heads"], m["head_dim"], m["ffn_size"],
                              m["vocab_size"])
        linears = [("q_proj", h, nh * d), ("k_proj", h, kv * d), ("v_proj", h, kv * d), ("o_proj", nh * d, h),
                   ("gate_proj", h, f), ("up_proj", h, f), ("down_proj", f, h), ("lm_head", h, V)]
        if not m["gated_mlp"]:
            linears = [x for x in linears if x[0] != "gate_proj"]
        if tiny:  # a [V, h] random matrix alone takes seconds to fill on a CPU
            linears = [x for x in linears if x[0] != "lm_head"]
        for dtype, scaling in variants[:2]:
            for name, I, O in linears:
                extra = {"model": m["id"], "module": name, "tokens": tokens}
                run(dtype, scaling, tokens, O, I, "model-fwd", {**extra, "pass": "fwd"}, layout="NT")
                if dtype == "bf16":
                    run(dtype, scaling, tokens, I, O, "model-dgrad", {**extra, "pass": "dgrad"}, layout="NN")
                    run(dtype, scaling, O, I, tokens, "model-wgrad", {**extra, "pass": "wgrad"}, layout="TN")
    # priority 3: the rest of the M x N x K grid
    for dtype, scaling in variants:
        for M in sizes:
            for N in sizes:
                for K in sizes:
                    if not (M == N == K):
                        run(dtype, scaling, M, N, K, "surface")
    dev.free()


# --------------------------------------------------------------------------- 2. attention


def attention_section(torch, dev: Dev, budget: Budget, res: Results, tiny: bool) -> None:
    import torch.nn.functional as F

    sec = "attention"
    md = res.data["metadata"]
    notes = res.sec(sec)["notes"]
    notes["measured_fields"] = ["fwd_time_s", "fwdbwd_time_s", "fwd_tflops"]
    notes["definition"] = ("torch.nn.functional.scaled_dot_product_attention on [batch, heads, seq, head_dim] bf16 "
                           "tensors (kv heads = heads). FLOPs fwd = 4*b*h*s^2*d (x0.5 causal), bwd = 2.5 x fwd "
                           "(FlashAttention-2 paper's count); bwd time = (fwd+bwd) - fwd; efficiency vs catalog bf16 peak")
    if dev.cuda:
        notes["sdpa_flags"] = {k: getattr(torch.backends.cuda, k)() for k in
                               ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled",
                                "cudnn_sdp_enabled") if hasattr(torch.backends.cuda, k)}
    peak = _peak(md, "bf16")
    if tiny:
        seqs, dims, heads, tokens = [16, 32], [16, 32], 2, 64
    else:
        seqs, dims, heads, tokens = [512, 1024, 2048, 4096, 8192, 16384], [128, 64], 32, 16384
    warmup, reps = (1, 2) if tiny else (2, 5)
    notes["tokens_per_batch"] = tokens
    notes["heads"] = heads

    backends = {}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backends = {b: getattr(SDPBackend, b) for b in ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION",
                                                          "MATH") if hasattr(SDPBackend, b)}
    except ImportError as exc:
        sdpa_kernel = None
        notes["backend_note"] = f"torch.nn.attention.sdpa_kernel unavailable ({_err(exc)}): default dispatch only"

    def one(s: int, d: int, causal: bool, backend: str) -> None:
        item = f"s={s} d={d} causal={causal} backend={backend}"
        if not budget.allows(0.0):
            res.skip(sec, item, budget.reason(0.0))
            return
        b = max(1, tokens // s)
        try:
            q, k, v = (torch.randn(b, heads, s, d, device=dev.device, dtype=torch.bfloat16, requires_grad=True)
                       for _ in range(3))
            g = torch.randn(b, heads, s, d, device=dev.device, dtype=torch.bfloat16)
            ctx = ((lambda: sdpa_kernel([backends[backend]])) if backend != "default" else contextlib.nullcontext)

            def fwd():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v, is_causal=causal)

            def fwdbwd():
                q.grad = k.grad = v.grad = None
                out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                out.backward(g)

            with ctx():
                tf = dev.time(fwd, warmup, reps)
                tfb = dev.time(fwdbwd, warmup, reps)
        except Exception as exc:
            res.skip(sec, item, _err(exc))
            dev.free()
            return
        fwd_flops = 4.0 * b * heads * s * s * d * (0.5 if causal else 1.0)
        t_f, t_fb = statistics.median(tf), statistics.median(tfb)
        t_b = t_fb - t_f
        row = {"backend": backend, "batch": b, "heads": heads, "seq": s, "head_dim": d, "causal": causal,
               "fwd_flops": fwd_flops, "bwd_flops": 2.5 * fwd_flops, "fwd_time_s": t_f, "fwdbwd_time_s": t_fb,
               "bwd_time_s": t_b if t_b > 0 else None, "reps": len(tf), "fwd_tflops": fwd_flops / t_f / 1e12,
               "bwd_tflops": 2.5 * fwd_flops / t_b / 1e12 if t_b > 0 else None}
        row["fwd_efficiency"] = row["fwd_tflops"] * 1e12 / peak if peak else None
        row["bwd_efficiency"] = row["bwd_tflops"] * 1e12 / peak if (peak and row["bwd_tflops"]) else None
        if t_b <= 0:
            row["note"] = "fwd+bwd not slower than fwd alone (timer resolution): bwd not derived"
        res.add(sec, row)

    # default dispatch (what HF models get) first, at head dim 128 then 64
    for d in dims:
        for causal in (True, False):
            for s in seqs:
                one(s, d, causal, "default")
    # each backend separately at one shape
    if sdpa_kernel is not None:
        s0 = seqs[len(seqs) // 2]
        for name in backends:
            if name == "MATH" and not tiny and dev.cuda:
                continue  # the math path materialises s x s scores: not what training runs use
            for causal in (True, False):
                one(s0, dims[0], causal, name)
    dev.free()


# --------------------------------------------------------------------------- 3. bandwidth


def bandwidth_section(torch, dev: Dev, budget: Budget, res: Results, tiny: bool) -> None:
    import torch.nn.functional as F

    sec = "bandwidth"
    md = res.data["metadata"]
    notes = res.sec(sec)["notes"]
    notes["measured_fields"] = ["time_s_median", "gbytes_per_s"]
    notes["definition"] = ("bytes = minimal HBM traffic of the op (read every input once, write every output once, "
                           "in their dtypes); kernel_bytes = traffic of the kernels the eager op sequence launches "
                           "(intermediates included; derived per op in the code comments; null where not derived); "
                           "gbytes_per_s = bytes / median time; hbm_fraction = "
                           "bytes/s / catalog HBM bandwidth")
    hbm = (md.get("catalog_gpu") or {}).get("hbm_bytes_per_s")
    notes["hbm_bytes_per_s"] = hbm
    n = 2**14 if tiny else 2**28
    h = 64 if tiny else 4096
    V = 256 if tiny else 128256
    T = 64 if tiny else 8192
    warmup, reps = (1, 2) if tiny else (2, 10)
    bf = torch.bfloat16
    rows = n // h
    try:
        from transformers.models.llama.modeling_llama import LlamaRMSNorm
    except ImportError:  # pragma: no cover
        LlamaRMSNorm = None

    def case(name: str, make, bytes_min: float, kernel_bytes: float | None, shape: str, backward: bool = False):
        if not budget.allows(0.0):
            res.skip(sec, name, budget.reason(0.0))
            return
        try:
            fn = make()
            times = dev.time(fn, warmup, reps)
        except Exception as exc:
            res.skip(sec, name, _err(exc))
            dev.free()
            return
        st = _stats(times)
        gbs = bytes_min / st["time_s_median"] / 1e9
        res.add(sec, {"op": name, "shape": shape, "bytes": bytes_min, "kernel_bytes": kernel_bytes, **st,
                      "gbytes_per_s": gbs,
                      "kernel_gbytes_per_s": kernel_bytes / st["time_s_median"] / 1e9 if kernel_bytes else None,
                      "hbm_fraction": gbs * 1e9 / hbm if hbm else None, "includes_backward": backward})
        dev.free()

    E = 2.0 * n  # bytes of one bf16 tensor of n elements

    def mk_copy():
        x, y = torch.randn(n, device=dev.device, dtype=bf), torch.empty(n, device=dev.device, dtype=bf)
        return lambda: y.copy_(x)

    def mk_add():
        x, y, z = (torch.randn(n, device=dev.device, dtype=bf) for _ in range(3))
        return lambda: torch.add(x, y, out=z)

    def mk_mul():
        x, z = torch.randn(n, device=dev.device, dtype=bf), torch.empty(n, device=dev.device, dtype=bf)
        return lambda: torch.mul(x, 0.5, out=z)

    def mk_swiglu():
        g, u = torch.randn(n, device=dev.device, dtype=bf), torch.randn(n, device=dev.device, dtype=bf)
        return lambda: F.silu(g) * u

    def mk_rms_hf():
        x = torch.randn(rows, h, device=dev.device, dtype=bf)
        mod = LlamaRMSNorm(h).to(device=dev.device, dtype=bf)
        return lambda: mod(x)

    def mk_rms_hf_bwd():
        x = torch.randn(rows, h, device=dev.device, dtype=bf, requires_grad=True)
        mod = LlamaRMSNorm(h).to(device=dev.device, dtype=bf)
        g = torch.randn(rows, h, device=dev.device, dtype=bf)

        def fn():
            x.grad = None
            mod(x).backward(g)
        return fn

    def mk_rms_fused():
        x = torch.randn(rows, h, device=dev.device, dtype=bf)
        w = torch.ones(h, device=dev.device, dtype=bf)
        return lambda: F.rms_norm(x, (h,), w, 1e-6)

    def mk_ln():
        x = torch.randn(rows, h, device=dev.device, dtype=bf)
        w, b = torch.ones(h, device=dev.device, dtype=bf), torch.zeros(h, device=dev.device, dtype=bf)
        return lambda: F.layer_norm(x, (h,), w, b)

    def mk_softmax():
        x = torch.randn(rows, h, device=dev.device, dtype=bf)
        return lambda: torch.softmax(x, dim=-1)

    def mk_ce():
        logits = torch.randn(T, V, device=dev.device, dtype=bf)
        labels = torch.randint(0, V, (T,), device=dev.device)
        return lambda: F.cross_entropy(logits.float(), labels)

    sh = f"[{n}] bf16"
    sh2 = f"[{rows}, {h}] bf16"
    case("copy", mk_copy, 2 * E, 2 * E, sh)
    case("add", mk_add, 3 * E, 3 * E, sh)
    case("mul_scalar", mk_mul, 2 * E, 2 * E, sh)
    case("swiglu_eager (silu(g)*u)", mk_swiglu, 3 * E, 5 * E, sh)
    if LlamaRMSNorm is not None:
        # HF LlamaRMSNorm: x.float() (r2 w4), pow (r4 w4), mean (r4), x*rsqrt (r4 w4), .to(bf16) (r4 w2), *w (r2 w2)
        case("rmsnorm_hf_eager", mk_rms_hf, 2 * E, 18 * E, sh2)
        # backward kernels of the eager sequence are not derived: kernel_bytes None; compare its time with the
        # forward row for the backward/forward ratio (timing.yaml elementwise_bwd_factor)
        case("rmsnorm_hf_eager fwd+bwd", mk_rms_hf_bwd, 2 * E + 3 * E, None, sh2, backward=True)
    if hasattr(F, "rms_norm"):
        case("rmsnorm_fused (F.rms_norm)", mk_rms_fused, 2 * E, 2 * E, sh2)
    case("layernorm (F.layer_norm)", mk_ln, 2 * E, 2 * E, sh2)
    case("softmax (last dim)", mk_softmax, 2 * E, 2 * E, sh2)
    # HF loss: logits.float() (r 2 B, w 4 B per logit) then cross_entropy (log_softmax r4 w4, nll r4)
    case("cross_entropy (HF: logits.float())", mk_ce, 2.0 * T * V, 18.0 * T * V, f"[{T}, {V}] bf16 logits")


# --------------------------------------------------------------------------- 4. training


def _llama_config(transformers, arch: dict, layers: int, seq: int):
    return transformers.LlamaConfig(
        vocab_size=arch["vocab_size"], hidden_size=arch["hidden_size"], intermediate_size=arch["ffn_size"],
        num_hidden_layers=layers, num_attention_heads=arch["num_heads"], num_key_value_heads=arch["num_kv_heads"],
        head_dim=arch["head_dim"], max_position_embeddings=max(seq, 128), tie_word_embeddings=arch["tie_embeddings"],
        rms_norm_eps=1e-5, hidden_act="silu", attention_bias=False, mlp_bias=False, use_cache=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )


def _build_model(torch, transformers, cfg, dtype, dev: Dev):
    cls = transformers.LlamaForCausalLM
    with torch.device(dev.device):
        try:
            model = cls._from_config(cfg, dtype=dtype, attn_implementation="sdpa")
        except TypeError:  # transformers 4.x: torch_dtype
            model = cls._from_config(cfg, torch_dtype=dtype, attn_implementation="sdpa")
    return model.to(dev.device)


TINY_ARCHES = {
    "tiny-a": {"name": "tiny Llama-style A", "vocab_size": 256, "hidden_size": 64, "num_layers": 2, "num_heads": 4,
               "num_kv_heads": 2, "head_dim": 16, "ffn_size": 128, "tie_embeddings": False},
    "tiny-b": {"name": "tiny Llama-style B", "vocab_size": 384, "hidden_size": 96, "num_layers": 3, "num_heads": 4,
               "num_kv_heads": 4, "head_dim": 24, "ffn_size": 256, "tie_embeddings": True},
}
LLAMA_0_1B = {"name": "Llama-style 0.1B", "vocab_size": 32000, "hidden_size": 768, "num_layers": 12,
              "num_heads": 12, "num_kv_heads": 12, "head_dim": 64, "ffn_size": 2048, "tie_embeddings": False}


def training_plan(tiny: bool, plan: str = "core") -> list[dict]:
    """Configurations in priority order (the budget cuts the tail). Keys: arch (catalog id or a dict), layers
    (None = all), mb, seq, recompute (none | hf | every-2), precision (bf16-mixed | bf16), optimizer (fused |
    foreach), peft (None | lora), est_s (rough cost on an H200, for the budget check)."""
    def c(arch, mb, seq, recompute="none", precision="bf16-mixed", optimizer="fused", peft=None, layers=None,
          est_s=8.0):
        return {"arch": arch, "layers": layers, "mb": mb, "seq": seq, "recompute": recompute,
                "precision": precision, "optimizer": optimizer, "peft": peft, "est_s": est_s}

    if tiny:
        a, b = "tiny-a", "tiny-b"
        return [c(a, 2, 32), c(a, 2, 32, optimizer="foreach"), c(a, 2, 32, precision="bf16"),
                c(a, 2, 32, recompute="hf"), c(a, 2, 32, recompute="every-2"), c(a, 4, 16),
                c(a, 2, 32, precision="bf16", peft="lora"), c(b, 1, 48)]
    one, three, eight = "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"
    if plan == "extra":  # a second run: activation scaling, recompute and LoRA at larger sizes, a Mistral shape
        return [
            c(one, 2, 2048), c(one, 16, 1024, est_s=10), c(one, 4, 4096, recompute="hf", est_s=10),
            c(one, 4, 2048, peft="lora"), c(one, 8, 4096, precision="bf16", recompute="hf", est_s=12),
            c(three, 2, 4096, recompute="hf", est_s=14), c(three, 1, 8192, precision="bf16", est_s=14),
            c(three, 4, 2048, precision="bf16", peft="lora", est_s=14),
            c(three, 4, 4096, precision="bf16", recompute="every-2", est_s=16),
            c(eight, 1, 8192, precision="bf16", recompute="hf", est_s=25),
            c(eight, 4, 4096, precision="bf16", peft="lora", recompute="hf", est_s=30),
            c(eight, 2, 4096, precision="bf16", recompute="every-2", est_s=25),
            c(eight, 4, 4096, layers=8, est_s=15),
            c("mistral-7b", 1, 4096, precision="bf16", est_s=25),
        ]
    return [
        c(one, 4, 2048),
        c(one, 4, 2048, optimizer="foreach"),
        c(one, 4, 2048, precision="bf16"),
        c(one, 4, 2048, recompute="hf"),
        c(one, 4, 2048, recompute="every-2"),
        c(one, 8, 2048, est_s=10),
        c(one, 1, 8192, est_s=10),
        c(one, 4, 2048, precision="bf16", peft="lora"),
        c(LLAMA_0_1B, 8, 1024, est_s=5),
        c(three, 2, 4096, est_s=14),
        c(eight, 1, 4096, precision="bf16", est_s=25),
        c(eight, 1, 4096, layers=16, est_s=20),
        c(eight, 1, 4096, layers=16, recompute="hf", est_s=20),
        c(eight, 2, 4096, precision="bf16", peft="lora", est_s=22),
    ]


def _tensor_bytes(tensors) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors))


def _optimizer_state_bytes(torch, opt) -> int:
    total = 0
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v):
                total += v.numel() * v.element_size()
    return int(total)


def _smi_used(torch, md: dict) -> dict:
    """Device memory in use as nvidia-smi reports it (whole device, and this process), plus torch's figures at
    the same moment so that the difference (CUDA context, cuBLAS workspaces, NCCL, ...) is explicit."""
    out = {"nvidia_smi_used_bytes": None, "nvidia_smi_process_bytes": None,
           "torch_reserved_at_smi_bytes": torch.cuda.memory_reserved(), "cuda_mem_get_info_used_bytes": None}
    try:
        free, total = torch.cuda.mem_get_info()
        out["cuda_mem_get_info_used_bytes"] = int(total - free)
    except Exception:
        pass
    rows = _nvidia_smi("gpu=uuid,memory.used")
    if rows:
        uuid = (md.get("device_uuid") or "").lower()
        pick = [r for r in rows if uuid and uuid.replace("gpu-", "") in r[0].lower()] or (rows if len(rows) == 1 else [])
        if pick:
            out["nvidia_smi_used_bytes"] = int(float(pick[0][1]) * 2**20)
    procs = _nvidia_smi("compute-apps=pid,used_memory")
    if procs:
        mine = [r for r in procs if r and r[0] == str(os.getpid())]
        if mine:
            out["nvidia_smi_process_bytes"] = int(float(mine[0][1]) * 2**20)
    if out["nvidia_smi_used_bytes"] is None:
        out["nvidia_smi_note"] = "nvidia-smi not available or GPU not matched; cuda_mem_get_info_used_bytes is the same figure from the driver"
    return out


def training_section(torch, dev: Dev, budget: Budget, res: Results, catalog: CatalogView, tiny: bool,
                     plan: str = "core") -> None:
    import transformers

    sec = "training"
    md = res.data["metadata"]
    notes = res.sec(sec)["notes"]
    notes["measured_fields"] = ["step_time_s_median", "tokens_per_s", "param_bytes", "grad_bytes",
                                "optimizer_state_bytes", "model_state_bytes"]
    notes["measured_fields_cuda"] = ["max_memory_allocated_bytes", "max_memory_reserved_bytes"]
    warmup, steps = (1, 2) if tiny else (2, 3)
    notes["protocol"] = (
        f"random-weight LlamaForCausalLM from LlamaConfig (attn_implementation=sdpa, dropout 0), random token ids as "
        f"input and labels (loss = model(input_ids, labels=input_ids).loss); one step = forward, backward, "
        f"optimizer.step(), optimizer.zero_grad(set_to_none=True); {warmup} warm-up steps, then the peak-memory "
        f"counters are reset (optimizer states already allocated) and {steps} measured steps follow; "
        "step_time_s_median = median wall time of a measured step (CUDA synchronize before and after). "
        "bf16-mixed = fp32 weights, grads and AdamW states, forward+backward under torch.autocast(bfloat16); "
        "bf16 = weights, grads and AdamW states in bf16, no autocast. LoRA = peft LoraConfig(r=16, alpha=32, "
        "target_modules='all-linear', dropout 0) on a frozen bf16 base under autocast, adapters as peft creates them. "
        "recompute hf = Hugging Face activation checkpointing (activation_checkpointing_enable / "
        "gradient_checkpointing_enable, use_reentrant=False) on every decoder layer; every-2 = the same on layers 0, 2, "
        "4, ... only (every_n_layers=2; recompute_api says which call). param/grad/optimizer_state_bytes = exact bytes of the tensors "
        "(grads read after the last backward).")
    if not dev.cuda:
        notes["cuda_only_null_reason"] = ("max_memory_allocated / max_memory_reserved / nvidia-smi are CUDA caching-"
                                          "allocator and driver figures: null on a CPU run")
    try:
        import peft as peft_mod
    except ImportError as exc:
        peft_mod = None
        notes["lora_note"] = f"peft not installed ({_err(exc)}): LoRA configurations skipped"

    for cfg in training_plan(tiny, plan):
        arch = cfg["arch"]
        if isinstance(arch, str):
            arch_d = dict(TINY_ARCHES[arch]) if arch in TINY_ARCHES else catalog.model(arch)
            arch_d.setdefault("id", arch)
        else:
            arch_d = dict(arch)
            arch_d.setdefault("id", re.sub(r"[^a-z0-9.]+", "-", arch_d["name"].lower()).strip("-"))
        layers = cfg["layers"] or arch_d["num_layers"]
        item = (f"{arch_d['id']} L{layers} mb{cfg['mb']} s{cfg['seq']} {cfg['precision']} adamw-{cfg['optimizer']} "
                f"recompute={cfg['recompute']}" + (f" {cfg['peft']}" if cfg["peft"] else ""))
        need = 0.0 if tiny else cfg["est_s"]
        if not budget.allows(need):
            res.skip(sec, item, budget.reason(need))
            continue
        if cfg["peft"] and peft_mod is None:
            res.skip(sec, item, notes["lora_note"])
            continue
        row = {"item": item, "model_id": arch_d["id"], "model_name": arch_d["name"],
               "layers": layers, "layers_full": arch_d["num_layers"],
               "layers_note": (f"{layers} of the model's {arch_d['num_layers']} decoder layers (to fit / to save time)"
                               if layers != arch_d["num_layers"] else None),
               "hidden": arch_d["hidden_size"], "heads": arch_d["num_heads"], "kv_heads": arch_d["num_kv_heads"],
               "head_dim": arch_d["head_dim"], "ffn": arch_d["ffn_size"], "vocab": arch_d["vocab_size"],
               "tie_embeddings": arch_d["tie_embeddings"], "micro_batch": cfg["mb"], "seq_len": cfg["seq"],
               "recompute": cfg["recompute"], "precision": cfg["precision"], "optimizer": f"adamw-{cfg['optimizer']}",
               "peft": cfg["peft"], "lora_rank": 16 if cfg["peft"] else None, "attn_implementation": "sdpa",
               "warmup_steps": warmup, "measured_steps": steps}
        model = opt = None
        try:
            row.update(_train_one(torch, transformers, peft_mod, dev, md, cfg, arch_d, layers, warmup, steps))
        except Exception as exc:
            oom = "OutOfMemory" in type(exc).__name__ or "out of memory" in str(exc).lower()
            row.update({"error": _err(exc), "oom": oom})
            res.skip(sec, item, ("out of memory: " if oom else "") + _err(exc))
            if oom:
                res.add(sec, row)  # an OOM is a result (the configuration does not fit)
        else:
            res.add(sec, row)
        finally:
            model = opt = None  # noqa: F841
            dev.free()


def _train_one(torch, transformers, peft_mod, dev: Dev, md: dict, cfg: dict, arch: dict, layers: int,
               warmup: int, steps: int) -> dict:
    seq, mb = cfg["seq"], cfg["mb"]
    mixed = cfg["precision"] == "bf16-mixed"
    lora = cfg["peft"] == "lora"
    hf_cfg = _llama_config(transformers, arch, layers, seq)
    weights_dtype = torch.bfloat16 if (lora or not mixed) else torch.float32
    dev.free()
    if dev.cuda:
        torch.cuda.reset_peak_memory_stats()
    t_build = time.perf_counter()
    model = _build_model(torch, transformers, hf_cfg, weights_dtype, dev)
    out: dict = {"weights_dtype": str(weights_dtype).replace("torch.", ""),
                 "params_base": int(sum(p.numel() for p in model.parameters()))}
    if lora:
        lcfg = peft_mod.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                   task_type="CAUSAL_LM")
        model = peft_mod.get_peft_model(model, lcfg)
        dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters() if p.requires_grad})
        out["lora_targets"] = sorted(model.peft_config["default"].target_modules)
        out["adapter_dtype"] = ",".join(dtypes)
    model.train()
    if cfg["recompute"] in ("hf", "every-2"):
        import inspect

        every = 2 if cfg["recompute"] == "every-2" else 1
        # transformers 5: activation_checkpointing_enable(every_n_layers=...) (gradient_checkpointing_enable is its
        # deprecated alias); older versions: gradient_checkpointing_enable, every-n via the per-layer flag below
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None and "every_n_layers" in inspect.signature(enable).parameters:
            enable(activation_checkpointing_kwargs={"use_reentrant": False}, every_n_layers=every)
            out["recompute_api"] = f"activation_checkpointing_enable(every_n_layers={every}, use_reentrant=False)"
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            out["recompute_api"] = "gradient_checkpointing_enable(use_reentrant=False)"
            if every > 1:
                base = model.get_base_model() if lora else model
                decoder = base.model.layers
                if not all(hasattr(layer, "gradient_checkpointing") for layer in decoder):
                    raise RuntimeError("this transformers version checkpoints at the model level (no per-layer "
                                       "GradientCheckpointingLayer): every-2nd-layer recompute not possible")
                for i, layer in enumerate(decoder):
                    layer.gradient_checkpointing = i % every == 0
                out["recompute_api"] += f" + per-layer flag on layers i % {every} == 0"
        base = model.get_base_model() if lora else model
        out["checkpointed_layers"] = [i for i, layer in enumerate(base.model.layers)
                                      if getattr(layer, "gradient_checkpointing", False)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = cfg["optimizer"] == "fused"
    opt = torch.optim.AdamW(trainable, lr=1e-5, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0,
                            fused=fused, foreach=None if fused else True)
    out["build_s"] = time.perf_counter() - t_build
    out["params_total"] = int(sum(p.numel() for p in model.parameters()))
    out["params_trainable"] = int(sum(p.numel() for p in trainable))
    out["param_bytes"] = _tensor_bytes(model.parameters())
    gen = torch.Generator(device=dev.device).manual_seed(0)
    ids = torch.randint(3, arch["vocab_size"], (mb, seq), device=dev.device, generator=gen)
    autocast = (torch.autocast(device_type=dev.device.type, dtype=torch.bfloat16) if (mixed or lora)
                else contextlib.nullcontext())
    losses, times = [], []
    grad_bytes = 0

    def step(measure: bool):
        nonlocal grad_bytes
        dev.sync()
        t = time.perf_counter()
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if measure:
            grad_bytes = _tensor_bytes(p.grad for p in trainable if p.grad is not None)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dev.sync()
        if measure:
            times.append(time.perf_counter() - t)
        losses.append(float(loss.detach()))

    for _ in range(warmup):
        step(False)
    if dev.cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        step(True)
    med = statistics.median(times)
    out.update({
        "step_times_s": times, "step_time_s_median": med, "tokens_per_step": mb * seq,
        "tokens_per_s": mb * seq / med, "loss_last": losses[-1], "grad_bytes": grad_bytes,
        "optimizer_state_bytes": _optimizer_state_bytes(torch, opt),
    })
    out["model_state_bytes"] = out["param_bytes"] + out["grad_bytes"] + out["optimizer_state_bytes"]
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"non-finite loss {losses}")
    if dev.cuda:
        out["max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        out["max_memory_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
        out["memory_allocated_after_bytes"] = int(torch.cuda.memory_allocated())
        out.update(_smi_used(torch, md))
    else:
        out.update({"max_memory_allocated_bytes": None, "max_memory_reserved_bytes": None,
                    "nvidia_smi_used_bytes": None,
                    "null_reason": "CPU run: CUDA allocator and nvidia-smi figures do not exist"})
    return out


# --------------------------------------------------------------------------- 5. inference


class _Stamps:
    """A StoppingCriteria that records the time of every generation step (after each new token)."""

    def __init__(self, dev: Dev):
        self.dev = dev
        self.t: list[float] = []

    def __call__(self, input_ids, scores, **kwargs):
        self.dev.sync()
        self.t.append(time.perf_counter())
        return self.dev.torch.zeros(input_ids.shape[0], dtype=self.dev.torch.bool, device=input_ids.device)


def inference_section(torch, dev: Dev, budget: Budget, res: Results, catalog: CatalogView, tiny: bool,
                      plan: str = "core") -> None:
    import transformers

    sec = "inference"
    notes = res.sec(sec)["notes"]
    notes["measured_fields"] = ["ttft_s", "tpot_s", "decode_tokens_per_s"]
    if tiny:
        arch = dict(TINY_ARCHES["tiny-a"], id="tiny-a")
        prompt, new, batches = 16, 8, [1, 2, 4]
    elif plan == "extra":
        arch = catalog.model("llama-3.1-8b")
        prompt, new, batches = 1024, 64, [1, 8, 32, 64]
    else:
        arch = catalog.model("llama-3.2-1b")
        prompt, new, batches = 512, 64, [1, 4, 16, 64]
    reps = 2 if tiny else 3
    notes["protocol"] = (
        f"random-weight LlamaForCausalLM ({arch['id']}, bf16, sdpa), greedy generate of exactly {new} new tokens "
        f"(min_new_tokens = max_new_tokens) after a {prompt}-token random prompt. A StoppingCriteria synchronizes "
        "and stamps the time after every new token: ttft_s = start -> first stamp (prefill + first token), "
        "tpot_s = median gap between later stamps (one decode step); 1 warm-up generate, then the median over "
        f"{reps} generates. Variants: dynamic (DynamicCache, no compile), static (StaticCache, compile disabled), "
        "static+compile (StaticCache; transformers compiles the decode forward, mode reduce-overhead = CUDA graphs; "
        "compile_s = wall time of the first, compiling generate).")
    first_need = 0.0 if tiny else 8.0  # build + one dynamic-cache item
    if not budget.allows(first_need):
        for b in batches:
            res.skip(sec, f"all variants batch={b}", budget.reason(first_need))
        return
    hf_cfg = _llama_config(transformers, arch, arch["num_layers"], prompt + new)
    hf_cfg.use_cache = True
    try:
        model = _build_model(torch, transformers, hf_cfg, torch.bfloat16, dev).eval()
    except Exception as exc:
        for b in batches:
            res.skip(sec, f"all variants batch={b}", f"model build failed: {_err(exc)}")
        return
    params = int(sum(p.numel() for p in model.parameters()))
    notes["model"] = {"id": arch["id"], "params": params, "layers": arch["num_layers"],
                      "hidden": arch["hidden_size"], "vocab": arch["vocab_size"]}
    try:
        from transformers import CompileConfig
    except ImportError:
        CompileConfig = None
    compile_skip = None
    if not dev.cuda:
        compile_skip = ("torch.compile on CPU (inductor, C++ codegen) takes tens of seconds even for a tiny model "
                        "on this machine's cores; too slow for the --tiny run, and transformers compiles generate "
                        "only on accelerators. Static cache without compile is still measured.")
    elif CompileConfig is None:
        compile_skip = f"transformers {transformers.__version__} has no CompileConfig (generate auto-compile)"

    plan = [("dynamic", b) for b in batches]
    big_first = [batches[0], batches[-1]] + batches[1:-1]
    plan += [("static+compile", b) for b in big_first] + [("static", b) for b in big_first]
    gen = torch.Generator(device=dev.device).manual_seed(0)
    for variant, b in plan:
        item = f"{variant} batch={b}"
        if variant == "static+compile" and compile_skip:
            res.skip(sec, item, compile_skip)
            continue
        need = 0.0 if tiny else (45.0 if variant == "static+compile" else 4.0)
        if not budget.allows(need):
            res.skip(sec, item, budget.reason(need))
            continue
        ids = torch.randint(3, arch["vocab_size"], (b, prompt), device=dev.device, generator=gen)
        kwargs = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0,
                      attention_mask=torch.ones_like(ids))
        # generate auto-compiles a static-cache decode on accelerators (transformers >= 4.50): disable_compile
        # keeps the uncompiled variants uncompiled where that switch exists
        off = {"disable_compile": True} if hasattr(transformers.GenerationConfig(), "disable_compile") else {}
        if variant == "dynamic":
            kwargs.update(off)
        elif variant == "static":
            kwargs.update(cache_implementation="static", **off)
        else:
            kwargs.update(cache_implementation="static",
                          compile_config=CompileConfig(fullgraph=True, mode="reduce-overhead"))
        try:
            ttfts, tpots, walls = [], [], []
            first_s = None
            for r in range(reps + 1):
                stamps = _Stamps(dev)
                if dev.cuda and r == reps:
                    torch.cuda.reset_peak_memory_stats()
                dev.sync()
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = model.generate(ids, stopping_criteria=transformers.StoppingCriteriaList([stamps]),
                                         **kwargs)
                dev.sync()
                wall = time.perf_counter() - t0
                if out.shape[1] != prompt + new:
                    raise RuntimeError(f"generated {out.shape[1] - prompt} tokens, expected {new}")
                if r == 0:
                    first_s = wall
                    continue
                gaps = [b2 - a2 for a2, b2 in zip(stamps.t, stamps.t[1:])]
                ttfts.append(stamps.t[0] - t0)
                tpots.append(statistics.median(gaps))
                walls.append(wall)
        except Exception as exc:
            res.skip(sec, item, _err(exc))
            dev.free()
            continue
        tpot = statistics.median(tpots)
        row = {"variant": variant, "batch": b, "prompt_len": prompt, "new_tokens": new, "model_id": arch["id"],
               "params": params, "ttft_s": statistics.median(ttfts), "tpot_s": tpot,
               "decode_tokens_per_s": b / tpot, "generate_wall_s": statistics.median(walls),
               "first_generate_s": first_s, "reps": len(tpots)}
        if variant == "static+compile":
            row["compile_s"] = first_s
            row["compiled"] = bool(getattr(model, "_compiled_call", None))
        row["max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated()) if dev.cuda else None
        res.add(sec, row)
    model = None
    dev.free()


# --------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + message otherwise)
        raise UsageError(message)


def parse_args(argv):
    p = _Parser(prog="gpu_truth.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder (created; results.json and one CSV per section)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU test suite)")
    p.add_argument("--budget-s", type=float, default=450.0, help="global wall budget in seconds (default 450)")
    p.add_argument("--plan", choices=("core", "extra"), default="core",
                   help="training and inference configurations: core (the first run) or extra (a second run)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    args = p.parse_args(argv)
    args.argv = list(argv)
    if not math.isfinite(args.budget_s) or args.budget_s <= 0:
        raise UsageError(f"--budget-s must be a finite number > 0, got {args.budget_s}")
    secs = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in secs if s not in SECTIONS]
    if bad or not secs:
        raise UsageError(f"--sections: unknown {', '.join(bad) or '(empty)'}; allowed: {', '.join(SECTIONS)}")
    args.sections = tuple(s for s in SECTIONS if s in secs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {str(out)!r} exists and is not a folder")
    return args


def run(argv) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"needs torch and transformers (pip install 'sizeup[trace]'): {_err(exc)}")
    kind = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device cuda: no CUDA device visible to torch {torch.__version__}")
    if not args.tiny and kind == "cpu":
        print("note: full sizes on a CPU take far longer than the budget; most items will be skipped "
              "(use --tiny)", file=sys.stderr)
    transformers_logging(args)
    dev = Dev(torch, kind)
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # transformers' own deprecation notices (e.g. is_gradient_checkpointing in v5) say nothing about the run
            warnings.filterwarnings("ignore", category=FutureWarning)
            return _run_sections(args, budget, torch, dev, kind)
    finally:
        torch.set_num_threads(threads)  # in-process callers (the test suite) keep their setting


def _run_sections(args, budget: Budget, torch, dev: Dev, kind: str) -> int:
    if args.tiny and kind == "cpu":
        # tiny ops on a shared machine: one thread avoids thread-pool wake-up stalls that dominate the timings
        torch.set_num_threads(1)
    torch.manual_seed(0)
    catalog = CatalogView()
    md = metadata(torch, dev, args, catalog)
    res = Results(Path(args.out), md)
    res.write()
    funcs = {
        "gemm": lambda: gemm_section(torch, dev, budget, res, catalog, args.tiny),
        "attention": lambda: attention_section(torch, dev, budget, res, args.tiny),
        "bandwidth": lambda: bandwidth_section(torch, dev, budget, res, args.tiny),
        "training": lambda: training_section(torch, dev, budget, res, catalog, args.tiny, args.plan),
        "inference": lambda: inference_section(torch, dev, budget, res, catalog, args.tiny, args.plan),
    }
    for i, name in enumerate(args.sections):
        share = budget.start(name, args.sections[i:])
        t = time.perf_counter()
        try:
            funcs[name]()
        except Exception as exc:  # a section failing must not lose the others
            res.skip(name, f"section {name}", f"section aborted: {_err(exc)}")
            dev.free()
        budget.end()
        print(f"[gpu_truth] {name}: {len(res.sec(name)['rows'])} rows, {len(res.sec(name)['skipped'])} skipped, "
              f"{time.perf_counter() - t:.1f} s (share {share:.0f} s)", file=sys.stderr)
        res.write()
    for name in SECTIONS:
        if name not in args.sections:
            res.skip(name, f"section {name}", "not requested (--sections)")
    md["wall_s"] = round(budget.elapsed(), 3)
    md["section_wall_s"] = budget.used
    res.write()
    print(f"[gpu_truth] wrote {Path(args.out) / 'results.json'} in {budget.elapsed():.1f} s", file=sys.stderr)
    return 0


def transformers_logging(args) -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except Exception:
        pass


def main(argv=None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else list(argv))
    except UsageError as exc:
        print(f"gpu_truth.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gpu_truth.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
