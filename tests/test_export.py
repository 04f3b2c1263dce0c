"""Plan exports: each parses back (json / tomllib / yaml / shlex / ast), uses only documented keys, and carries
the plan's numbers."""

from __future__ import annotations

import json

import pytest

from sizeup.catalog import load_catalog
from sizeup.cli import main
from sizeup.core.types import Offload, Precision, Recompute, Sharding, TrainSetup
from sizeup.search.export import FORMATS, export_plan, parse, validate

CAT = load_catalog()
L70 = CAT.model("llama-3-70b")
MOE = next((m for m in CAT.models.values() if m.is_moe and m.num_experts % 8 == 0), None)

SETUPS = [
    TrainSetup(gpus=64, tp=8, pp=2, cp=1, micro_batch=1, grad_accum=16, seq_len=8192, sequence_parallel=True,
               sharding=Sharding.MEGATRON_DISTOPT, recompute=Recompute.SELECTIVE),
    TrainSetup(gpus=16, tp=1, pp=1, micro_batch=2, grad_accum=8, seq_len=4096, sharding=Sharding.ZERO3,
               recompute=Recompute.FULL, offload_optimizer=Offload.CPU),
    TrainSetup(gpus=32, tp=2, pp=1, cp=2, micro_batch=4, grad_accum=1, seq_len=8192, sequence_parallel=True,
               sharding=Sharding.FSDP_HYBRID, precision=Precision.FP16_MIXED),
    TrainSetup(gpus=8, micro_batch=8, grad_accum=4, seq_len=2048, sharding=Sharding.NONE),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("i", range(len(SETUPS)))
def test_exports_parse_and_use_documented_keys(fmt, i):
    setup = SETUPS[i]
    ex = export_plan(fmt, L70, setup, steps=1234)
    assert validate(fmt, ex.text) == []
    data = parse(fmt, ex.text)
    assert data


@pytest.mark.parametrize("i", range(len(SETUPS)))
def test_deepspeed_carries_the_plan(i):
    s = SETUPS[i]
    cfg = json.loads(export_plan("deepspeed", L70, s).text)
    # DeepSpeed: train_batch_size = micro-batch x gradient accumulation x data-parallel ranks
    assert cfg["train_batch_size"] == s.global_batch == s.micro_batch * s.grad_accum * s.dp
    assert cfg["train_micro_batch_size_per_gpu"] == s.micro_batch
    assert cfg["gradient_accumulation_steps"] == s.grad_accum
    stage = {Sharding.NONE: 0, Sharding.ZERO1: 1, Sharding.MEGATRON_DISTOPT: 1, Sharding.ZERO2: 2,
             Sharding.FSDP_GRAD_OP: 2, Sharding.ZERO3: 3, Sharding.FSDP_FULL: 3, Sharding.FSDP_HYBRID: 3}
    assert cfg["zero_optimization"]["stage"] == stage[s.sharding]
    assert cfg["bf16"]["enabled"] == (s.precision == Precision.BF16_MIXED)
    assert cfg["fp16"]["enabled"] == (s.precision == Precision.FP16_MIXED)
    assert ("offload_optimizer" in cfg["zero_optimization"]) == (s.offload_optimizer == Offload.CPU)
    assert ("activation_checkpointing" in cfg) == (s.recompute != Recompute.NONE)


def test_megatron_carries_the_plan():
    s = SETUPS[0]
    flags = parse("megatron", export_plan("megatron", L70, s, steps=500).text)
    assert flags["--tensor-model-parallel-size"] == "8"
    assert flags["--pipeline-model-parallel-size"] == "2"
    assert flags["--context-parallel-size"] == "1"
    assert flags["--micro-batch-size"] == "1" and flags["--global-batch-size"] == str(s.global_batch)
    assert flags["--recompute-granularity"] == "selective"
    assert flags["--sequence-parallel"] is True and flags["--use-distributed-optimizer"] is True
    assert flags["--bf16"] is True and flags["--train-iters"] == "500"
    assert flags["--num-layers"] == "80" and flags["--num-query-groups"] == "8"
    full = parse("megatron", export_plan("megatron", L70, SETUPS[1]).text)
    assert full["--recompute-granularity"] == "full" and full["--recompute-method"] == "uniform"
    assert full["--optimizer-cpu-offload"] is True


@pytest.mark.skipif(MOE is None, reason="no MoE preset with experts divisible by 8")
def test_megatron_moe_expert_parallel():
    s = TrainSetup(gpus=64, tp=1, pp=1, ep=8, micro_batch=1, grad_accum=1, seq_len=4096, sharding=Sharding.ZERO1)
    flags = parse("megatron", export_plan("megatron", MOE, s).text)
    assert flags["--expert-model-parallel-size"] == "8" and flags["--num-experts"] == str(MOE.num_experts)


def test_torchtitan_carries_the_plan():
    s = SETUPS[2]
    cfg = parse("torchtitan", export_plan("torchtitan", L70, s, steps=99).text)
    par = cfg["parallelism"]
    assert par["tensor_parallel_degree"] == 2 and par["context_parallel_degree"] == 2
    assert par["pipeline_parallel_degree"] == 1
    # hybrid: replicate x shard = dp (16 = 32 / (tp 2 x cp 2) / ... ), shard stays inside a node
    assert par["data_parallel_replicate_degree"] * par["data_parallel_shard_degree"] == s.dp
    assert par["data_parallel_shard_degree"] == 2  # 8 GPUs per node / (tp 2 x cp 2)
    assert cfg["training"]["local_batch_size"] == 4 and cfg["training"]["global_batch_size"] == s.global_batch
    assert cfg["training"]["seq_len"] == 8192 and cfg["training"]["steps"] == 99
    assert cfg["training"]["mixed_precision_param"] == "float16"
    assert cfg["activation_checkpoint"]["mode"] == "none"
    ddp = parse("torchtitan", export_plan("torchtitan", L70, SETUPS[3]).text)["parallelism"]
    assert ddp["data_parallel_replicate_degree"] == 8 and ddp["data_parallel_shard_degree"] == 1


def test_accelerate_and_fsdp_carry_the_plan():
    s = SETUPS[1]
    acc = parse("accelerate", export_plan("accelerate", L70, s).text)
    assert acc["distributed_type"] == "DEEPSPEED" and acc["num_processes"] == 16 and acc["num_machines"] == 2
    assert acc["deepspeed_config"]["zero_stage"] == 3
    assert acc["deepspeed_config"]["gradient_accumulation_steps"] == 8
    assert acc["deepspeed_config"]["offload_optimizer_device"] == "cpu"
    meg = parse("accelerate", export_plan("accelerate", L70, SETUPS[0]).text)
    assert meg["distributed_type"] == "MEGATRON_LM" and meg["megatron_lm_config"]["megatron_lm_tp_degree"] == 8
    fs = parse("fsdp", export_plan("fsdp", L70, s).text)
    c = fs["constants"]
    assert c["MICRO_BATCH"] == 2 and c["GRAD_ACCUM"] == 8 and c["GLOBAL_BATCH"] == s.global_batch
    assert c["DP_REPLICATE"] * c["DP_SHARD"] == s.dp and c["RESHARD_AFTER_FORWARD"] is True
    assert c["CPU_OFFLOAD"] is True and c["ACTIVATION_CHECKPOINT"] == "full"
    assert fs["torchrun"]["--nnodes"] == "2" and fs["torchrun"]["--nproc-per-node"] == "8"


def test_validation_catches_unknown_keys():
    text = export_plan("deepspeed", L70, SETUPS[0]).text
    bad = json.loads(text)
    bad["zero_optimization"]["stage4_magic"] = True
    assert validate("deepspeed", json.dumps(bad)) == ["zero_optimization.stage4_magic"]
    assert validate("torchtitan", "[parallelism]\ntensor_parallel = 2\n") == ["parallelism.tensor_parallel"]
    assert validate("deepspeed", "{not json")[0].startswith("does not parse")


def test_export_cli(capsys, tmp_path):
    out = tmp_path / "job.toml"
    code = main(["export", "torchtitan", "llama-3-8b", "--gpu", "h100-sxm", "--gpus", "16", "--tp", "2",
                 "--zero", "3", "--micro-batch", "2", "--global-batch", "64", "--seq", "4096", "--tokens", "1B",
                 "--out", str(out)])
    assert code == 0
    cfg = parse("torchtitan", out.read_text())
    assert cfg["parallelism"]["tensor_parallel_degree"] == 2 and cfg["training"]["global_batch_size"] == 64
    assert cfg["training"]["steps"] == -(-10**9 // (64 * 4096))
    assert "wrote" in capsys.readouterr().out
    code = main(["export", "deepspeed", "llama-3-8b", "--gpus", "8", "--zero", "2", "--global-batch", "32", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and json.loads(data["text"])["gradient_accumulation_steps"] == 4
    assert main(["export", "slurm", "llama-3-8b"]) == 2
