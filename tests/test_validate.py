"""`sizeup validate`: reader, text -> setup mapping, unit conversion, definitions, skip reasons, CLI,
and accuracy against published runs (validate/data/published_runs_dev.yaml, a byte copy of
/work/shared/validation/published_runs_dev.yaml; every point quotes its source row)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest

from sizeup.core.types import (
    Attention, GpuSpec, Offload, Optimizer, Peft, PipelineSchedule, Precision, Recompute, Sharding, TrainSetup,
)
from sizeup.validate.mapping import (
    build_setup, infer_kernel, parse_offload, parse_optimizer, parse_peft, parse_precision, parse_recompute,
    parse_sharding, stand_in_arch,
)
from sizeup.validate.points import DEV_SET, BadPoint, Point, Skip, load_points, source_family
from sizeup.validate.runner import Context, Row, from_si, predict_point, summarize, unit_kind

SHARED_DEV = Path("/work/shared/validation/published_runs_dev.yaml")


@pytest.fixture(scope="module")
def points() -> dict[str, Point]:
    return {p.id: p for p in load_points()}


def _gpu(name="H100 SXM", bf16=989e12, fp8=1979e12, node=8) -> GpuSpec:
    """A hand-built GpuSpec: peaks as in the dev set's notes ('~989 H100 bf16, ~1979 H100 fp8')."""
    return GpuSpec(id=name.lower().replace(" ", "-"), name=name, vendor="NVIDIA", memory_bytes=80e9,
                   hbm_bytes_per_s=3.35e12, peak_flops_per_s={"bf16": bf16, "fp16": bf16, "fp8": fp8, "fp32": 67e12},
                   intra_node_bytes_per_s=450e9, intra_node_link="NVLink", node_size=node, inter_node_bytes_per_s=50e9,
                   host_link_bytes_per_s=63e9, tdp_w=700, matmul_efficiency=((1e9, 0.5), (1e13, 0.8)),
                   hbm_efficiency=0.9, collective_efficiency_intra=0.8, collective_efficiency_inter=0.8)


def _point(**over) -> Point:
    raw = {
        "id": "t", "category": "B", "source": {"repo": "example/repo", "primary": True},
        "model": {"name": "tiny", "layers": 2, "hidden": 64, "heads": 4, "vocab": 1000, "seq_len": 128,
                  "arch_type": "dense decoder (Llama)"},
        "hardware": {"gpu": "H100 SXM", "count": 8},
        "parallel": {"tp": 1, "pp": 1, "dp": 8, "micro_batch": 2, "grad_accum": 1},
        "workload": {"kind": "pretraining"},
        "measured": [{"quantity": "mfu", "value": 40, "unit": "%"}],
        "completeness": "full",
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return Point.model_validate(raw)


# --------------------------------------------------------------------------- reader


def test_reader_parses_every_dev_point():
    pts = load_points(DEV_SET)  # the original file; load_points() also reads the other default files
    assert len(pts) == 275
    assert not [p for p in pts if isinstance(p, BadPoint)]
    assert {p.category for p in pts} == {"A", "B", "C", "D"}
    assert sum(len(p.measured) for p in pts) == 1166
    # single-source points are normalised to a list; secondary copies are flagged
    assert all(p.source for p in pts)
    assert sum(1 for p in pts if not p.primary) == 9


def test_packaged_dev_set_is_byte_identical_to_shared_copy():
    if not SHARED_DEV.exists():
        pytest.skip("shared validation folder not mounted")
    assert DEV_SET.read_bytes() == SHARED_DEV.read_bytes()


def test_nulls_tolerated_and_unknown_keys_rejected(tmp_path):
    good = {"id": "a", "category": "A", "source": {"title": "T"}, "model": None, "hardware": {"gpu": None},
            "parallel": {"tp": None}, "workload": {"kind": None, "anything": 3},
            "measured": [{"quantity": "mfu", "value": 1, "unit": "%"}]}
    bad = {**good, "id": "b", "parallel": {"tensor_parallel": 2}}
    path = tmp_path / "runs.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"points": [good, bad]}))
    a, b = load_points(path)
    assert isinstance(a, Point) and a.model.layers is None and a.workload.model_extra == {"anything": 3}
    assert isinstance(b, BadPoint) and "parallel.tensor_parallel: unknown key" in b.reason
    rows = predict_point(b, catalog=None)
    assert rows[0].skipped.startswith("schema:")


def test_source_family_names_repo_or_paper():
    from sizeup.validate.points import Source

    assert source_family(Source(repo="mosaicml/llm-foundry")) == "mosaicml/llm-foundry"
    assert source_family(Source(title="karpathy/nanoGPT README")) == "karpathy/nanoGPT"
    assert source_family(Source(title="Chowdhery et al. 2022, PaLM (arXiv:2204.02311)")) == "Chowdhery et al. 2022, PaLM"


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("si, unit, expected", [
    (0.4125, "%", 41.25),
    (2.0**30 * 18.9, "GiB", 18.9),
    (47.14e9, "GB", 47.14),
    (413.68e6, "MB", 413.68),
    (1.288, "ms", 1288.0),
    (21 * 86400.0, "days", 21.0),
    (90.0, "min", 1.5),
    (408e12, "TFLOP/s", 408.0),
    (4.4e15, "PFLOP/s", 4.4),
    (4.3e23, "FLOPs", 4.3e23),
    (82432 * 3600.0, "A100-80GB GPU-hours", 82432.0),
    (1007.0, "tokens/s/GPU", 1007.0),
    (19694.0, "output tokens/s/GPU", 19694.0),
])
def test_unit_conversion_from_si(si, unit, expected):
    assert from_si(si, unit) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("unit, kind", [
    ("TFLOP/s/GPU", "flops_per_s"), ("TFLOPS", "flops_per_s"), ("tokens/sec/GPU", "rate"), ("GiB/GPU", "bytes"),
    ("samples/sec", "rate"), ("H100-80GB GPU-hours", "gpu_seconds"), ("GPU-days", "gpu_seconds"),
])
def test_unit_spellings_from_other_sources(unit, kind):
    assert unit_kind(unit) == kind


def test_quantity_synonyms_and_unit_disambiguation():
    from sizeup.validate.runner import canonical_quantity

    assert canonical_quantity("throughput", "tokens/s/GPU") == "throughput_tokens_per_s_per_gpu"
    assert canonical_quantity("throughput_tokens_per_s", "samples/s") == "throughput_samples_per_s"
    assert canonical_quantity("tflops_per_gpu", "TFLOP/s") == "model_tflops_per_gpu"
    assert canonical_quantity("max_memory_reserved", "GiB") == "peak_memory_reserved"
    assert canonical_quantity("mfu", "%") == "mfu"
    assert canonical_quantity("tps", "tokens/s/GPU") == "throughput_tokens_per_s_per_gpu"


def test_unknown_unit_is_a_skip():
    assert unit_kind("furlongs/fortnight") == ""
    with pytest.raises(Skip, match="not understood"):
        from_si(1.0, "furlongs/fortnight")


# --------------------------------------------------------------------------- free text -> settings


@pytest.mark.parametrize("text, expected", [
    ("PyTorch FSDP FULL_SHARD", Sharding.FSDP_FULL),
    ("PyTorch FSDP SHARD_GRAD_OP", Sharding.FSDP_GRAD_OP),
    ("FSDP", Sharding.FSDP_FULL),
    ("FSDP HYBRID_SHARD", Sharding.FSDP_HYBRID),
    ("ZeRO-1 (P_os)", Sharding.ZERO1),
    ("ZeRO-2 (P_os+g)", Sharding.ZERO2),
    ("DeepSpeed ZeRO stage 3", Sharding.ZERO3),
    ("baseline DP (no ZeRO)", Sharding.NONE),
    ("DDP", Sharding.NONE),
    ("Megatron distributed optimizer", Sharding.MEGATRON_DISTOPT),
    ("fully sharded data parallel within pod", Sharding.FSDP_FULL),
    ("FSDP2 fully_shard", Sharding.FSDP_FULL),
    ("HSDP (shard within node, replicate across)", Sharding.FSDP_HYBRID),
    (None, None),
])
def test_sharding_text(text, expected):
    assert parse_sharding(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("bf16 AMP (torch autocast, fp32 master weights) [table: Precision=amp_bf16, MP Mode=DEFAULT]", Precision.BF16_MIXED),
    ("bf16 (MP mode PURE: params/compute in bf16) [table: Precision=bf16, MP Mode=PURE]", Precision.BF16),
    ("FP8 (TransformerEngine)", Precision.FP8),
    ("fp8 AMP (TransformerEngine fp8 linears) [table: Precision=amp_fp8, MP Mode=DEFAULT]", Precision.FP8),
    ("FP16", Precision.FP16_MIXED),
    ("bf16-mixed", Precision.BF16_MIXED),
    ("float8 rowwise (torchao)", Precision.FP8),
    ("fp32 (no mixed precision: 'without using any GPU performance optimization techniques')", Precision.FP32),
    ("NF4 base weights + bf16 compute/LoRA; paged optimizer", Precision.BF16_MIXED),
    ("mixed precision Adam (K=12 bytes/param optimizer state per paper)", Precision.BF16_MIXED),
    (None, None),
])
def test_precision_text(text, expected):
    assert parse_precision(text) == expected


def test_mixed_precision_on_a_gpu_without_bf16_is_fp16():
    v100 = _gpu("V100", bf16=0.0, fp8=0.0)
    assert parse_precision("mixed precision", v100) == Precision.FP16_MIXED


@pytest.mark.parametrize("text, expected, sp", [
    ("none", Recompute.NONE, False),
    ("full activation checkpointing", Recompute.FULL, False),
    ("full (uniform activation checkpointing)", Recompute.FULL, False),
    ("selective activation recomputation + sequence parallelism", Recompute.SELECTIVE, True),
    ("selective recompute + sequence parallelism (54.2%) vs full recompute (42.1%)", Recompute.SELECTIVE, True),
    ("gradient checkpointing", Recompute.FULL, False),
    ("activation checkpointing (recipe default)", Recompute.FULL, False),
    ("AC: none", Recompute.NONE, False),
])
def test_recompute_text(text, expected, sp):
    assert parse_recompute(text) == (expected, sp)


def test_optimizer_peft_offload_text(points):
    assert parse_optimizer("LION") == Optimizer.LION
    assert parse_optimizer(None, "recipe: PagedAdamW8bit (bitsandbytes)") == Optimizer.ADAM8BIT
    assert parse_optimizer(None, None) is None
    assert parse_peft(points["torchtune-llama31-8b-lora-4090"])[:2] == (Peft.LORA, 8)
    assert parse_peft(points["torchtune-llama31-405b-qlora-8xa100"])[:2] == (Peft.QLORA, 16)
    assert parse_peft(points["torchtune-llama31-8b-full-4090"])[0] == Peft.NONE
    # 'full fine-tuning; LoRA r=8 ... in the example script' is a full fine-tune
    assert parse_peft(points["peft-t0-3b-full-ft"])[0] == Peft.NONE
    # 'Activation CPUOffload=False' is not an offload; fsdp_cpu_offload=True is
    assert parse_offload(points["llmfoundry-h100bf16L-mpt70b-s2048-g512-mb8"]) == (Offload.NONE, Offload.NONE, False)
    assert parse_offload(points["torchtune-llama31-70b-full-8xa100"])[:2] == (Offload.CPU, Offload.CPU)
    assert parse_offload(points["torchtune-llama32-3b-a100-act-offload"])[2] is True
    assert infer_kernel(points["peft-bloomz-7b1-lora"]) == "hf-eager"
    assert infer_kernel(points["nemo2407-h100-fp8-llama2-7b-8gpu"]) == "fused"


# --------------------------------------------------------------------------- setups from points


def test_llm_foundry_row_setup(points):
    p = points["llmfoundry-h100bf16L-mpt70b-s2048-g512-mb8"]
    s = build_setup(p, stand_in_arch(65e9, "x"), _gpu()).setup
    assert (s.gpus, s.tp, s.pp, s.dp, s.micro_batch, s.grad_accum, s.seq_len) == (512, 1, 1, 512, 8, 1, 2048)
    assert (s.sharding, s.recompute, s.precision, s.offload_optimizer) == (
        Sharding.FSDP_FULL, Recompute.FULL, Precision.BF16_MIXED, Offload.NONE)
    assert s.global_batch == p.parallel.global_batch_seqs == 4096


def test_nemo_row_setup_with_context_parallel_and_interleaving(points):
    s = build_setup(points["nemo2407-h100-fp8-llama3-70b-64gpu"], stand_in_arch(70e9, "x"), _gpu()).setup
    assert (s.tp, s.pp, s.cp, s.dp, s.virtual_pp, s.pp_schedule) == (4, 4, 2, 2, 5, PipelineSchedule.INTERLEAVED)
    assert s.precision == Precision.FP8 and s.grad_accum == 128 // (1 * 2)


def test_megatron_row_grad_accum_from_global_batch(points):
    # run_table_1.sh: TP=8 PP=64 MBS=1 GBS=3072 on 3072 GPUs -> dp 6, grad_accum 512
    s = build_setup(points["narayanan21-t1-gpt-1t-3072gpu"], stand_in_arch(1e12, "x"), _gpu("A100")).setup
    assert (s.tp, s.pp, s.dp, s.micro_batch, s.grad_accum) == (8, 64, 6, 1, 512)


def test_micro_batch_derived_from_global_batch_and_grad_accum():
    p = _point(parallel={"micro_batch": None, "grad_accum": 4, "global_batch_seqs": 64})
    r = build_setup(p, stand_in_arch(1e8, "x"), _gpu())
    assert r.setup.micro_batch == 2 and any("micro_batch=2" in a for a in r.assumptions)


@pytest.mark.parametrize("over, reason", [
    ({"parallel": {"micro_batch": None, "grad_accum": None}}, "micro_batch and global batch unknown"),
    ({"parallel": {"micro_batch": None, "grad_accum": None, "global_batch_seqs": 64}},
     "split into micro-batch x grad-accum is not"),
    ({"hardware": {"count": None}, "parallel": {"tp": None, "pp": None}}, "GPU count unknown"),
    ({"parallel": {"tp": None, "pp": None, "dp": None}}, "tensor/pipeline layout unknown"),
    ({"model": {"seq_len": None}}, "sequence length unknown"),
    ({"parallel": {"tp": 3, "pp": None}}, "cannot be derived"),
])
def test_incomplete_points_skip_with_reason(over, reason):
    with pytest.raises(Skip, match=reason.replace("(", r"\(").replace(")", r"\)")):
        build_setup(_point(**over), stand_in_arch(1e8, "x"), _gpu())


def test_defaults_are_listed_as_assumptions():
    p = _point(parallel={"grad_accum": None})
    r = build_setup(p, stand_in_arch(1e8, "x"), _gpu())
    text = " | ".join(r.assumptions)
    assert "grad_accum not stated, 1 assumed" in text and "precision not stated" in text


class _Catalog:
    """Catalog stand-in: no presets, one GPU."""

    def model(self, name):
        from sizeup.errors import SizeupError

        raise SizeupError(f"unknown model {name!r}")

    def gpu(self, name):
        from sizeup.errors import SizeupError

        if name != "H100 SXM":
            raise SizeupError(f"unknown GPU {name!r}")
        return _gpu()


@pytest.mark.parametrize("over, quantity, unit, reason", [
    ({"model": {"arch_type": "encoder-decoder T5", "layers": None}}, "mfu", "%", "no encoder-decoder preset matches"),
    ({"model": {"layers": None, "hidden": None}}, "mfu", "%", "architecture incomplete (layers, hidden unknown)"),
    ({"hardware": {"gpu": "TPU v4"}}, "mfu", "%", "not in the catalog"),
    ({}, "weak_scaling_efficiency", "%", "ratio of two measurements"),
    ({}, "vibes_per_gpu", "%", "not predicted by sizeup"),
    ({}, "mfu", "furlongs", "not understood"),
    ({}, "gpu_hours", "H100-80GB GPU-hours", "training tokens (or steps) unknown"),
    ({}, "mean_step_time_incl_first_step", "s", "including the first one"),
])
def test_predict_point_skip_reasons(over, quantity, unit, reason):
    p = _point(measured=[{"quantity": quantity, "value": 1.0, "unit": unit}], **over)
    row, = predict_point(p, _Catalog())
    assert row.skipped is not None and reason in row.skipped and row.predicted is None


def test_max_seq_len_fitting_is_the_largest_fitting_multiple_of_128():
    from sizeup.catalog.overheads import load_overheads
    from sizeup.core.memory import estimate_memory

    p = _point(hardware={"count": 1}, parallel={"dp": 1, "micro_batch": 1},
               model={"layers": 4, "hidden": 512, "heads": 8, "vocab": 32000},
               measured=[{"quantity": "max_seq_len_fitting", "value": 4096, "unit": "tokens"}])
    gpu = _gpu()
    small = GpuSpec(**{**gpu.__dict__, "memory_bytes": 2e9})
    cat = SimpleNamespace(model=_Catalog().model, gpu=lambda name: small)
    row, = predict_point(p, cat)
    assert row.ok, row.skipped
    s = int(row.predicted)
    assert s % 128 == 0 and s >= 128
    ctx = Context(p, cat)
    setup = ctx.setup_result(need_batch=False, need_seq=False).setup
    ov = load_overheads()  # the validator checks fit as `sizeup memory` does: with framework overheads
    assert estimate_memory(ctx.model, setup.with_(seq_len=s), gpu=small, overheads=ov).fits
    assert not estimate_memory(ctx.model, setup.with_(seq_len=s + 128), gpu=small, overheads=ov).fits


def test_inference_point_architecture_takes_a_stated_head_dim():
    """A serving point's own architecture (model not in the catalog) uses its stated head_dim (Qwen3-32B: 64 heads
    of 128 on a 5,120 hidden size, not 5120/64 = 80): KV per token = 2 x L x kv_heads x head_dim x 2 B by hand."""
    from sizeup.core.inference import KvDtype, kv_bytes_per_token
    from sizeup.validate.inference_points import _arch_from_point

    point = {"model": {"name": "Qwen3 32B (test)", "layers": 64, "hidden": 5120, "heads": 64, "kv_heads": 8,
                       "head_dim": 128, "ffn": 25600, "vocab": 151936, "seq_len": 40960}}
    m = _arch_from_point(point, need_timing=True)
    assert m.head_dim == 128
    assert float(kv_bytes_per_token(m, KvDtype.BF16)) == 2 * 64 * 8 * 128 * 2
    del point["model"]["head_dim"]
    assert _arch_from_point(point, need_timing=True).head_dim == 80  # unstated: hidden / heads


def test_inference_points_never_abort_the_run(points):
    rows = predict_point(points["tinyllama-llamacpp-m2"], _Catalog())
    assert all(r.skipped for r in rows)


# --------------------------------------------------------------------------- definitions


def _ctx_with_step(point: Point, catalog, step_time_s: float, peak: float) -> Context:
    ctx = Context(point, catalog)
    tokens = ctx.setup.tokens_per_step
    ctx._cache["step"] = ("ok", SimpleNamespace(step_time_s=step_time_s, tokens_per_s=tokens / step_time_s,
                                                 peak_flops_per_s=peak))
    return ctx


@pytest.mark.parametrize("pid", [
    "llmfoundry-h100bf16L-mpt70b-s2048-g512-mb8",   # | 70b | 2048 | 512 | h100_80gb | 41.25 | 55.0 | 408 | ... | 251 |
    "llmfoundry-a100_80-mpt70b-s2048-g64-mb8",      # A100-80GB x64, MFU 53.33, HFU 71.1, 166 TFLOP/s
])
def test_llm_foundry_definitions_reproduce_the_table_from_its_own_throughput(points, pid):
    """With the step time implied by the table's own tokens/s/GPU, our MFU/HFU/model-TFLOP definitions
    must give the table's MFU/HFU/TFLOP (llm-foundry README formula: (6*N*s + 12*L*h*s^2) per sequence,
    HFU 4x with activation checkpointing). Definition check, independent of the timing physics."""
    from sizeup.catalog import load_catalog

    catalog = load_catalog()
    p = points[pid]
    try:
        catalog.model(p.model.name)
    except Exception:
        pytest.skip("MPT preset not in the catalog yet")
    peak = 989e12 if "h100" in pid else 312e12
    cat = SimpleNamespace(model=catalog.model, gpu=lambda name: _gpu(p.hardware.gpu, bf16=peak))
    ctx = Context(p, cat)
    per_gpu = next(m.value for m in p.measured if m.quantity == "throughput_tokens_per_s_per_gpu")
    step = ctx.setup.tokens_per_step / (per_gpu * ctx.setup.gpus)
    ctx = _ctx_with_step(p, cat, step, peak)
    by_q = {m.quantity: m for m in p.measured}
    from sizeup.validate.runner import HANDLERS

    for q in ("mfu", "hfu", "model_tflops_per_gpu"):
        value, _ = HANDLERS[q](ctx, by_q[q])
        assert from_si(value, by_q[q].unit) == pytest.approx(by_q[q].value, rel=0.02), q


def test_recompute_counting_note_selects_hardware_flops():
    p = _point(parallel={"recompute": "full"},
               measured=[{"quantity": "achieved_tflops_per_gpu", "value": 100, "unit": "TFLOP/s",
                          "notes": "the paper's FLOP count includes activation recomputation"}])
    ctx = _ctx_with_step(p, _Catalog(), 1.0, 989e12)
    ctx._cache["model"] = ("ok", (stand_in_arch(1e8, "x"), []))
    from sizeup.validate.runner import HANDLERS

    value, how = HANDLERS["achieved_tflops_per_gpu"](ctx, p.measured[0])
    assert value == pytest.approx(ctx.flops.hardware_flops / 8) and "recomput" in how
    assert ctx.flops.hardware_flops > ctx.flops.model_flops


# --------------------------------------------------------------------------- summary + CLI


def test_summary_median_p90_and_coverage():
    rows = [Row(f"p{i}", "B", "src", True, "full", "mfu", "%", 10.0, 10.0 + e, e * 10.0)
            for i, e in enumerate([0.1, -0.2, 0.3, -0.4, 0.5])]
    rows.append(Row("px", "B", "src", True, "full", "mfu", "%", 10.0, skipped="why"))
    s = summarize(rows)
    assert s["overall"]["median_abs_error_pct"] == 3.0
    assert s["overall"]["p90_abs_error_pct"] == pytest.approx(4.6)
    assert s["overall"]["coverage"] == pytest.approx(5 / 6, abs=1e-4)
    assert s["full_training_points"]["points"] == 6 and s["full_training_points"]["points_predicted"] == 5
    assert s["by_source"]["src"]["n"] == 5


def test_rounded_and_bound_measurements():
    from sizeup.validate.runner import _finish

    # llm-foundry prints int(samples/s): a printed 0 is [0, 1), a printed 2 is [1.5, 3)
    r0 = Row("a", "B", "s", True, "full", "throughput_samples_per_s", "samples/s", 0.0, rounded=True)
    _finish(r0, 0.67, "", ())
    assert r0.error_pct == 0.0
    r2 = Row("b", "B", "s", True, "full", "throughput_samples_per_s", "samples/s", 2.0, rounded=True)
    _finish(r2, 6.0, "", ())
    assert r2.error_pct == pytest.approx(100.0)  # (6 - 3) / 3
    # 'fits in 48 GB' is an upper bound
    b = Row("c", "C", "s", True, "partial", "fits_in_gpu_memory", "GB", 48.0)
    _finish(b, 40.0, "", (), bound=True)
    assert b.error_pct == 0.0
    _finish(b, 60.0, "", (), bound=True)
    assert b.error_pct == pytest.approx(25.0)


def test_cli_json_shape(capsys):
    from sizeup.cli import main

    assert main(["validate", "--json", "--category", "C", "--source", "ZeRO"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"points", "summary"} <= set(out)
    assert len(out["points"]) == 3
    for item in out["points"]:
        assert item["id"].startswith("zero-7.5b")
        assert ({"id", "quantity", "unit", "measured", "predicted", "error_pct"} <= set(item)) or "skipped" in item
        if "error_pct" in item:
            assert math.isfinite(item["error_pct"])


def test_cli_table_and_bad_category(capsys):
    from sizeup.cli import main

    assert main(["validate", "--source", "nanoGPT"]) == 0
    out = capsys.readouterr().out
    assert "nanogpt-gpt2-124m-8xa100-40gb" in out and "summary" in out
    assert main(["validate", "--category", "Z"]) == 2
    assert "unknown category" in capsys.readouterr().err
    assert main(["validate", "/nonexistent/runs.yaml"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["validate", "--source", "no-such-source-anywhere"]) == 2
    assert "no measurement matches" in capsys.readouterr().err


# --------------------------------------------------------------------------- accuracy vs published runs


@pytest.fixture(scope="module")
def validation():
    from sizeup.validate.runner import run_validation

    return run_validation()


def _row(validation, pid, quantity) -> Row:
    row = next(r for r in validation.rows if r.id == pid and r.quantity == quantity)
    assert row.ok, f"{pid} {quantity} skipped: {row.skipped}"
    return row


@pytest.mark.parametrize("pid, quantity", [
    # llm-foundry scripts/train/benchmarking/README.md @8c8dd48: | 70b | 2048 | 512 | h100_80gb | 41.25 | 55.0 | 408 | ...
    ("llmfoundry-h100bf16L-mpt70b-s2048-g512-mb8", "mfu"),
    ("llmfoundry-h100bf16L-mpt70b-s2048-g512-mb8", "throughput_tokens_per_s_per_gpu"),
    # same README, A100 80GB section: MPT-7B seq 2048 on 8 GPUs, micro-batch 6
    ("llmfoundry-a100_80-mpt7b-s2048-g8-mb6", "mfu"),
    # same README, A100 40GB section: MPT-13B seq 2048 on 8 GPUs, micro-batch 4
    ("llmfoundry-a100_40-mpt13b-s2048-g8-mb4", "throughput_tokens_per_s_per_gpu"),
    # NeMo 24.07 performance_summary.md: | LLAMA2-7B | 8 | 128 | 1 | 4096 | 1 | 1 | 1 | 1 | 16934 | 780 | 7 |
    ("nemo2407-h100-fp8-llama2-7b-8gpu", "throughput_tokens_per_s_per_gpu"),
    # Megatron-LM examples/sc21/run_table_1.sh + Narayanan 2021 Table 1: 1.7B on 32 A100 -> 137 TFLOP/s
    ("narayanan21-t1-gpt-1.7b-32gpu", "achieved_tflops_per_gpu"),
    # same script/table: 1T (1008B) on 3072 A100, TP=8 PP=64 MBS=1 GBS=3072 -> 163 TFLOP/s
    ("narayanan21-t1-gpt-1t-3072gpu", "achieved_tflops_per_gpu"),
])
def test_published_rows_within_25_percent(validation, pid, quantity):
    row = _row(validation, pid, quantity)
    assert abs(row.error_pct) <= 25.0, f"{pid} {quantity}: measured {row.measured}, predicted {row.predicted:.4g}"


def test_throughput_and_mfu_medians(validation):
    s = validation.summary["throughput_and_mfu"]
    assert s["median_abs_error_pct"] <= 10.0, s
    assert s["p90_abs_error_pct"] <= 25.0, s


def test_coverage_of_full_configuration_training_points(validation):
    s = validation.summary["full_training_points"]
    assert s["coverage"] >= 0.90, s


def test_every_row_is_predicted_or_explained(validation):
    for r in validation.rows:
        assert r.ok or (r.skipped and len(r.skipped) > 5), r
        if r.ok:
            assert math.isfinite(r.predicted) and math.isfinite(r.error_pct)
    errs = [abs(r.error_pct) for r in validation.predicted]
    assert statistics.median(errs) >= 0


# --------------------------------------------------------------------------- kernels a point's framework runs


@pytest.mark.parametrize("over,timing,memory", [
    ({}, "fused", "fused"),                                                        # unknown framework: fused
    ({"source": {"repo": "mosaicml/llm-foundry", "primary": True}}, "eager", "fused"),
    ({"source": {"repo": "pytorch/torchtune", "primary": True}}, "eager", "hf-eager"),
    ({"source": {"repo": "pytorch/torchtune", "primary": True}, "notes": "+ Compile"}, "fused", "fused"),
    ({"source": {"repo": "NVIDIA/NeMo", "primary": True}}, "fused", "fused"),
    ({"source": {"repo": "pytorch/torchtitan", "primary": True}, "notes": "compared with Megatron-LM"},
     "eager", "hf-eager"),                                                        # the repository wins over text
    ({"notes": "Transformer Engine attention"}, "te", "fused"),
])
def test_framework_kernels_come_from_what_the_point_states(over, timing, memory):
    from sizeup.validate.mapping import infer_kernel, infer_timing_kernel

    p = _point(**over)
    assert infer_timing_kernel(p) == timing
    assert infer_kernel(p) == memory


def test_fp8_gemms_imply_transformer_engine():
    from sizeup.validate.mapping import infer_timing_kernel

    setup = TrainSetup(precision=Precision.FP8)
    assert infer_timing_kernel(_point(), setup) == "te"


def test_attention_is_materialised_before_flashattention_or_without_bf16():
    from sizeup.validate.mapping import attention_for

    old = _point(source={"title": "Narayanan et al. 2021, Efficient Large-Scale Training", "primary": True})
    assert attention_for(old, _gpu()) == Attention.MATH
    assert attention_for(_point(), _gpu()) == Attention.FLASH
    assert attention_for(_point(), _gpu(bf16=0.0)) == Attention.MATH  # pre-Ampere: no FlashAttention-2


def test_gpu_named_with_a_remark_is_read_through_it_for_speed_but_alternatives_only_for_memory():
    """'A100 (80GB assumed; not stated)' is one GPU with the point's own size remark: usable for a throughput. 'A800/H800
    80GB' names two GPUs of different speeds (A800 NVLink 400 GB/s vs H800's H100 tensor cores): only a memory
    quantity (bytes independent of which) may read it, as the first alternative."""
    from sizeup.catalog import load_catalog
    from sizeup.validate.mapping import gpu_for_point, gpu_reading_note, gpu_stand_in_for_memory

    cat = load_catalog()
    p = _point(hardware={"gpu": "A100 (80GB assumed; not stated)", "count": 8})
    gpu = gpu_for_point(p, cat)
    assert gpu.id.startswith("a100-80gb")
    assert "read as" in gpu_reading_note(p, cat)
    assert gpu_reading_note(_point(), cat) is None
    two = _point(hardware={"gpu": "A800/H800 80GB", "count": 8})  # neither alternative is in the catalog
    with pytest.raises(Skip):
        gpu_for_point(two, cat)
    assert gpu_stand_in_for_memory(two, cat) is None  # named, but nothing usable: no stand-in is invented


def test_packed_squad_rows_attend_per_sample_only_where_the_framework_masks_documents(points):
    """NeMo packs SFT samples with cu_seqlens (THD attention, frameworks.yaml packing_masks_documents): its
    'SQuAD-v1.1 packed to 4096 tokens' rows attend over ~230-token samples (datasets.yaml). torchtune's 'packed seq
    2048' rows name no catalog dataset and their profile does not say packing masks documents: full sequence."""
    from sizeup.validate.mapping import packed_documents

    nemo = points["nemo2407-h100-fp8-llama2-7b-lora-8gpu"]
    assert packed_documents(nemo)["id"] == "squad-v1.1"
    assert build_setup(nemo, stand_in_arch(7e9, "x"), _gpu()).setup.packed_doc_tokens == 230
    assert packed_documents(points["torchtune-llama31-8b-lora-4090"]) is None
    assert packed_documents(points["nemo2407-h100-fp8-llama2-7b-8gpu"]) is None  # pretraining: no packing stated


def test_hf_class_named_in_the_point_gives_the_model_type():
    # 'Hugging Face GPT2LMHeadModel' -> model_type gpt2 (its "gelu_new" MLP activation); other wording -> none
    from sizeup.validate.mapping import arch_from_fields

    gpt2 = _point(model={"arch_type": "dense decoder (Hugging Face GPT2LMHeadModel: LayerNorm, GELU)"})
    assert arch_from_fields(gpt2).hf_model_type == "gpt2"
    assert arch_from_fields(_point()).hf_model_type == ""


def test_errata_patch_what_ran_never_what_was_measured(tmp_path):
    """validate/data/errata.yaml corrects a shared row's setup with evidence (the shared file stays byte-identical);
    a patch may not touch measured values or quotes, needs its evidence, and must name an existing point."""
    from sizeup.errors import SizeupError
    from sizeup.validate.points import apply_errata, load_errata

    pts = {p.id: p for p in load_points()}
    nano = pts["nanogpt-gpt2-124m-8xa100-40gb"]
    assert "eager attention" in nano.parallel.other and "erratum" in nano.notes
    assert [m.value for m in nano.measured] == [4]  # the README's 'about 4 days' is unchanged
    assert load_errata()  # the packaged file parses
    bad = tmp_path / "e.yaml"
    bad.write_text("errata:\n  - id: x\n    patch: {measured: []}\n    evidence: " + "y" * 50 + "\n")
    with pytest.raises(SizeupError, match="may not change measured"):
        load_errata(bad)
    bad.write_text("errata:\n  - id: x\n    patch: {model: {vocab: 1}}\n    evidence: short\n")
    with pytest.raises(SizeupError, match="evidence"):
        load_errata(bad)
    with pytest.raises(SizeupError, match="no development-set point"):
        apply_errata({"points": [{"id": "a"}]}, [{"id": "b", "patch": {}, "evidence": "e" * 50}])
    several = tmp_path / "several.yaml"
    several.write_text("errata:\n  - ids: [a, b]\n    patch: {model: {vocab: 7}}\n    evidence: " + "y" * 50 + "\n")
    patched = apply_errata({"points": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}, load_errata(several))["points"]
    assert [p.get("model") for p in patched] == [{"vocab": 7}, {"vocab": 7}, None]


def test_footnote_definitions_in_a_quote_are_not_statements_about_the_row(points):
    """torchtune's 2024 README table: every row's quote repeats the footnotes '*= Uses PagedAdamW from bitsandbytes'
    and '**= Uses torch compile'; only the QLoRA row is marked ** (its own fields say torch.compile)."""
    from sizeup.validate.mapping import compiled

    assert compiled(points["torchtune-readme2024-qlora-7b-1x4090"])
    assert not compiled(points["torchtune-readme2024-lora-7b-1x4090"])
    assert "uses torch compile" not in points["torchtune-readme2024-lora-7b-1x4090"].text()
