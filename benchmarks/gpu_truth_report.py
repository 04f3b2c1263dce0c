#!/usr/bin/env python3
"""Turn benchmarks/gpu_truth.py results into catalog data, development-set rows and a predicted-vs-measured table.

    python benchmarks/gpu_truth_report.py catalog RESULTS [-o FILE]        # efficiency source (a --catalog file)
    python benchmarks/gpu_truth_report.py rows RESULTS [-o FILE] [--commit SHA]   # published-runs rows
    python benchmarks/gpu_truth_report.py compare RESULTS|ROWS.yaml [--catalog FILE] [--markdown|--json]
    python benchmarks/gpu_truth_report.py all RESULTS [-o DIR]             # all three, written next to results.json
    python benchmarks/gpu_truth_report.py merge RESULTS RESULTS... -o DIR  # runs of one machine -> one results.json

RESULTS is the folder gpu_truth.py wrote (or its results.json). Needs sizeup importable (PYTHONPATH=src or an
installed sizeup) for `rows` validation and `compare`; the measuring machine does not need it.

catalog: a user catalog file (`sizeup ... --catalog FILE`) that overrides the measured GPU's efficiency knobs:
  matmul_mamf      = best bf16 GEMM fraction of the dense bf16 peak over the measured surface (MAMF definition,
                     ml-engineering: the maximum over the shapes searched);
  matmul_mamf_fp8  = the same for fp8 torch._scaled_mm with tensorwise scales (rowwise in the note);
  small_gemm_overhead_s = t0 of the catalog's curve fraction(F) = mamf*F/(F + t0*mamf*peak)
                     (efficiency.yaml header), least squares in log(fraction) over every bf16 surface shape;
  hbm_efficiency   = best copy / add / scale bandwidth over the catalog HBM bandwidth;
plus, as comments, the measured bf16 curve per FLOP decade, SDPA attention efficiencies for timing.yaml and the
hw_sources.yaml entry to add when adopting the numbers.

rows: one category C point (memory: max_memory_allocated, max_memory_reserved, the nvidia-smi figure, exact
model-state bytes) and one category B point (step time, tokens/s) per training configuration, every field
taken from the run (source names the benchmark and the commit).

compare: sizeup's prediction for every row (sizeup.validate.runner.predict_point, i.e. core.memory.estimate_memory
and core.timing.estimate_step through the validator's mapping), with --catalog FILE a second prediction with the
measured efficiencies applied: the before/after table.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "src" / "sizeup").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

GIB = 2.0**30


class UsageError(Exception):
    """Bad input: one line, exit code 2."""


# --------------------------------------------------------------------------- input


def load_results(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise UsageError(f"{path}: no results.json (run benchmarks/gpu_truth.py OUT first)")
    try:
        data = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or "metadata" not in data or "sections" not in data:
        raise UsageError(f"{p}: not a gpu_truth.py results file (needs 'metadata' and 'sections')")
    return data


def fill_catalog(results: dict) -> dict:
    """Where the measuring machine could not resolve the GPU in sizeup's catalog (catalog_gpu null, e.g. no
    pydantic there), resolve it here and derive the efficiencies from the measured rates:
    efficiency = achieved FLOP/s / catalog dense peak of the dtype, hbm_fraction = bytes/s / catalog HBM bytes/s
    (the same definitions gpu_truth.py applies when it can)."""
    md = results["metadata"]
    if md.get("catalog_gpu") or md.get("device") != "cuda":
        return results
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_truth import CatalogView

    gpu = CatalogView().gpu(str(md.get("device_name") or ""))
    if not gpu:
        return results
    md["catalog_gpu"] = gpu
    md["catalog_gpu_note"] = ("resolved after the run by gpu_truth_report.py (the measuring machine could not: "
                              f"{md.get('catalog_gpu_note')}); efficiencies derived from the measured rates")
    peaks, hbm = gpu["peak_flops_per_s"], gpu.get("hbm_bytes_per_s")
    for r in _rows(results, "gemm"):
        if r.get("efficiency") is None and r.get("tflops") and peaks.get(r.get("dtype")):
            r["efficiency"] = r["tflops"] * 1e12 / peaks[r["dtype"]]
    for r in _rows(results, "attention"):
        for k in ("fwd", "bwd"):
            if r.get(f"{k}_efficiency") is None and r.get(f"{k}_tflops") and peaks.get("bf16"):
                r[f"{k}_efficiency"] = r[f"{k}_tflops"] * 1e12 / peaks["bf16"]
    for r in _rows(results, "bandwidth"):
        if r.get("hbm_fraction") is None and r.get("gbytes_per_s") and hbm:
            r["hbm_fraction"] = r["gbytes_per_s"] * 1e9 / hbm
    return results


def merge_results(paths: list[str]) -> dict:
    """Several runs on one machine type -> one results dict: rows concatenated per section (each row keeps the
    index of its run in metadata.runs), metadata of the first run that measured GEMMs (else the first run)."""
    runs = [fill_catalog(load_results(p)) for p in paths]
    names = {r["metadata"].get("device_name") for r in runs}
    if len(names) > 1:
        raise UsageError(f"runs from different devices cannot be merged: {sorted(map(str, names))}")
    main = next((r for r in runs if _rows(r, "gemm")), runs[0])
    md = copy.deepcopy(main["metadata"])
    md["runs"] = [dict(r["metadata"], results=str(p)) for r, p in zip(runs, paths)]
    sections: dict = {}
    for i, r in enumerate(runs):
        for name, sec in r["sections"].items():
            dst = sections.setdefault(name, {"rows": [], "skipped": [], "notes": {}})
            dst["rows"] += [dict(row, run=i) for row in sec.get("rows", [])]
            dst["skipped"] += [dict(x, run=i) for x in sec.get("skipped", [])]
            for k, v in (sec.get("notes") or {}).items():
                dst["notes"].setdefault(k, v)
    return {"metadata": md, "sections": sections}


def _rows(results: dict, section: str) -> list[dict]:
    return [r for r in results["sections"].get(section, {}).get("rows", []) if isinstance(r, dict)]


def _source_tag(md: dict, commit: str | None) -> str:
    torch_v = md.get("torch_version")
    date = str(md.get("date_utc", ""))[:10]
    ref = f"@{commit[:12]}" if commit else f"script sha256 {str(md.get('script_sha256', ''))[:12]}"
    return f"benchmarks/gpu_truth.py {ref}, torch {torch_v}, {date}"


def _commit(md: dict, override: str | None) -> str | None:
    if override:
        if not re.fullmatch(r"[0-9a-fA-F]{7,40}", override):
            raise UsageError(f"--commit must be a git commit hash (7-40 hex digits), got {override!r}")
        return override
    return md.get("git_commit")


# --------------------------------------------------------------------------- (a) catalog efficiency source


def fit_small_gemm_overhead(points: list[tuple[float, float]], mamf: float, peak: float) -> tuple[float, float]:
    """t0 (s) of fraction(F) = mamf*F/(F + t0*mamf*peak) minimising the squared log error over (F, fraction)
    points; returns (t0, median |log error| as a fraction). Golden-section search on log t0 in [1e-9, 1e-3] s."""
    if not points:
        raise UsageError("no bf16 GEMM rows to fit small_gemm_overhead_s")

    def loss(log_t0: float) -> float:
        t0 = math.exp(log_t0)
        return sum((math.log(mamf * F / (F + t0 * mamf * peak)) - math.log(f)) ** 2 for F, f in points)

    lo, hi = math.log(1e-9), math.log(1e-3)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    la, lb = loss(a), loss(b)
    for _ in range(200):
        if la < lb:
            hi, b, lb = b, a, la
            a = hi - g * (hi - lo)
            la = loss(a)
        else:
            lo, a, la = a, b, lb
            b = lo + g * (hi - lo)
            lb = loss(b)
    t0 = math.exp((lo + hi) / 2)
    errs = [abs(math.log(mamf * F / (F + t0 * mamf * peak)) - math.log(f)) for F, f in points]
    return t0, math.expm1(statistics.median(errs))


def catalog_snippet(results: dict, commit: str | None = None) -> str:
    """A user catalog file (YAML text) overriding the measured GPU's efficiency knobs; comments carry the rest."""
    import yaml

    md = results["metadata"]
    gpu = md.get("catalog_gpu")
    if md.get("device") != "cuda":
        raise UsageError(f"these results were measured on {md.get('device_name') or md.get('device')}, not a GPU: "
                         "no catalog efficiency source can come from them")
    if not gpu:
        raise UsageError(f"the measured GPU {md.get('device_name')!r} is not in sizeup's catalog (add it first)")
    peak16, peak8 = gpu["peak_flops_per_s"].get("bf16"), gpu["peak_flops_per_s"].get("fp8")
    commit = _commit(md, commit)
    tag = _source_tag(md, commit)
    gemm = _rows(results, "gemm")
    surf = [r for r in gemm if r.get("kind") == "surface" and r.get("time_s_median")]
    bf = [r for r in surf if r["dtype"] == "bf16" and r.get("efficiency")]
    if not bf:
        raise UsageError("no bf16 GEMM surface rows with an efficiency in the results")
    best = max(bf, key=lambda r: r["efficiency"])
    eff: dict = {}
    mamf = best["efficiency"]
    eff["matmul_mamf"] = {
        "value": round(mamf, 4), "source": "gpu_truth_" + gpu["id"],
        "note": (f"{tag}: best bf16 torch.mm over {len(bf)} shapes M,N,K in 256..16384: {best['tflops']:.1f} TFLOP/s "
                 f"at M={best['M']} N={best['N']} K={best['K']} / dense bf16 peak {peak16 / 1e12:g} TFLOP/s")}
    t0, med_err = fit_small_gemm_overhead([(r["flops"], r["efficiency"]) for r in bf], mamf, peak16)
    eff["small_gemm_overhead_s"] = {
        "value": float(f"{t0:.3g}"), "source": "gpu_truth_" + gpu["id"],
        "note": (f"{tag}: least-squares fit of fraction(F) = mamf*F/(F + t0*mamf*peak) in log(fraction) over all "
                 f"{len(bf)} bf16 surface shapes; median |error| of the fitted curve {100 * med_err:.0f} %")}
    fp8 = {s: [r for r in surf if r["dtype"] == "fp8" and r.get("scaling") == s and r.get("efficiency")]
           for s in ("tensorwise", "rowwise")}
    if fp8["tensorwise"]:
        b8 = max(fp8["tensorwise"], key=lambda r: r["efficiency"])
        row_note = ""
        if fp8["rowwise"]:
            r8 = max(fp8["rowwise"], key=lambda r: r["efficiency"])
            row_note = f"; rowwise scales best {r8['tflops']:.1f} TFLOP/s ({r8['efficiency']:.3f})"
        eff["matmul_mamf_fp8"] = {
            "value": round(b8["efficiency"], 4), "source": "gpu_truth_" + gpu["id"],
            "note": (f"{tag}: best torch._scaled_mm e4m3 tensorwise scales, bf16 out: {b8['tflops']:.1f} TFLOP/s at "
                     f"M={b8['M']} N={b8['N']} K={b8['K']} / dense fp8 peak {peak8 / 1e12:g} TFLOP/s{row_note}")}
    bw = [r for r in _rows(results, "bandwidth") if r.get("op") in ("copy", "add", "mul_scalar") and r.get("hbm_fraction")]
    if bw:
        bb = max(bw, key=lambda r: r["hbm_fraction"])
        eff["hbm_efficiency"] = {
            "value": round(bb["hbm_fraction"], 4), "source": "gpu_truth_" + gpu["id"],
            "note": (f"{tag}: best elementwise bandwidth ({bb['op']}, {bb['shape']}): {bb['gbytes_per_s']:.0f} GB/s / "
                     f"catalog HBM {gpu['hbm_bytes_per_s'] / 1e9:.0f} GB/s")}
    body = {"gpus": {gpu["id"]: {"efficiency": eff}}}
    lines = [
        f"# Efficiency of {md.get('device_name')} measured by {tag} (sizeup catalog id {gpu['id']}).",
        "# A user catalog file: `sizeup train ... --catalog THIS_FILE` applies it. To adopt it into the packaged catalog,",
        f"# merge gpus.{gpu['id']}.efficiency into src/sizeup/catalog/data/gpus/{gpu['id']}.yaml and add the",
        "# hw_sources.yaml entry below.",
        "",
        yaml.safe_dump(body, sort_keys=False, width=118).rstrip(),
        "",
        "# hw_sources.yaml entry:",
    ]
    src = {"gpu_truth_" + gpu["id"]: {
        "title": f"sizeup benchmarks/gpu_truth.py on one {md.get('device_name')} (torch {md.get('torch_version')}, "
                 f"CUDA {md.get('cuda_version')}, driver {_driver(md)})",
        "where": f"benchmarks/gpu_truth.py @{commit or 'uncommitted'} (script sha256 {md.get('script_sha256')})",
        "date": str(md.get("date_utc", ""))[:10]}}
    lines += ["#   " + x for x in yaml.safe_dump({"sources": src}, sort_keys=False, width=110).splitlines()[1:]]
    lines += ["", "# Measured bf16 GEMM fraction of peak per FLOP decade (median over the surface shapes in the",
              "# decade; usable as efficiency.matmul_curve, which replaces the mamf/t0 curve):"]
    curve = _decade_curve(bf)
    lines += [f"#   [{F:.0e}, {f:.3f}]   # {n} shapes" for F, f, n in curve]
    lines += _attention_comments(results, gpu["id"], tag)
    return "\n".join(lines) + "\n"


def _driver(md: dict) -> str:
    smi = md.get("nvidia_smi") or []
    return smi[0][1] if smi and len(smi[0]) > 1 else "unknown"


def _decade_curve(rows: list[dict]) -> list[tuple[float, float, int]]:
    bins: dict[int, list[float]] = {}
    for r in rows:
        bins.setdefault(round(math.log10(r["flops"])), []).append(r["efficiency"])
    return [(10.0**k, statistics.median(v), len(v)) for k, v in sorted(bins.items())]


def _attention_comments(results: dict, gpu_id: str, tag: str) -> list[str]:
    att = [r for r in _rows(results, "attention") if r.get("backend") == "default" and r.get("fwd_efficiency")]
    if not att:
        return []
    out = ["", f"# timing.yaml candidates (not applied by --catalog), {tag}:",
           "# SDPA default dispatch, bf16, fraction of the dense bf16 peak, median over seq >= 2048:"]
    summary = {}
    for d in sorted({r["head_dim"] for r in att}, reverse=True):
        for causal in (True, False):
            sel = [r for r in att if r["head_dim"] == d and r["causal"] == causal and r["seq"] >= 2048
                   and r.get("bwd_efficiency")]
            if not sel:
                continue
            fwd = statistics.median(r["fwd_efficiency"] for r in sel)
            bwd = statistics.median(r["bwd_efficiency"] for r in sel)
            summary[(d, causal)] = (fwd, bwd)
            out.append(f"#   head_dim {d} {'causal' if causal else 'full'}: [fwd {fwd:.3f}, bwd {bwd:.3f}]  ({len(sel)} shapes)")
    if (128, True) in summary:
        f, b = summary[(128, True)]
        out.append(f"#   attention_efficiency.value.{gpu_id}: [{f:.3f}, {b:.3f}]   # causal, head dim 128")
    if (128, True) in summary and (64, True) in summary:
        r = summary[(64, True)][0] / summary[(128, True)][0]
        if r > 0:
            out.append(f"#   attention_head_dim_exponent: {math.log(r) / math.log(0.5):.3f}   # from fwd d64/d128 = {r:.3f}")
    return out


# --------------------------------------------------------------------------- (b) development-set rows

_PRECISION = {
    "bf16-mixed": "bf16 mixed precision (torch.autocast bfloat16; fp32 master weights, fp32 gradients and AdamW states)",
    "bf16": "pure bf16 (weights, gradients and AdamW states in bf16)",
}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-")


def dev_rows(results: dict, commit: str | None = None) -> tuple[list[dict], list[str]]:
    """(points, notes): one C and one B point per measured training configuration; notes list what was left out."""
    md = results["metadata"]
    commit = _commit(md, commit)
    left_out = []
    points = []
    gpu_name = md.get("device_name") or md.get("device")
    cuda = md.get("device") == "cuda"
    date = str(md.get("date_utc", ""))[:10]
    title = (f"sizeup benchmarks/gpu_truth.py on one {gpu_name}: training steps of random-weight Llama-style models "
             f"(huggingface/transformers {md.get('transformers_version')} LlamaForCausalLM, torch "
             f"{md.get('torch_version')}, {date})")
    source = {"title": title, "url": None, "repo": None, "path": "benchmarks/gpu_truth.py", "commit": commit,
              "via": (f"results.json of the run (script sha256 {md.get('script_sha256')}"
                      + ("; working tree had uncommitted changes" if md.get("git_dirty") else "") + ")"),
              "primary": True}
    protocol = results["sections"]["training"].get("notes", {}).get("protocol", "")
    runs = md.get("runs") or []
    seen: set[str] = set()
    for i, r in enumerate(results["sections"]["training"].get("rows", [])):
        if runs and isinstance(r.get("run"), int) and 0 <= r["run"] < len(runs):
            rmd = runs[r["run"]]
            source = dict(source, commit=rmd.get("git_commit") if not commit or commit == md.get("git_commit") else commit,
                          via=(f"{rmd.get('results')} (run of {str(rmd.get('date_utc', ''))[:19]}, script sha256 "
                               f"{rmd.get('script_sha256')}" + ("; working tree had uncommitted changes"
                                                                if rmd.get("git_dirty") else "") + ")"))
        if r.get("error"):
            left_out.append(f"training row {i} ({r.get('item')}): {r.get('error')}")
            continue
        lora = r.get("peft") == "lora"
        full = r["layers"] == r["layers_full"]
        base_name = r["model_name"]
        name = (f"{base_name} (random weights)" if full
                else f"{base_name}, {r['layers']} of {r['layers_full']} layers (random weights)")
        arch_type = "dense decoder (RMSNorm, SwiGLU, RoPE), Llama-style"
        if r.get("tie_embeddings"):
            arch_type += ", tied input/output embeddings"
        model = {"name": name, "params": float(r.get("params_base") or r["params_total"]), "layers": r["layers"],
                 "hidden": r["hidden"], "heads": r["heads"], "kv_heads": r["kv_heads"], "ffn": r["ffn"],
                 "vocab": r["vocab"], "seq_len": r["seq_len"], "arch_type": arch_type,
                 "arch_source": f"transformers LlamaConfig built by gpu_truth.py (model id {r['model_id']}, head_dim "
                                f"{r['head_dim']})",
                 "notes": r.get("layers_note")}
        hardware = {"gpu": gpu_name,
                    "gpu_memory_gb": (md["device_memory_bytes"] / 1e9) if md.get("device_memory_bytes") else None,
                    "count": 1, "interconnect": None,
                    "notes": (f"compute capability {md.get('compute_capability')}, CUDA {md.get('cuda_version')}, "
                              f"driver {_driver(md)}") if cuda else f"CPU run ({md.get('platform')})"}
        api = r.get("recompute_api") or "use_reentrant=False"
        if r["recompute"] == "every-2":
            cl = r.get("checkpointed_layers") or []
            recompute = (f"full activation checkpointing of every 2nd decoder layer only ({len(cl)} of {r['layers']} "
                         f"layers: {','.join(map(str, cl))}; Hugging Face {api})")
        elif r["recompute"] == "hf":
            recompute = f"full activation checkpointing of every decoder layer (Hugging Face {api})"
        else:
            recompute = "none"
        if lora:
            precision = (f"bf16 mixed precision: frozen bf16 base weights, LoRA adapters (master copies) and their "
                         f"AdamW states in {r.get('adapter_dtype')}, torch.autocast bfloat16")
        else:
            precision = _PRECISION[r["precision"]]
        fused = r["optimizer"] == "adamw-fused"
        other = "huggingface/transformers LlamaForCausalLM, attn_implementation=sdpa, single process"
        if lora:
            other = (f"LoRA r={r['lora_rank']} alpha=32 on all linear layers except lm_head (peft "
                     f"{md.get('peft_version')} target_modules=all-linear: {','.join(r.get('lora_targets') or [])}); "
                     + other)
        parallel = {"tp": 1, "pp": 1, "dp": 1, "cp": 1, "ep": 1, "virtual_pp": None,
                    "sharding": "no sharding (single GPU)", "micro_batch": r["micro_batch"], "grad_accum": 1,
                    "global_batch_seqs": r["micro_batch"], "global_batch_tokens": float(r["micro_batch"] * r["seq_len"]),
                    "recompute": recompute, "precision": precision,
                    "optimizer": f"AdamW (torch.optim.AdamW {'fused=True' if fused else 'foreach=True'}, betas 0.9/0.95)",
                    "other": other}
        kind = (f"LoRA fine-tuning steps (peft r={r['lora_rank']}, all linear layers), random token ids" if lora
                else "full training steps (all weights trained), random token ids")
        workload = {"kind": kind, "steps": float(r["measured_steps"]), "batch_size": r["micro_batch"],
                    "seq_len": r["seq_len"], "notes": protocol or None}
        pid = _slug(f"gpu-truth-{gpu_name}-{r['model_id']}-l{r['layers']}-mb{r['micro_batch']}-s{r['seq_len']}-"
                    f"{'lora' if lora else r['precision']}-{r['optimizer']}-rc-{r['recompute']}")
        if pid in seen:  # the same configuration measured again in another merged run: keep both, named by run
            pid = f"{pid}-run{int(r['run']) + 1}" if isinstance(r.get("run"), int) else f"{pid}-{i}"
        seen.add(pid)
        common = {"source": [source], "model": model, "hardware": hardware, "parallel": parallel,
                  "workload": workload, "completeness": "full"}
        mem = []
        notes_mem = "over the measured steps; peak counters reset after the warm-up steps (optimizer states allocated)"
        if r.get("max_memory_allocated_bytes"):
            mem.append({"quantity": "peak_memory_allocated", "value": r["max_memory_allocated_bytes"] / GIB,
                        "unit": "GiB", "notes": f"torch.cuda.max_memory_allocated() {notes_mem}"})
        if r.get("max_memory_reserved_bytes"):
            mem.append({"quantity": "peak_memory_reserved", "value": r["max_memory_reserved_bytes"] / GIB,
                        "unit": "GiB", "notes": f"torch.cuda.max_memory_reserved() {notes_mem}"})
        if r.get("nvidia_smi_used_bytes"):
            mem.append({"quantity": "gpu_memory_used_nvml", "value": r["nvidia_smi_used_bytes"] / GIB, "unit": "GiB",
                        "notes": ("nvidia-smi memory.used of the device right after the measured steps (CUDA context "
                                  f"included; torch reserved at that moment {r['torch_reserved_at_smi_bytes'] / GIB:.4f} GiB)")})
        mem.append({"quantity": "model_state_memory_per_gpu", "value": r["model_state_bytes"] / GIB, "unit": "GiB",
                    "notes": (f"exact tensor bytes: weights {r['param_bytes']} + gradients {r['grad_bytes']} + AdamW "
                              f"states {r['optimizer_state_bytes']} B")})
        quote = (f"results.json sections.training.rows[{i}] ({r['item']}): step_time_s_median={r['step_time_s_median']!r}, "
                 f"tokens_per_s={r['tokens_per_s']!r}, max_memory_allocated_bytes={r.get('max_memory_allocated_bytes')}, "
                 f"max_memory_reserved_bytes={r.get('max_memory_reserved_bytes')}, "
                 f"nvidia_smi_used_bytes={r.get('nvidia_smi_used_bytes')}, model_state_bytes={r['model_state_bytes']}")
        note = "Measured by sizeup's own benchmark; every setting is stated in the fields."
        if not cuda:
            note += " CPU run: the CUDA allocator and nvidia-smi figures do not exist, only exact model-state bytes."
        points.append({"id": pid + "-mem", "category": "C", **copy.deepcopy(common), "quote": quote, "measured": mem, "notes": note})
        points.append({"id": pid + "-tput", "category": "B", **copy.deepcopy(common), "quote": quote, "measured": [
            {"quantity": "step_time", "value": r["step_time_s_median"], "unit": "s",
             "notes": f"median of {len(r['step_times_s'])} measured steps (forward, backward, optimizer step): {r['step_times_s']}"},
            {"quantity": "throughput_tokens_per_s", "value": r["tokens_per_s"], "unit": "tokens/s",
             "notes": f"{r['tokens_per_step']} tokens per step / median step time"}], "notes": note})
    for s in results["sections"]["training"].get("skipped", []):
        left_out.append(f"not measured: {s['item']}: {s['reason']}")
    return points, left_out


def rows_yaml(results: dict, commit: str | None = None) -> str:
    import yaml

    points, left_out = dev_rows(results, commit)
    md = results["metadata"]
    head = [f"# Development-set rows from benchmarks/gpu_truth.py ({_source_tag(md, _commit(md, commit))}).",
            "# Schema: /work/shared/validation/README.md (published-runs). Load with sizeup.validate.points.load_points",
            "# or `sizeup validate THIS_FILE`."]
    head += [f"# left out: {x}" for x in left_out]
    body = yaml.safe_dump({"schema_version": 1, "generated": str(md.get("date_utc", ""))[:10], "points": points},
                          sort_keys=False, width=120, allow_unicode=True)
    return "\n".join(head) + "\n" + body


# --------------------------------------------------------------------------- comparison


def compare(points_path: str | Path, catalog_file: str | None = None) -> list[dict]:
    """One dict per measured quantity: measured, predicted (packaged catalog), and predicted with catalog_file."""
    from sizeup.catalog import load_catalog
    from sizeup.errors import SizeupError
    from sizeup.validate.points import load_points
    from sizeup.validate.runner import predict_point

    try:
        points = load_points(points_path)
        before = load_catalog()
        after = load_catalog((catalog_file,)) if catalog_file else None
        if after is not None:
            after.gpus  # noqa: B018 - validate the file now (one-line error)
    except SizeupError as exc:
        raise UsageError(str(exc)) from None
    out = []
    for p in points:
        rows_b = predict_point(p, before)
        rows_a = predict_point(p, after) if after is not None else [None] * len(rows_b)
        for rb, ra in zip(rows_b, rows_a):
            d = {"id": rb.id, "category": rb.category, "quantity": rb.quantity, "unit": rb.unit,
                 "measured": rb.measured, "predicted": rb.predicted, "error_pct": rb.error_pct,
                 "skipped": rb.skipped, "setup": rb.setup}
            if ra is not None:
                d.update({"predicted_after": ra.predicted, "error_pct_after": ra.error_pct})
            out.append(d)
    return out


def _f(x) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _p(x) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def format_table(rows: list[dict], markdown: bool = False) -> str:
    after = any("predicted_after" in r for r in rows)
    head = ["id", "quantity", "unit", "measured", "predicted", "error"]
    if after:
        head += ["predicted (after)", "error (after)"]
    lines = []
    body = []
    for r in rows:
        cells = [r["id"], r["quantity"], r["unit"], _f(r["measured"]), _f(r["predicted"]),
                 _p(r["error_pct"]) if not r["skipped"] else f"skipped: {r['skipped']}"]
        if after:
            cells += [_f(r.get("predicted_after")), _p(r.get("error_pct_after"))]
        body.append(cells)
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in body]
    else:
        widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(head)]
        widths = [min(w, 70) for w in widths]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        lines += ["  ".join(c[:70].ljust(w) for c, w in zip(cells, widths)) for cells in body]
    lines.append("")
    lines += summary_lines(rows)
    return "\n".join(lines) + "\n"


def summary_lines(rows: list[dict]) -> list[str]:
    out = []
    by_q: dict[str, list[dict]] = {}
    for r in rows:
        by_q.setdefault(r["quantity"], []).append(r)
    for q, rs in by_q.items():
        ok = [r for r in rs if r["error_pct"] is not None]
        line = f"{q}: {len(ok)} of {len(rs)} predicted"
        if ok:
            errs = [abs(r["error_pct"]) for r in ok]
            line += f", median |error| {statistics.median(errs):.1f}%, max {max(errs):.1f}%"
        ok_a = [r for r in rs if r.get("error_pct_after") is not None]
        if ok_a:
            line += f"; after: median |error| {statistics.median(abs(r['error_pct_after']) for r in ok_a):.1f}%"
        out.append(line)
    return out


# --------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main(argv=None) -> int:
    p = _Parser(prog="gpu_truth_report.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    c = sub.add_parser("catalog", help="catalog efficiency source (a --catalog file)")
    c.add_argument("results")
    c.add_argument("-o", "--output")
    c.add_argument("--commit")
    r = sub.add_parser("rows", help="development-set rows (published-runs schema)")
    r.add_argument("results")
    r.add_argument("-o", "--output")
    r.add_argument("--commit")
    m = sub.add_parser("compare", help="sizeup's prediction vs measured for the rows")
    m.add_argument("input", help="results folder / results.json, or a rows YAML file")
    m.add_argument("--catalog", help="a catalog file (e.g. from `catalog`) for the 'after' prediction")
    fmt = m.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true")
    fmt.add_argument("--json", action="store_true")
    g = sub.add_parser("merge", help="several runs of one machine type -> one results.json")
    g.add_argument("results", nargs="+")
    g.add_argument("-o", "--output", required=True, help="folder for the merged results.json")
    a = sub.add_parser("all", help="catalog snippet + rows + comparison, written to a folder")
    a.add_argument("results")
    a.add_argument("-o", "--output", help="folder (default: the results folder)")
    a.add_argument("--commit")
    try:
        args = p.parse_args(sys.argv[1:] if argv is None else argv)
        if args.cmd == "catalog":
            _emit(catalog_snippet(load_results(args.results), args.commit), args.output)
        elif args.cmd == "rows":
            _emit(rows_yaml(load_results(args.results), args.commit), args.output)
        elif args.cmd == "compare":
            src = Path(args.input)
            if src.suffix.lower() in (".yaml", ".yml"):
                if not src.is_file():
                    raise UsageError(f"{src}: not found")
                rows = compare(src, args.catalog)
            else:
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "rows.yaml"
                    path.write_text(rows_yaml(load_results(src)))
                    rows = compare(path, args.catalog)
            if args.json:
                print(json.dumps(rows, indent=1))
            else:
                sys.stdout.write(format_table(rows, markdown=args.markdown))
        elif args.cmd == "merge":
            merged = merge_results(args.results)
            out = Path(args.output)
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(merged, indent=1))
            print(f"wrote {out / 'results.json'} ({len(args.results)} runs)", file=sys.stderr)
        else:
            run_all(args.results, args.output, args.commit)
    except UsageError as exc:
        print(f"gpu_truth_report.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_all(results_path: str, out: str | None, commit: str | None) -> dict:
    results = fill_catalog(load_results(results_path))
    folder = Path(out) if out else (Path(results_path) if Path(results_path).is_dir() else Path(results_path).parent)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    rows_path = folder / "dev_rows.yaml"
    rows_path.write_text(rows_yaml(results, commit))
    written["rows"] = rows_path
    cat_path = None
    try:
        text = catalog_snippet(results, commit)
    except UsageError as exc:
        print(f"catalog snippet not written: {exc}", file=sys.stderr)
    else:
        cat_path = folder / f"catalog_{results['metadata']['catalog_gpu']['id']}.yaml"
        cat_path.write_text(text)
        written["catalog"] = cat_path
    rows = compare(rows_path, str(cat_path) if cat_path else None)
    (folder / "comparison.json").write_text(json.dumps(rows, indent=1))
    md_text = format_table(rows, markdown=True)
    (folder / "comparison.md").write_text(md_text)
    written["comparison"] = folder / "comparison.md"
    sys.stdout.write(format_table(rows))
    for k, v in written.items():
        print(f"{k}: {v}", file=sys.stderr)
    return written


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    sys.exit(main())
