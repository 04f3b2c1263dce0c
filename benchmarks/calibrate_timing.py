"""Compare `estimate_step` with the published throughput points of the dev set (developer tool).

    .venv/bin/python benchmarks/calibrate_timing.py [--verbose] [--catalog] [--dev PATH]
    EAGER=llmfoundry TE=nemo (defaults) pick the kernel style per id prefix; EAGER= TE= gives every point the default.

Predicts tokens/s/GPU (and model TFLOP/s per GPU, MFU) for every throughput point whose setup is
complete enough (model dims, GPU count, micro/global batch, seq, TP/PP/CP), and prints the relative
error per source family: median |err| and p90 |err|. Not a test; knobs are physical and shared by all points.
--catalog uses the GPU catalog (`load_catalog().gpu`) instead of the hand-built specs below.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

import yaml

from sizeup.core.timing import estimate_step
from sizeup.core.types import (
    Attention,     GpuSpec, MlpKind, ModelArch, NormKind, Peft, PositionKind, Precision, Recompute, Sharding, TrainSetup,
)

DEV = Path("/work/shared/validation/published_runs_dev.yaml")

# Hand-built GPU specs (hardware_catalog.yaml / hardware_notes.md numbers) used until the catalog has GPUs.
def _curve(mamf, peak, overhead_s=2e-6):
    # same form as catalog/data/efficiency.yaml: fraction(F) = mamf*F/(F + overhead*mamf*peak)
    return tuple((f, mamf * f / (f + overhead_s * mamf * peak)) for f in (1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14))


_A100_CURVE = _curve(0.869, 312e12)
_H100_CURVE = _curve(0.803, 989e12)


def _gpu(id_, mem_gb, hbm, peaks, intra, inter, curve, tdp=400):
    return GpuSpec(id=id_, name=id_, vendor="NVIDIA", memory_bytes=mem_gb * 1e9, hbm_bytes_per_s=hbm,
                   peak_flops_per_s=peaks, intra_node_bytes_per_s=intra, intra_node_link="NVLink", node_size=8,
                   inter_node_bytes_per_s=inter, host_link_bytes_per_s=25e9, tdp_w=tdp, matmul_efficiency=curve,
                   hbm_efficiency=0.85 if "h100" not in id_ else 0.90, collective_efficiency_intra=0.78, collective_efficiency_inter=0.75,
                   collective_latency_s=10e-6)


A100_PEAKS = {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12}
H100_PEAKS = {"fp32": 67e12, "tf32": 494.5e12, "bf16": 989e12, "fp16": 989e12, "fp8": 1979e12}
HAND_GPUS = {
    "a100-40gb": _gpu("a100-40gb", 40, 1.555e12, A100_PEAKS, 300e9, 25e9, _A100_CURVE),
    "a100-80gb": _gpu("a100-80gb", 80, 2.039e12, A100_PEAKS, 300e9, 25e9, _A100_CURVE),
    "h100-sxm": _gpu("h100-sxm", 80, 3.35e12, H100_PEAKS, 450e9, 50e9, _H100_CURVE, 700),
}

# Architectures the NeMo/Megatron rows name without dimensions (public configs: NeMo launcher yaml, papers).
KNOWN = {
    "GPT3-5B": dict(L=24, h=4096, a=32, kv=32, f=16384, V=51200, kind="gpt"),
    "GPT3-20B": dict(L=44, h=6144, a=48, kv=48, f=24576, V=51200, kind="gpt"),
    "GPT3-175B": dict(L=96, h=12288, a=96, kv=96, f=49152, V=51200, kind="gpt"),
    "Nemotron-8B": dict(L=32, h=4096, a=32, kv=32, f=16384, V=256000, kind="relu2"),
    "Nemotron-22B": dict(L=40, h=6144, a=48, kv=8, f=24576, V=256000, kind="relu2"),
    "Nemotron-340B": dict(L=96, h=18432, a=96, kv=8, f=73728, V=256000, kind="relu2"),
}


def gpu_for(text: str, use_catalog: bool) -> GpuSpec | None:
    t = (text or "").lower()
    key = None
    if "h100" in t:
        key = "h100-sxm"
    elif "a100" in t:
        key = "a100-40gb" if "40" in t else "a100-80gb"
    if key is None:
        return None
    if use_catalog:
        from sizeup.catalog import load_catalog

        return load_catalog().gpu(key)
    return HAND_GPUS[key]


def arch_for(p: dict) -> ModelArch | None:
    m = p["model"]
    name = m["name"] or ""
    at = (m.get("arch_type") or "").lower()
    k = None
    for key, spec in KNOWN.items():
        if key.lower() in name.lower().replace(" ", ""):
            k = spec
    if k:
        L, h, a, kv, f, V, kind = k["L"], k["h"], k["a"], k["kv"], k["f"], k["V"], k["kind"]
    else:
        L, h, a, V = m["layers"], m["hidden"], m["heads"], m["vocab"]
        kv = m["kv_heads"] or a
        f = m["ffn"]
        if not (L and h and a):
            return None
        kind = "mpt" if "mpt" in at or "mpt" in name.lower() else ("llama" if ("llama" in at or "llama" in name.lower()) else "gpt")
        V = V or (32000 if kind == "llama" else 50257)
        f = f or (4 * h)
    common = dict(id=p["id"], name=name, vocab_size=V, hidden_size=h, num_layers=L, num_heads=a, num_kv_heads=kv,
                  head_dim=h // a, ffn_size=f, max_seq_len=1 << 20)
    if kind == "llama":
        return ModelArch(**common, mlp_kind=MlpKind.SWIGLU)
    if kind == "mpt":
        return ModelArch(**common, mlp_kind=MlpKind.GELU, norm_kind=NormKind.LAYERNORM, position=PositionKind.ALIBI,
                         tie_embeddings=True)
    if kind == "relu2":
        return ModelArch(**common, mlp_kind=MlpKind.RELU, norm_kind=NormKind.LAYERNORM, norm_bias=True)
    return ModelArch(**common, mlp_kind=MlpKind.GELU, norm_kind=NormKind.LAYERNORM, norm_bias=True, qkv_bias=True,
                     out_bias=True, mlp_bias=True, position=PositionKind.LEARNED, num_position_embeddings=2048,
                     tie_embeddings=True)


def setup_for(p: dict, gpu: GpuSpec) -> TrainSetup | None:
    pa, m, hw = p["parallel"], p["model"], p["hardware"]
    n = hw["count"]
    s = m["seq_len"] or (pa["global_batch_tokens"] / pa["global_batch_seqs"] if pa["global_batch_tokens"] and pa["global_batch_seqs"] else None)
    if not (n and s and pa["micro_batch"]):
        return None
    tp, pp, cp = pa["tp"] or 1, pa["pp"] or 1, pa["cp"] or 1
    dp = max(1, n // (tp * pp * cp))
    gb = pa["global_batch_seqs"] or (pa["micro_batch"] * dp)
    ga = max(1, round(gb / (pa["micro_batch"] * dp)))
    prec_text = (pa["precision"] or "").lower() + " " + p["id"]
    precision = Precision.FP8 if "fp8" in prec_text else Precision.BF16_MIXED
    rc_text = (pa["recompute"] or "").lower()
    if "selective" in rc_text:
        rc = Recompute.SELECTIVE
    elif rc_text.startswith("none") or not rc_text:
        rc = Recompute.NONE
    else:
        rc = Recompute.FULL
    quote = p.get("quote") or ""
    if p["id"].startswith("llmfoundry"):
        # table column 'ActivationCheckpointing' (True/False) is the 5th from the end
        cols = [c.strip() for c in quote.strip("|' ").split("|")]
        if len(cols) >= 5 and cols[-3] in ("True", "False"):
            rc = Recompute.FULL if cols[-3] == "True" else Recompute.NONE
    shard_text = (pa["sharding"] or "").lower()
    if "full_shard" in shard_text or "fsdp" in shard_text:
        sharding = Sharding.FSDP_FULL
    elif p["id"].startswith("nemo") or "megatron" in p["id"]:
        sharding = Sharding.MEGATRON_DISTOPT
    else:
        sharding = Sharding.NONE
    peft = Peft.LORA if "lora" in p["id"] else Peft.NONE
    vpp = pa.get("virtual_pp") or 1
    # Megatron before FlashAttention (2019-2022 papers): fused softmax over materialized scores
    attention = Attention.MATH if p["id"].startswith(("narayanan21", "megatron-v1", "korthikanti22")) else Attention.FLASH
    return TrainSetup(gpus=n, tp=tp, pp=pp, cp=cp, micro_batch=pa["micro_batch"], grad_accum=ga, seq_len=int(s),
                      precision=precision, sharding=sharding, recompute=rc, peft=peft,
                      sequence_parallel=tp > 1, virtual_pp=vpp if pp > 1 else 1,
                      attention=attention)


EAGER_FAMILIES = tuple(x for x in __import__("os").environ.get("EAGER", "llmfoundry").split(",") if x)  # torch eager modules (+ flash attention); Megatron/NeMo/lit-gpt use fused kernels


TE_FAMILIES = tuple(x for x in __import__("os").environ.get("TE", "nemo").split(",") if x)  # Megatron-Core + TE


def kernel_for(pid: str) -> str:
    if pid.startswith(EAGER_FAMILIES):
        return "eager"
    return "te" if pid.startswith(TE_FAMILIES) else "fused"


def family(pid: str) -> str:
    if pid.startswith("llmfoundry"):
        return pid.split("-")[1]
    return pid.split("-")[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--catalog", action="store_true")
    ap.add_argument("--dev", default=str(DEV), help="published runs YAML (default: the shared dev set)")
    args = ap.parse_args(argv)
    pts = yaml.safe_load(Path(args.dev).read_text())["points"]
    errs: dict[str, list[float]] = {}
    mfu_errs: dict[str, list[float]] = {}
    rows = []
    for p in pts:
        meas = {x["quantity"]: x["value"] for x in p["measured"]}
        if "throughput_tokens_per_s_per_gpu" not in meas and "model_tflops_per_gpu" not in meas \
                and "achieved_tflops_per_gpu" not in meas:
            continue
        gpu = gpu_for(p["hardware"]["gpu"], args.catalog)
        arch = arch_for(p) if gpu else None
        setup = setup_for(p, gpu) if arch else None
        if setup is None:
            continue
        est = estimate_step(arch, setup, gpu, kernel=kernel_for(p["id"]))
        if "throughput_tokens_per_s_per_gpu" in meas:
            pred, obs = est.tokens_per_s_per_gpu, meas["throughput_tokens_per_s_per_gpu"]
        elif "achieved_tflops_per_gpu" in meas:
            pred, obs = est.hardware_flops_per_step / est.step_time_s / setup.gpus / 1e12, meas["achieved_tflops_per_gpu"]
        else:
            pred, obs = est.model_flops_per_s_per_gpu / 1e12, meas["model_tflops_per_gpu"]
        e = pred / obs - 1
        fam = family(p["id"])
        errs.setdefault(fam, []).append(e)
        if "mfu" in meas:
            # llm-foundry / PaLM MFU: full-s^2 attention, peak of the compute dtype (= est.mfu's convention)
            mfu_errs.setdefault(fam, []).append(est.mfu / (meas["mfu"] / 100) - 1)
        rows.append((p["id"], obs, pred, e, est.mfu, meas.get("mfu"), est.bound, dict(est.breakdown)))
    for r in rows:
        if args.verbose:
            bd = r[7]
            top = ", ".join(f"{k.split('/')[-1]}={v:.3g}" for k, v in sorted(bd.items(), key=lambda kv: -kv[1])[:5] if v > 0)
            print(f"{r[0]:55s} obs={r[1]:9.1f} pred={r[2]:9.1f} err={100*r[3]:+6.1f}% mfu={100*r[4]:5.1f} "
                  f"(pub {r[5]}) {r[6]:8s} {top}")
    allerr = []
    print(f"{'family':18s} {'n':>4s} {'median|e|':>10s} {'p90|e|':>8s} {'mean e':>8s}")
    for fam, es in sorted(errs.items()):
        a = sorted(abs(x) for x in es)
        allerr += es
        p90 = a[min(len(a) - 1, int(0.9 * len(a)))]
        print(f"{fam:18s} {len(es):4d} {100*statistics.median(a):9.1f}% {100*p90:7.1f}% {100*statistics.mean(es):+7.1f}%")
    print("MFU vs published MFU:")
    for fam, es in sorted(mfu_errs.items()):
        a = sorted(abs(x) for x in es)
        print(f"{fam:18s} {len(es):4d} {100*statistics.median(a):9.1f}% {100*a[min(len(a)-1, int(0.9*len(a)))]:7.1f}% "
              f"{100*statistics.mean(es):+7.1f}%")
    a = sorted(abs(x) for x in allerr)
    print(f"{'ALL':18s} {len(a):4d} {100*statistics.median(a):9.1f}% {100*a[int(0.9*len(a))]:7.1f}% "
          f"{100*statistics.mean(allerr):+7.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
