"""Plan exports: each parses back, uses only documented keys, carries the model's and the plan's numbers, is
loaded by the target's own parser where it installs on CPU (DeepSpeed's DeepSpeedConfig, torchtitan's
ConfigManager, accelerate's ClusterConfig; Megatron-LM's parser is not on PyPI, so its flags are checked against
the option list dumped from Megatron-LM's own add_megatron_arguments, tests/data/megatron_lm_flags.json), and
refuses with one line a plan the target cannot express."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from sizeup.catalog import load_catalog
from sizeup.cli import main
from sizeup.core.types import Offload, Precision, Recompute, Sharding, TrainSetup
from sizeup.search.export import FORMATS, ExportRefused, export_plan, parse, recipe, validate

CAT = load_catalog()
L70 = CAT.model("llama-3-70b")
L31 = CAT.model("llama-3.1-8b")
MIXTRAL = CAT.model("mixtral-8x7b")
DATA = Path(__file__).parent / "data"

SETUPS = [
    TrainSetup(gpus=64, tp=8, pp=2, cp=1, micro_batch=1, grad_accum=16, seq_len=8192, sequence_parallel=True,
               sharding=Sharding.MEGATRON_DISTOPT, recompute=Recompute.SELECTIVE),
    TrainSetup(gpus=16, tp=1, pp=1, micro_batch=2, grad_accum=8, seq_len=4096, sharding=Sharding.ZERO3,
               recompute=Recompute.FULL, offload_optimizer=Offload.CPU),
    TrainSetup(gpus=32, tp=2, pp=1, cp=2, micro_batch=4, grad_accum=1, seq_len=8192, sequence_parallel=True,
               sharding=Sharding.FSDP_HYBRID, precision=Precision.BF16_MIXED),
    TrainSetup(gpus=8, micro_batch=8, grad_accum=4, seq_len=2048, sharding=Sharding.NONE),
    TrainSetup(gpus=16, micro_batch=2, grad_accum=2, seq_len=4096, sharding=Sharding.FSDP_FULL,
               precision=Precision.FP8, recompute=Recompute.FULL),
]
# (format, setup index) pairs the target cannot express: the export must refuse, not translate
REFUSED = {
    ("deepspeed", 0), ("deepspeed", 2), ("deepspeed", 4),      # tp/pp/cp live in model code; fp8 in TE
    ("fsdp", 0), ("fsdp", 4),                                  # pp / megatron distopt; fp8
    ("megatron", 2),                                           # fsdp-hybrid
    ("torchtitan", 0),                                         # megatron distributed optimizer
    ("accelerate", 2),                                         # cp, hybrid
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("i", range(len(SETUPS)))
def test_exports_parse_use_documented_keys_or_refuse(fmt, i):
    if (fmt, i) in REFUSED:
        with pytest.raises(ExportRefused) as err:
            export_plan(fmt, L70, SETUPS[i], steps=1234)
        assert "\n" not in str(err.value) and str(err.value).startswith(f"{fmt} cannot express")
        return
    ex = export_plan(fmt, L70, SETUPS[i], steps=1234)
    assert validate(fmt, ex.text) == []
    assert parse(fmt, ex.text)


def test_zero3_is_not_silently_torch_fsdp2_in_megatron():
    flags = parse("megatron", export_plan("megatron", L70, SETUPS[1]).text)
    assert "--use-torch-fsdp2" not in flags
    assert flags["--use-megatron-fsdp"] is True and flags["--data-parallel-sharding-strategy"] == "optim_grads_params"
    full = parse("megatron", export_plan("megatron", L70, SETUPS[4]).text)
    assert full["--use-torch-fsdp2"] is True and full["--ckpt-format"] == "torch_dist"
    grad_op = SETUPS[1].with_(sharding=Sharding.FSDP_GRAD_OP)
    with pytest.raises(ExportRefused):
        export_plan("megatron", L70, grad_op)


def test_megatron_carries_model_and_plan():
    s = SETUPS[0]
    flags = parse("megatron", export_plan("megatron", L31, s, steps=500).text)
    # plan
    assert flags["--tensor-model-parallel-size"] == "8" and flags["--pipeline-model-parallel-size"] == "2"
    assert flags["--micro-batch-size"] == "1" and flags["--global-batch-size"] == str(s.global_batch)
    assert flags["--recompute-granularity"] == "selective" and flags["--sequence-parallel"] is True
    assert flags["--use-distributed-optimizer"] is True and flags["--bf16"] is True
    assert flags["--train-iters"] == "500" and flags["--lr-decay-iters"] == "500"
    # model: Llama-3.1-8B config.json rope_theta 500000, rms_norm_eps 1e-05, rope_scaling llama3 factor 8,
    # 8 KV heads, untied embeddings, tokenizer meta-llama/Llama-3.1-8B (vocab 128256)
    assert flags["--num-layers"] == "32" and flags["--num-query-groups"] == "8"
    assert flags["--rotary-base"] == "500000" and float(flags["--norm-epsilon"]) == 1e-5
    assert flags["--use-rope-scaling"] is True and float(flags["--rope-scaling-factor"]) == 8.0
    assert flags["--untie-embeddings-and-output-weights"] is True
    assert flags["--tokenizer-type"] == "HuggingFaceTokenizer" and "Llama-3.1-8B" in flags["--tokenizer-model"]
    # recipe: Llama 2 paper section 2.2 (AdamW 0.9/0.95, eps 1e-5, wd 0.1, cosine to 10%, peak 3e-4 below 30B)
    assert float(flags["--lr"]) == 3e-4 and float(flags["--min-lr"]) == pytest.approx(3e-5)
    assert flags["--lr-decay-style"] == "cosine" and float(flags["--adam-beta2"]) == 0.95
    assert flags["--lr-warmup-iters"] == "50"  # min(2000, 10% of 500 steps)


def test_megatron_moe_router_and_experts():
    s = TrainSetup(gpus=64, tp=1, pp=1, ep=8, micro_batch=1, grad_accum=1, seq_len=4096, sharding=Sharding.ZERO1)
    flags = parse("megatron", export_plan("megatron", MIXTRAL, s).text)
    # Mixtral-8x7B config.json: num_local_experts 8, num_experts_per_tok 2, intermediate_size 14336, rope 1e6
    assert flags["--expert-model-parallel-size"] == "8" and flags["--num-experts"] == "8"
    assert flags["--moe-router-topk"] == "2" and flags["--moe-ffn-hidden-size"] == "14336"
    assert flags["--rotary-base"] == "1000000" and flags["--moe-router-load-balancing-type"] == "aux_loss"


def test_megatron_flags_exist_in_megatron_lm_parser():
    """Every flag (and choice value) of every export exists in Megatron-LM's own argument parser."""
    ref = json.loads((DATA / "megatron_lm_flags.json").read_text())["flags"]
    setups = [s for i, s in enumerate(SETUPS) if ("megatron", i) not in REFUSED]
    setups.append(TrainSetup(gpus=64, ep=8, sharding=Sharding.ZERO1))
    for model in (L70, L31, MIXTRAL, CAT.model("qwen2.5-7b")):
        for s in setups:
            if model.is_moe != (s.ep > 1):
                continue
            flags = parse("megatron", export_plan("megatron", model, s, steps=100).text)
            for flag, value in flags.items():
                assert flag in ref, flag
                assert ref[flag]["takes_value"] == (value is not True), flag
                if ref[flag]["choices"] and value is not True:
                    assert value in ref[flag]["choices"], (flag, value)


def test_lora_is_a_note_for_launchers_and_refused_by_trainers():
    from sizeup.core.types import Peft

    s = SETUPS[3].with_(peft=Peft.QLORA, lora_rank=8)
    for fmt in ("deepspeed", "fsdp", "accelerate"):
        notes = " ".join(export_plan(fmt, L70, s).notes)
        assert "LoraConfig(r=8" in notes and "nf4" in notes
    for fmt in ("megatron", "torchtitan"):
        with pytest.raises(ExportRefused, match="qlora fine-tuning"):
            export_plan(fmt, L70, s)


def test_torchtitan_flavor_is_torchtitans_name_or_refused():
    cfg = parse("torchtitan", export_plan("torchtitan", L70, SETUPS[3]).text)
    assert (cfg["model"]["name"], cfg["model"]["flavor"]) == ("llama3", "70B")
    assert parse("torchtitan", export_plan("torchtitan", L31, SETUPS[3]).text)["model"]["flavor"] == "8B"
    for mid in ("llama-2-7b", "llama-3.2-1b", "mixtral-8x7b"):
        with pytest.raises(ExportRefused, match="no torchtitan flavor"):
            export_plan("torchtitan", CAT.model(mid), SETUPS[3])


# --------------------------------------------------------------------------- the targets' own parsers


def _ds_config(cfg: dict, dp: int):
    pytest.importorskip("deepspeed", reason="needs the export-check extra")
    import deepspeed.runtime.config as dsc

    class Mpu:  # data-parallel world size as Megatron's mpu reports it
        def get_data_parallel_world_size(self):
            return dp

    orig = dsc.dist.get_rank
    dsc.dist.get_rank = lambda *a, **k: 0
    try:
        return dsc.DeepSpeedConfig(cfg, mpu=Mpu())
    finally:
        dsc.dist.get_rank = orig


@pytest.mark.parametrize("i", [i for i in range(len(SETUPS)) if ("deepspeed", i) not in REFUSED])
def test_deepspeed_config_round_trips_through_deepspeed(i):
    s = SETUPS[i]
    cfg = json.loads(export_plan("deepspeed", L70, s, steps=1000).text)
    ds = _ds_config(cfg, s.dp)
    assert ds.train_batch_size == s.global_batch and ds.train_micro_batch_size_per_gpu == s.micro_batch
    assert ds.gradient_accumulation_steps == s.grad_accum
    assert int(ds.zero_optimization_stage) == {Sharding.ZERO3: 3, Sharding.NONE: 0}[s.sharding]
    assert ds.bfloat16_config.enabled == (s.precision == Precision.BF16_MIXED)
    assert ds.float16_config.enabled == (s.precision == Precision.FP16_MIXED)
    assert ds.optimizer_name == "adamw" and ds.optimizer_params["lr"] == recipe(L70, 1000).lr
    assert ds.scheduler_name == "WarmupCosineLR" and ds.scheduler_params["total_num_steps"] == 1000
    assert ds.gradient_clipping == 1.0
    if s.offload_optimizer == Offload.CPU:
        assert ds.zero_config.offload_optimizer.device == "cpu"


def _torchtitan_config_manager():
    # torchtitan/__init__ imports its model zoo (triton kernels); the config package needs only torch + tyro,
    # so import it without running the package __init__
    if "torchtitan" not in sys.modules:
        spec = importlib.util.find_spec("torchtitan")
        if spec is None:
            pytest.skip("needs the export-check extra (torchtitan)")
        pkg = types.ModuleType("torchtitan")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules["torchtitan"] = pkg
    from torchtitan.config import ConfigManager

    return ConfigManager


@pytest.mark.parametrize("i", [i for i in range(len(SETUPS)) if ("torchtitan", i) not in REFUSED])
def test_torchtitan_toml_round_trips_through_config_manager(i, tmp_path):
    s = SETUPS[i]
    path = tmp_path / "job.toml"
    path.write_text(export_plan("torchtitan", L70, s, steps=321).text)
    cfg = _torchtitan_config_manager()().parse_args(["--job.config_file", str(path)])
    assert (cfg.model.name, cfg.model.flavor) == ("llama3", "70B")
    assert cfg.training.local_batch_size == s.micro_batch and cfg.training.global_batch_size == s.global_batch
    assert cfg.training.seq_len == s.seq_len and cfg.training.steps == 321
    p = cfg.parallelism
    assert (p.tensor_parallel_degree, p.pipeline_parallel_degree, p.context_parallel_degree) == (s.tp, s.pp, s.cp)
    assert p.data_parallel_replicate_degree * p.data_parallel_shard_degree == s.dp
    assert cfg.activation_checkpoint.mode == s.recompute.value
    assert cfg.optimizer.lr == recipe(L70, 321).lr and cfg.lr_scheduler.decay_type == "cosine"
    if s.precision == Precision.FP8:
        assert cfg.model.converters == ["quantize.linear.float8"]
        assert cfg.quantize.linear.float8.recipe_name == "tensorwise"
    if s.sharding == Sharding.FSDP_HYBRID:
        assert p.data_parallel_shard_degree == 2  # 8 GPUs per node / (tp 2 x cp 2)


@pytest.mark.parametrize("i", [i for i in range(len(SETUPS)) if ("accelerate", i) not in REFUSED])
def test_accelerate_config_round_trips_through_accelerate(i, tmp_path):
    pytest.importorskip("accelerate", reason="needs the export-check extra")
    from accelerate.commands.config.config_args import ClusterConfig

    s = SETUPS[i]
    path = tmp_path / "accelerate.yaml"
    path.write_text(export_plan("accelerate", L70, s).text)
    cfg = ClusterConfig.from_yaml_file(str(path))
    assert cfg.num_processes == s.gpus and cfg.num_machines == -(-s.gpus // 8)
    expected = {0: "MEGATRON_LM", 1: "DEEPSPEED", 3: "MULTI_GPU", 4: "FSDP"}[i]
    assert cfg.distributed_type.value == expected
    if expected == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == 3 and cfg.deepspeed_config["gradient_accumulation_steps"] == 8
    if expected == "MEGATRON_LM":
        assert cfg.megatron_lm_config["megatron_lm_tp_degree"] == 8
    if s.precision == Precision.FP8:
        assert str(cfg.mixed_precision) == "fp8" and cfg.fp8_config["fp8_format"] == "HYBRID"


def test_fsdp_carries_the_plan():
    s = SETUPS[1]
    fs = parse("fsdp", export_plan("fsdp", L70, s).text)
    c = fs["constants"]
    assert c["MICRO_BATCH"] == 2 and c["GRAD_ACCUM"] == 8 and c["GLOBAL_BATCH"] == s.global_batch
    assert c["DP_REPLICATE"] * c["DP_SHARD"] == s.dp and c["RESHARD_AFTER_FORWARD"] is True
    assert c["CPU_OFFLOAD"] is True and c["ACTIVATION_CHECKPOINT"] == "full"
    assert c["MODEL"] == "meta-llama/Meta-Llama-3-70B"
    assert fs["torchrun"]["--nnodes"] == "2" and fs["torchrun"]["--nproc-per-node"] == "8"


def test_validation_catches_unknown_keys():
    text = export_plan("deepspeed", L70, SETUPS[1]).text
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
    assert cfg["model"]["flavor"] == "8B"
    assert "wrote" in capsys.readouterr().out
    code = main(["export", "deepspeed", "llama-3-8b", "--gpus", "8", "--zero", "2", "--global-batch", "32", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and json.loads(data["text"])["gradient_accumulation_steps"] == 4
    assert main(["export", "slurm", "llama-3-8b"]) == 2
    capsys.readouterr()
    # a plan the target cannot express: one line, exit 2
    assert main(["export", "torchtitan", "llama-2-7b", "--gpus", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no torchtitan flavor" in err
