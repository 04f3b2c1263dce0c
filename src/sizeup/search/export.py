"""A plan as a runnable config: DeepSpeed JSON, torchrun + FSDP2 snippet, Megatron-LM arguments, torchtitan TOML,
accelerate YAML. Each export carries the plan's numbers and is checked against the key names the target documents
(key sets below, each with its documentation source), then parsed back (json / tomllib / yaml / shlex / ast).

Mapping of sizeup shardings to each framework:
  DeepSpeed zero_optimization.stage: none 0, zero1 / megatron-distopt 1, zero2 / fsdp-grad-op 2,
      zero3 / fsdp-full 3, fsdp-hybrid 3 + ZeRO++ hpZ (zero_hpz_partition_size = GPUs per node).
  FSDP2 fully_shard: full/zero3 reshard_after_forward=True; grad-op/zero2/zero1 reshard_after_forward=False;
      hybrid: 2-D mesh (replicate across nodes, shard inside); none: DDP (replicate).
  Megatron-LM: zero1 / megatron-distopt --use-distributed-optimizer; fsdp-* / zero3 --use-torch-fsdp2.
"""

from __future__ import annotations

import ast
import json
import math
import shlex
import tomllib
from dataclasses import dataclass

import yaml

from sizeup.core.types import ModelArch, Offload, Precision, Recompute, Sharding, TrainSetup
from sizeup.errors import SizeupError

FORMATS = ("deepspeed", "fsdp", "megatron", "torchtitan", "accelerate")

# --------------------------------------------------------------------------- documented key sets

# DeepSpeed configuration JSON, https://www.deepspeed.ai/docs/config-json/ (batch size, fp16/bf16,
# zero_optimization incl. offload_optimizer / offload_param, activation_checkpointing sections).
DEEPSPEED_KEYS = {
    "": {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "bf16", "fp16",
         "zero_optimization", "activation_checkpointing", "gradient_clipping", "steps_per_print",
         "wall_clock_breakdown", "optimizer", "scheduler"},
    "bf16": {"enabled"},
    "fp16": {"enabled", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis", "min_loss_scale"},
    "zero_optimization": {"stage", "offload_optimizer", "offload_param", "overlap_comm", "contiguous_gradients",
                          "reduce_bucket_size", "allgather_bucket_size", "stage3_prefetch_bucket_size",
                          "stage3_param_persistence_threshold", "zero_hpz_partition_size", "reduce_scatter",
                          "allgather_partitions"},
    "zero_optimization.offload_optimizer": {"device", "pin_memory", "nvme_path", "buffer_count", "fast_init"},
    "zero_optimization.offload_param": {"device", "pin_memory", "nvme_path", "buffer_count", "buffer_size"},
    "activation_checkpointing": {"partition_activations", "cpu_checkpointing", "contiguous_memory_optimization",
                                 "number_checkpoints", "synchronize_checkpoint_boundary", "profile"},
}

# Megatron-LM megatron/training/arguments.py (_add_distributed_args, _add_training_args, _add_network_size_args,
# _add_mixed_precision_args, _add_moe_args), core_r0.10+.
MEGATRON_FLAGS = {
    "--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--context-parallel-size",
    "--expert-model-parallel-size", "--sequence-parallel", "--recompute-granularity", "--recompute-method",
    "--recompute-num-layers", "--micro-batch-size", "--global-batch-size", "--num-layers-per-virtual-pipeline-stage",
    "--use-distributed-optimizer", "--use-torch-fsdp2", "--bf16", "--fp16", "--fp8-format", "--seq-length",
    "--max-position-embeddings", "--num-layers", "--hidden-size", "--ffn-hidden-size", "--num-attention-heads",
    "--group-query-attention", "--num-query-groups", "--kv-channels", "--swiglu", "--normalization",
    "--position-embedding-type", "--untie-embeddings-and-output-weights", "--disable-bias-linear",
    "--num-experts", "--moe-router-topk", "--train-iters", "--optimizer-cpu-offload", "--use-flash-attn",
    "--attention-backend", "--overlap-grad-reduce", "--overlap-param-gather",
}

# torchtitan torchtitan/config/job_config.py dataclasses (Job, Model, Training, Parallelism, ActivationCheckpoint).
TORCHTITAN_FIELDS = {
    "job": {"description", "dump_folder"},
    "model": {"name", "flavor", "hf_assets_path"},
    "training": {"local_batch_size", "global_batch_size", "seq_len", "steps", "mixed_precision_param",
                 "mixed_precision_reduce", "enable_cpu_offload", "max_norm"},
    "parallelism": {"data_parallel_replicate_degree", "data_parallel_shard_degree", "fsdp_reshard_after_forward",
                    "tensor_parallel_degree", "pipeline_parallel_degree", "pipeline_parallel_schedule",
                    "pipeline_parallel_microbatch_size", "context_parallel_degree", "expert_parallel_degree",
                    "enable_async_tensor_parallel"},
    "activation_checkpoint": {"mode", "selective_ac_option"},
}

# accelerate config file (accelerate/commands/config/config_args.py ClusterConfig; `accelerate config` output;
# docs: https://huggingface.co/docs/accelerate/package_reference/cli#accelerate-config).
ACCELERATE_KEYS = {
    "": {"compute_environment", "distributed_type", "mixed_precision", "num_machines", "num_processes",
         "machine_rank", "main_training_function", "use_cpu", "same_network", "rdzv_backend", "downcast_bf16",
         "deepspeed_config", "fsdp_config", "megatron_lm_config", "gpu_ids", "tpu_use_cluster", "tpu_use_sudo"},
    "deepspeed_config": {"zero_stage", "offload_optimizer_device", "offload_param_device",
                         "gradient_accumulation_steps", "gradient_clipping", "zero3_init_flag",
                         "zero3_save_16bit_model", "deepspeed_multinode_launcher"},
    "fsdp_config": {"fsdp_version", "fsdp_reshard_after_forward", "fsdp_sharding_strategy", "fsdp_offload_params",
                    "fsdp_auto_wrap_policy", "fsdp_activation_checkpointing", "fsdp_state_dict_type",
                    "fsdp_cpu_ram_efficient_loading", "fsdp_use_orig_params", "fsdp_backward_prefetch"},
    "megatron_lm_config": {"megatron_lm_tp_degree", "megatron_lm_pp_degree", "megatron_lm_num_micro_batches",
                           "megatron_lm_sequence_parallelism", "megatron_lm_recompute_activations",
                           "megatron_lm_use_distributed_optimizer", "megatron_lm_gradient_clipping"},
}

# torchrun (torch.distributed.run) flags: https://pytorch.org/docs/stable/elastic/run.html
TORCHRUN_FLAGS = {"--nnodes", "--nproc-per-node", "--node-rank", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id"}


@dataclass(frozen=True)
class Export:
    format: str
    text: str
    filename: str
    notes: tuple[str, ...] = ()


def _ds_stage(s: Sharding) -> int:
    return {Sharding.NONE: 0, Sharding.ZERO1: 1, Sharding.MEGATRON_DISTOPT: 1, Sharding.ZERO2: 2,
            Sharding.FSDP_GRAD_OP: 2, Sharding.ZERO3: 3, Sharding.FSDP_FULL: 3, Sharding.FSDP_HYBRID: 3}[s]


def _dtype_name(p: Precision) -> str:
    return {Precision.FP16_MIXED: "float16", Precision.FP32: "float32", Precision.TF32: "float32"}.get(p, "bfloat16")


def _nodes(setup: TrainSetup) -> tuple[int, int]:
    per_node = min(setup.gpus, max(1, setup.gpus_per_node))
    return max(1, math.ceil(setup.gpus / per_node)), per_node


# --------------------------------------------------------------------------- exporters


def deepspeed(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    notes = []
    zero: dict = {"stage": _ds_stage(setup.sharding), "overlap_comm": True, "contiguous_gradients": True}
    if setup.offload_optimizer != Offload.NONE:
        zero["offload_optimizer"] = {"device": setup.offload_optimizer.value, "pin_memory": True}
    if setup.offload_params != Offload.NONE:
        zero["offload_param"] = {"device": setup.offload_params.value, "pin_memory": True}
    if setup.sharding == Sharding.FSDP_HYBRID:
        zero["zero_hpz_partition_size"] = min(setup.gpus, setup.gpus_per_node)
        notes.append("hybrid sharding -> ZeRO-3 with ZeRO++ hpZ (secondary partition inside a node)")
    cfg: dict = {
        "train_batch_size": setup.global_batch,
        "train_micro_batch_size_per_gpu": setup.micro_batch,
        "gradient_accumulation_steps": setup.grad_accum,
        "bf16": {"enabled": setup.precision in (Precision.BF16_MIXED, Precision.BF16, Precision.FP8)},
        "fp16": {"enabled": setup.precision == Precision.FP16_MIXED},
        "zero_optimization": zero,
        "gradient_clipping": 1.0,
        "steps_per_print": 10,
        "wall_clock_breakdown": False,
    }
    if setup.recompute != Recompute.NONE:
        cfg["activation_checkpointing"] = {"partition_activations": setup.tp > 1, "cpu_checkpointing": False,
                                           "contiguous_memory_optimization": False,
                                           "number_checkpoints": None, "synchronize_checkpoint_boundary": False,
                                           "profile": False}
        notes.append("activation checkpointing must also be switched on in the model "
                     "(model.gradient_checkpointing_enable() or deepspeed.checkpointing.checkpoint)")
    if setup.tp > 1 or setup.pp > 1 or setup.cp > 1:
        notes.append(f"tp={setup.tp} pp={setup.pp} cp={setup.cp}: DeepSpeed takes these from the model code "
                     "(Megatron-DeepSpeed mpu / PipelineModule(num_stages)); train_batch_size counts dp ranks only")
    if setup.precision == Precision.FP8:
        notes.append("fp8 GEMMs need Transformer Engine in the model; the config enables bf16")
    return Export("deepspeed", json.dumps(cfg, indent=2) + "\n", "ds_config.json", tuple(notes))


def fsdp(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    nodes, per_node = _nodes(setup)
    notes = []
    replicate, shard = 1, setup.dp
    if setup.sharding == Sharding.NONE:
        replicate, shard = setup.dp, 1
    elif setup.sharding == Sharding.FSDP_HYBRID:
        shard = max(1, min(setup.dp, per_node // max(1, setup.tp * setup.cp)))
        replicate = setup.dp // shard
    reshard = setup.sharding in (Sharding.ZERO3, Sharding.FSDP_FULL, Sharding.FSDP_HYBRID)
    if setup.pp > 1:
        notes.append(f"pp={setup.pp}: use torch.distributed.pipelining (or the torchtitan export)")
    dtype = _dtype_name(setup.precision)
    offload = setup.offload_optimizer != Offload.NONE
    ac = {Recompute.NONE: "", Recompute.SELECTIVE: "selective", Recompute.FULL: "full"}[setup.recompute]
    text = f"""# torchrun + FSDP2 launch for {model.id}: {setup.gpus} GPUs = {nodes} node(s) x {per_node}
torchrun --nnodes {nodes} --nproc-per-node {per_node} --node-rank $NODE_RANK --rdzv-backend c10d --rdzv-endpoint $MASTER_ADDR:29500 train.py
# ---- train.py (excerpt)
import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import checkpoint

DP_REPLICATE = {replicate}
DP_SHARD = {shard}
TP = {setup.tp}
CP = {setup.cp}
MICRO_BATCH = {setup.micro_batch}
GRAD_ACCUM = {setup.grad_accum}
GLOBAL_BATCH = {setup.global_batch}
SEQ_LEN = {setup.seq_len}
RESHARD_AFTER_FORWARD = {reshard}
CPU_OFFLOAD = {offload}
ACTIVATION_CHECKPOINT = {ac!r}
assert GLOBAL_BATCH == MICRO_BATCH * DP_REPLICATE * DP_SHARD * GRAD_ACCUM
mesh = init_device_mesh("cuda", (DP_REPLICATE, DP_SHARD, CP, TP), mesh_dim_names=("dp_replicate", "dp_shard", "cp", "tp"))
mp = MixedPrecisionPolicy(param_dtype=torch.{dtype}, reduce_dtype=torch.float32)
kw = dict(mesh=mesh["dp_replicate", "dp_shard"], mp_policy=mp, reshard_after_forward=RESHARD_AFTER_FORWARD)
if CPU_OFFLOAD:
    kw["offload_policy"] = CPUOffloadPolicy()
for block in model.layers:  # one FSDP unit per transformer block
    fully_shard(block, **kw)
fully_shard(model, **kw)
"""
    return Export("fsdp", text, "launch_fsdp2.sh", tuple(notes))


def megatron(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    args: list[str] = [
        "--tensor-model-parallel-size", str(setup.tp), "--pipeline-model-parallel-size", str(setup.pp),
        "--context-parallel-size", str(setup.cp),
    ]
    if setup.ep > 1 or model.is_moe:
        args += ["--expert-model-parallel-size", str(setup.ep), "--num-experts", str(model.num_experts),
                 "--moe-router-topk", str(model.experts_per_token)]
    if setup.tp > 1 and setup.sequence_parallel:
        args.append("--sequence-parallel")
    if setup.recompute == Recompute.SELECTIVE:
        args += ["--recompute-granularity", "selective"]
    elif setup.recompute == Recompute.FULL:
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    args += ["--micro-batch-size", str(setup.micro_batch), "--global-batch-size", str(setup.global_batch),
             "--seq-length", str(setup.seq_len), "--max-position-embeddings", str(max(setup.seq_len, model.max_seq_len))]
    if setup.virtual_pp > 1:
        args += ["--num-layers-per-virtual-pipeline-stage", str(model.num_layers // (setup.pp * setup.virtual_pp))]
    if setup.sharding in (Sharding.ZERO1, Sharding.MEGATRON_DISTOPT, Sharding.ZERO2):
        args += ["--use-distributed-optimizer", "--overlap-grad-reduce", "--overlap-param-gather"]
    elif setup.sharding in (Sharding.ZERO3, Sharding.FSDP_FULL, Sharding.FSDP_GRAD_OP, Sharding.FSDP_HYBRID):
        args.append("--use-torch-fsdp2")
    if setup.offload_optimizer != Offload.NONE:
        args.append("--optimizer-cpu-offload")
    if setup.precision in (Precision.BF16_MIXED, Precision.BF16):
        args.append("--bf16")
    elif setup.precision == Precision.FP16_MIXED:
        args.append("--fp16")
    elif setup.precision == Precision.FP8:
        args += ["--bf16", "--fp8-format", "hybrid"]
    args += ["--num-layers", str(model.num_layers), "--hidden-size", str(model.hidden_size),
             "--ffn-hidden-size", str(model.ffn_size), "--num-attention-heads", str(model.num_heads),
             "--kv-channels", str(model.head_dim)]
    if model.num_kv_heads and model.num_kv_heads != model.num_heads:
        args += ["--group-query-attention", "--num-query-groups", str(model.num_kv_heads)]
    if model.mlp_kind.gated:
        args.append("--swiglu")
    args += ["--normalization", "RMSNorm" if model.norm_kind.value == "rmsnorm" else "LayerNorm"]
    if model.position.value == "rotary":
        args += ["--position-embedding-type", "rope"]
    if not model.tie_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    if not (model.qkv_bias or model.mlp_bias or model.out_bias):
        args.append("--disable-bias-linear")
    if steps:
        args += ["--train-iters", str(steps)]
    nodes, per_node = _nodes(setup)
    lines = [f"# Megatron-LM arguments for {model.id} on {setup.gpus} GPUs ({nodes} x {per_node})",
             f"torchrun --nnodes {nodes} --nproc-per-node {per_node} pretrain_gpt.py \\"]
    pairs, i = [], 0
    while i < len(args):
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            pairs.append(f"{args[i]} {shlex.quote(args[i + 1])}")
            i += 2
        else:
            pairs.append(args[i])
            i += 1
    lines += [f"    {p} \\" for p in pairs[:-1]] + [f"    {pairs[-1]}"]
    notes = ("zero2 has no Megatron equivalent: mapped to the distributed optimizer (ZeRO-1 semantics)",) \
        if setup.sharding == Sharding.ZERO2 else ()
    return Export("megatron", "\n".join(lines) + "\n", "megatron_args.sh", notes)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def torchtitan(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    notes = []
    replicate, shard = 1, setup.dp
    if setup.sharding == Sharding.NONE:
        replicate, shard = setup.dp, 1
    elif setup.sharding == Sharding.FSDP_HYBRID:
        nodes, per_node = _nodes(setup)
        shard = max(1, min(setup.dp, per_node // max(1, setup.tp * setup.cp)))
        replicate = setup.dp // shard
    reshard = "never" if setup.sharding in (Sharding.ZERO1, Sharding.ZERO2, Sharding.FSDP_GRAD_OP,
                                            Sharding.MEGATRON_DISTOPT) else "default"
    sections = {
        "job": {"description": f"sizeup plan: {model.id} on {setup.gpus} GPUs"},
        "model": {"name": {"llama": "llama3", "": "llama3"}.get(model.hf_model_type, model.hf_model_type),
                  "flavor": model.id},
        "training": {"local_batch_size": setup.micro_batch, "global_batch_size": setup.global_batch,
                     "seq_len": setup.seq_len, "mixed_precision_param": _dtype_name(setup.precision),
                     "mixed_precision_reduce": "float32",
                     "enable_cpu_offload": setup.offload_optimizer != Offload.NONE},
        "parallelism": {"data_parallel_replicate_degree": replicate, "data_parallel_shard_degree": shard,
                        "fsdp_reshard_after_forward": reshard, "tensor_parallel_degree": setup.tp,
                        "pipeline_parallel_degree": setup.pp, "context_parallel_degree": setup.cp,
                        "expert_parallel_degree": setup.ep},
        "activation_checkpoint": {"mode": setup.recompute.value},
    }
    if steps:
        sections["training"]["steps"] = steps
    if setup.pp > 1:
        sections["parallelism"]["pipeline_parallel_schedule"] = "1F1B"
        sections["parallelism"]["pipeline_parallel_microbatch_size"] = setup.micro_batch
    if setup.recompute == Recompute.SELECTIVE:
        sections["activation_checkpoint"]["selective_ac_option"] = "op"
    notes.append(f"[model] flavor = {model.id!r}: use the torchtitan flavor name of this architecture (e.g. '70B')")
    if setup.sharding in (Sharding.ZERO1, Sharding.ZERO2, Sharding.MEGATRON_DISTOPT):
        notes.append("ZeRO-1/2 -> FSDP2 with reshard_after_forward = never (ZeRO-2 semantics)")
    lines = [f"# torchtitan job config for {model.id}: {setup.gpus} GPUs (sizeup plan)"]
    for name, fields_ in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in fields_.items()]
    return Export("torchtitan", "\n".join(lines) + "\n", "torchtitan.toml", tuple(notes))


def accelerate(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    nodes, per_node = _nodes(setup)
    notes = []
    mp = {Precision.BF16_MIXED: "bf16", Precision.BF16: "bf16", Precision.FP16_MIXED: "fp16",
          Precision.FP8: "fp8"}.get(setup.precision, "no")
    cfg: dict = {"compute_environment": "LOCAL_MACHINE", "mixed_precision": mp, "num_machines": nodes,
                 "num_processes": setup.gpus, "machine_rank": 0, "main_training_function": "main",
                 "use_cpu": False, "same_network": True, "rdzv_backend": "static"}
    offload = setup.offload_optimizer.value if setup.offload_optimizer != Offload.NONE else "none"
    if setup.tp > 1 or setup.pp > 1 or setup.sharding == Sharding.MEGATRON_DISTOPT:
        cfg["distributed_type"] = "MEGATRON_LM"
        cfg["megatron_lm_config"] = {
            "megatron_lm_tp_degree": setup.tp, "megatron_lm_pp_degree": setup.pp,
            "megatron_lm_num_micro_batches": setup.grad_accum,
            "megatron_lm_sequence_parallelism": setup.sequence_parallel and setup.tp > 1,
            "megatron_lm_recompute_activations": setup.recompute != Recompute.NONE,
            "megatron_lm_use_distributed_optimizer": setup.sharding != Sharding.NONE,
            "megatron_lm_gradient_clipping": 1.0}
    elif setup.sharding in (Sharding.FSDP_FULL, Sharding.FSDP_GRAD_OP, Sharding.FSDP_HYBRID):
        cfg["distributed_type"] = "FSDP"
        cfg["fsdp_config"] = {
            "fsdp_version": 2, "fsdp_reshard_after_forward": setup.sharding != Sharding.FSDP_GRAD_OP,
            "fsdp_offload_params": setup.offload_optimizer != Offload.NONE,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_activation_checkpointing": setup.recompute != Recompute.NONE,
            "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_cpu_ram_efficient_loading": True}
        if setup.sharding == Sharding.FSDP_HYBRID:
            notes.append("hybrid sharding: accelerate's FSDP2 plugin shards over all ranks; use torchtitan for HSDP")
    elif setup.sharding != Sharding.NONE:
        cfg["distributed_type"] = "DEEPSPEED"
        cfg["deepspeed_config"] = {"zero_stage": _ds_stage(setup.sharding), "offload_optimizer_device": offload,
                                   "offload_param_device": "none", "gradient_accumulation_steps": setup.grad_accum,
                                   "gradient_clipping": 1.0, "zero3_init_flag": _ds_stage(setup.sharding) == 3}
    else:
        cfg["distributed_type"] = "MULTI_GPU" if setup.gpus > 1 else "NO"
    if setup.cp > 1:
        notes.append(f"cp={setup.cp}: context parallelism is not in accelerate's config; use megatron or torchtitan")
    notes.append(f"per-process micro-batch {setup.micro_batch}, gradient accumulation {setup.grad_accum} "
                 f"(Accelerator(gradient_accumulation_steps={setup.grad_accum})), global batch {setup.global_batch}")
    text = f"# accelerate config for {model.id}: {setup.gpus} GPUs\n" + yaml.safe_dump(cfg, sort_keys=False)
    return Export("accelerate", text, "accelerate_config.yaml", tuple(notes))


EXPORTERS = {"deepspeed": deepspeed, "fsdp": fsdp, "megatron": megatron, "torchtitan": torchtitan,
             "accelerate": accelerate}


def export_plan(fmt: str, model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    """The plan in one target format; validated against the documented keys before it is returned."""
    key = str(fmt).strip().lower()
    if key not in EXPORTERS:
        from sizeup.errors import choice_error

        raise choice_error("export format", fmt, list(FORMATS))
    out = EXPORTERS[key](model, setup, steps)
    problems = validate(key, out.text)
    if problems:  # a bug in an exporter, not a user error
        raise AssertionError(f"{key} export failed validation: {problems}")
    return out


# --------------------------------------------------------------------------- validation / parse back


def parse(fmt: str, text: str):
    """Parse an export back: dict (json/toml/yaml) or, for megatron/fsdp, {flag: value} of the command line."""
    if fmt == "deepspeed":
        return json.loads(text)
    if fmt == "torchtitan":
        return tomllib.loads(text)
    if fmt == "accelerate":
        return yaml.safe_load(text)
    if fmt == "megatron":
        body = " ".join(line.rstrip("\\").strip() for line in text.splitlines() if not line.startswith("#"))
        tokens = shlex.split(body)
        tokens = tokens[tokens.index("pretrain_gpt.py") + 1:]
        return _flags(tokens)
    if fmt == "fsdp":
        launch = next(line for line in text.splitlines() if line.startswith("torchrun "))
        flags = _flags(shlex.split(launch)[1:-1])
        code = text.split("# ---- train.py (excerpt)\n", 1)[1]
        tree = ast.parse(code)
        consts = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                  for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()
                  and isinstance(node.value, ast.Constant)}
        return {"torchrun": flags, "constants": consts}
    raise SizeupError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")


def _flags(tokens: list[str]) -> dict:
    out, i = {}, 0
    while i < len(tokens):
        tok = tokens[i]
        if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            out[tok] = tokens[i + 1]
            i += 2
        else:
            out[tok] = True
            i += 1
    return out


def validate(fmt: str, text: str) -> list[str]:
    """Key names not in the target's documented key set (empty when valid); also fails when it does not parse."""
    try:
        data = parse(fmt, text)
    except Exception as exc:  # noqa: BLE001 - report any parse failure as a problem
        return [f"does not parse: {exc}"]
    problems: list[str] = []

    def check(d: dict, allowed: dict, prefix: str = "") -> None:
        for key, value in d.items():
            if key not in allowed.get(prefix, set()):
                problems.append(f"{prefix + '.' if prefix else ''}{key}")
            sub = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict) and sub in allowed:
                check(value, allowed, sub)

    if fmt == "deepspeed":
        check(data, DEEPSPEED_KEYS)
    elif fmt == "accelerate":
        check(data, ACCELERATE_KEYS)
    elif fmt == "torchtitan":
        for section, fields_ in data.items():
            if section not in TORCHTITAN_FIELDS:
                problems.append(section)
                continue
            problems += [f"{section}.{k}" for k in fields_ if k not in TORCHTITAN_FIELDS[section]]
    elif fmt == "megatron":
        problems += [k for k in data if k not in MEGATRON_FLAGS]
    elif fmt == "fsdp":
        problems += [k for k in data["torchrun"] if k not in TORCHRUN_FLAGS]
    return problems
