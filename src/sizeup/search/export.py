"""A plan as a runnable config: DeepSpeed JSON, torchrun + FSDP2 snippet, Megatron-LM arguments, torchtitan TOML,
accelerate YAML. Each export carries the plan's numbers and is checked against the key names the target documents
(key sets below, each with its documentation source), then parsed back (json / tomllib / yaml / shlex / ast).

Every export carries the model (layers, widths, GQA groups, RoPE base and scaling, norm epsilon, vocabulary /
tokenizer, tied embeddings, MoE router) and the plan (parallel sizes, micro/global batch, recompute, precision and
fp8 recipe, optimizer and LR schedule, sharding). A plan the target cannot express raises ExportRefused (one line,
exit 2) instead of being translated into something else.

Mapping of sizeup shardings to each framework:
  DeepSpeed zero_optimization.stage: none 0, zero1 / megatron-distopt 1, zero2 / fsdp-grad-op 2,
      zero3 / fsdp-full 3, fsdp-hybrid 3 + ZeRO++ hpZ (zero_hpz_partition_size = GPUs per node).
  FSDP2 fully_shard: full/zero3 reshard_after_forward=True; grad-op/zero2/zero1 reshard_after_forward=False;
      hybrid: 2-D mesh (replicate across nodes, shard inside); none: DDP (replicate).
  Megatron-LM: zero1 / megatron-distopt --use-distributed-optimizer; zero2 / zero3 Megatron-FSDP
      (--use-megatron-fsdp --data-parallel-sharding-strategy optim_grads / optim_grads_params);
      fsdp-full --use-torch-fsdp2; fsdp-grad-op and fsdp-hybrid are refused.
  torchtitan (v0.2.x TOML job config): FSDP2 degrees; model flavor only when a torchtitan flavor has exactly the
      model's shape (TORCHTITAN_FLAVORS), else refused.
"""

from __future__ import annotations

import ast
import json
import math
import shlex
import tomllib
from dataclasses import dataclass

import yaml

from sizeup.core.types import (
    ArchKind, MlpKind, ModelArch, NormKind, Offload, Optimizer, Peft, PositionKind, Precision, QkNorm, Recompute, Sharding,
    TrainSetup,
)
from sizeup.errors import SizeupError

FORMATS = ("deepspeed", "fsdp", "megatron", "torchtitan", "accelerate")

# --------------------------------------------------------------------------- documented key sets

# DeepSpeed configuration JSON, https://www.deepspeed.ai/docs/config-json/ (batch size, fp16/bf16,
# zero_optimization incl. offload_optimizer / offload_param, activation_checkpointing sections).
DEEPSPEED_KEYS = {
    "": {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "bf16", "fp16",
         "zero_optimization", "activation_checkpointing", "gradient_clipping", "steps_per_print",
         "wall_clock_breakdown", "optimizer", "scheduler"},
    "optimizer": {"type", "params"},
    "scheduler": {"type", "params"},
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
    "--use-distributed-optimizer", "--use-torch-fsdp2", "--use-megatron-fsdp", "--data-parallel-sharding-strategy",
    "--ckpt-format", "--no-gradient-accumulation-fusion", "--bf16", "--fp16", "--fp8-format", "--fp8-recipe",
    "--fp8-amax-history-len", "--fp8-amax-compute-algo", "--main-grads-dtype", "--exp-avg-dtype",
    "--exp-avg-sq-dtype", "--seq-length", "--max-position-embeddings", "--num-layers", "--hidden-size",
    "--ffn-hidden-size", "--num-attention-heads", "--group-query-attention", "--num-query-groups", "--kv-channels",
    "--swiglu", "--normalization", "--norm-epsilon", "--qk-layernorm", "--position-embedding-type", "--rotary-base",
    "--use-rope-scaling", "--rope-scaling-factor", "--untie-embeddings-and-output-weights", "--disable-bias-linear",
    "--add-qkv-bias", "--num-experts", "--moe-router-topk", "--moe-ffn-hidden-size", "--moe-router-load-balancing-type",
    "--moe-aux-loss-coeff", "--moe-grouped-gemm", "--moe-token-dispatcher-type", "--moe-shared-expert-intermediate-size",
    "--moe-layer-freq", "--tokenizer-type", "--tokenizer-model", "--vocab-size", "--make-vocab-size-divisible-by",
    "--attention-dropout", "--hidden-dropout", "--optimizer", "--lr", "--min-lr", "--lr-decay-style",
    "--lr-warmup-iters", "--lr-decay-iters", "--weight-decay", "--clip-grad", "--adam-beta1", "--adam-beta2",
    "--adam-eps", "--train-iters", "--optimizer-cpu-offload", "--overlap-grad-reduce", "--overlap-param-gather",
}

# torchtitan v0.2.2 torchtitan/config/job_config.py dataclasses (Job, Model, Optimizer, LRScheduler, Training,
# Parallelism, ActivationCheckpoint, Quantize.linear.float8); v0.3.0 replaced TOML files by Python config_registry
# functions, so these exports target the v0.2.x TOML job config.
TORCHTITAN_FIELDS = {
    "job": {"description", "dump_folder"},
    "model": {"name", "flavor", "hf_assets_path", "converters"},
    "optimizer": {"name", "lr", "beta1", "beta2", "eps", "weight_decay", "implementation"},
    "lr_scheduler": {"warmup_steps", "decay_ratio", "decay_type", "min_lr_factor"},
    "quantize.linear.float8": {"recipe_name", "filter_fqns", "emulate"},
    "training": {"local_batch_size", "global_batch_size", "seq_len", "steps", "mixed_precision_param",
                 "mixed_precision_reduce", "enable_cpu_offload", "max_norm", "dtype"},
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
         "deepspeed_config", "fsdp_config", "megatron_lm_config", "gpu_ids", "tpu_use_cluster", "tpu_use_sudo",
         "fp8_config"},
    "fp8_config": {"backend", "fp8_format", "amax_history_len", "amax_compute_algo", "use_autocast_during_eval"},
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


class ExportRefused(SizeupError):
    """The plan asks for something the target framework cannot express (one line, exit 2)."""


def _refuse(target: str, what: str, instead: str) -> ExportRefused:
    return ExportRefused(f"{target} cannot express {what}; {instead}")


def _ds_stage(s: Sharding) -> int:
    return {Sharding.NONE: 0, Sharding.ZERO1: 1, Sharding.MEGATRON_DISTOPT: 1, Sharding.ZERO2: 2,
            Sharding.FSDP_GRAD_OP: 2, Sharding.ZERO3: 3, Sharding.FSDP_FULL: 3, Sharding.FSDP_HYBRID: 3}[s]


def _dtype_name(p: Precision) -> str:
    return {Precision.FP16_MIXED: "float16", Precision.FP32: "float32", Precision.TF32: "float32"}.get(p, "bfloat16")


def _nodes(setup: TrainSetup) -> tuple[int, int]:
    per_node = min(setup.gpus, max(1, setup.gpus_per_node))
    return max(1, math.ceil(setup.gpus / per_node)), per_node


# --------------------------------------------------------------------------- training recipe

@dataclass(frozen=True)
class Recipe:
    """Optimizer hyper-parameters and LR schedule written into every export.

    Touvron et al. 2023, "Llama 2" (arXiv:2307.09288) section 2.2: AdamW beta1 = 0.9, beta2 = 0.95, eps = 1e-5,
    weight decay 0.1, gradient clipping 1.0, cosine schedule with 2000 warmup steps decaying to 10% of the peak;
    peak LR 3e-4 for the 7B/13B models and 1.5e-4 for 34B/70B (Table 1). Symbols: lr = peak learning rate,
    min_lr = final LR, warmup = warmup steps (capped at 10% of the run when the run is shorter).
    """

    lr: float
    min_lr: float
    warmup_steps: int
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-5
    weight_decay: float = 0.1
    clip_grad: float = 1.0


def recipe(model: ModelArch, steps: int | None) -> Recipe:
    from sizeup.core.params import count_params

    total = count_params(model).total
    lr = 3e-4 if total < 30e9 else 1.5e-4
    warmup = 2000 if not steps else max(1, min(2000, steps // 10))
    return Recipe(lr=lr, min_lr=float(f"{lr / 10:.6g}"), warmup_steps=warmup)


def _hf_repo(model: ModelArch) -> str | None:
    """The model's Hugging Face repo id (its tokenizer), from the preset's aliases or source URL."""
    import re

    for alias in model.aliases:
        if re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", alias):
            return alias
    m = re.search(r"huggingface\.co/([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)", model.source or "")
    return m.group(1) if m else None


def _auto_class(model: ModelArch) -> str:
    """The transformers Auto class that loads the model: causal LM, seq2seq LM (T5), or the encoder's head."""
    if model.is_encoder_decoder:
        return "AutoModelForSeq2SeqLM"
    if model.arch_kind == "encoder":
        return {"classifier": "AutoModelForSequenceClassification", "lm": "AutoModelForMaskedLM"}.get(
            model.head.value, "AutoModel")
    return "AutoModelForCausalLM"


def _rope_scaling(model: ModelArch) -> dict:
    return dict(model.rope_scaling)


# --------------------------------------------------------------------------- exporters


def deepspeed(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    notes = []
    if setup.precision == Precision.FP8:
        raise _refuse("deepspeed", "fp8 GEMMs in its config (Transformer Engine lives in the model code)",
                      "export --precision bf16-mixed and wrap the model in te.fp8_autocast, or export megatron, "
                      "torchtitan or accelerate")
    if setup.precision == Precision.BF16:
        raise _refuse("deepspeed", "pure bf16 without an fp32 master copy (its bf16 mode keeps fp32 master weights)",
                      "plan with --precision bf16-mixed")
    if setup.offload_optimizer == Offload.NVME or setup.offload_params == Offload.NVME:
        raise _refuse("deepspeed", "NVMe offload without an nvme_path", "plan with --offload cpu")
    if setup.tp > 1 or setup.pp > 1 or setup.cp > 1:
        raise _refuse("deepspeed", f"tp={setup.tp} pp={setup.pp} cp={setup.cp} in ds_config.json (they live in "
                      "Megatron-DeepSpeed's model code)", "export megatron or torchtitan for this plan")
    zero: dict = {"stage": _ds_stage(setup.sharding), "overlap_comm": True, "contiguous_gradients": True}
    if setup.offload_optimizer != Offload.NONE:
        zero["offload_optimizer"] = {"device": setup.offload_optimizer.value, "pin_memory": True}
    if setup.offload_params != Offload.NONE:
        if zero["stage"] != 3:
            raise _refuse("deepspeed", "parameter offload below ZeRO stage 3", "plan with --zero 3")
        zero["offload_param"] = {"device": setup.offload_params.value, "pin_memory": True}
    if setup.sharding == Sharding.FSDP_HYBRID:
        zero["zero_hpz_partition_size"] = min(setup.gpus, setup.gpus_per_node)
        notes.append("hybrid sharding -> ZeRO-3 with ZeRO++ hpZ (secondary partition inside a node)")
    r = recipe(model, steps)
    cfg: dict = {
        "train_batch_size": setup.global_batch,
        "train_micro_batch_size_per_gpu": setup.micro_batch,
        "gradient_accumulation_steps": setup.grad_accum,
        "bf16": {"enabled": setup.precision == Precision.BF16_MIXED},
        "fp16": {"enabled": setup.precision == Precision.FP16_MIXED},
        "zero_optimization": zero,
        "gradient_clipping": r.clip_grad,
        "steps_per_print": 10,
        "wall_clock_breakdown": False,
    }
    if setup.precision == Precision.FP16_MIXED:
        cfg["fp16"].update({"loss_scale": 0, "initial_scale_power": 16, "loss_scale_window": 1000,
                            "hysteresis": 2, "min_loss_scale": 1})
    opt = {Optimizer.ADAMW: ("AdamW", {"lr": r.lr, "betas": [r.beta1, r.beta2], "eps": r.eps,
                                       "weight_decay": r.weight_decay}),
           Optimizer.LION: ("Lion", {"lr": r.lr / 3, "betas": [0.9, 0.99], "weight_decay": r.weight_decay * 3}),
           Optimizer.SGD: ("SGD", {"lr": r.lr, "momentum": 0.9, "weight_decay": r.weight_decay}),
           Optimizer.ADAFACTOR: ("Adafactor", {"lr": r.lr, "weight_decay": r.weight_decay})}.get(setup.optimizer)
    if opt is None:  # adam8bit: bitsandbytes' optimizer is passed to deepspeed.initialize(optimizer=...)
        notes.append("adam8bit: build bitsandbytes.optim.AdamW8bit yourself and pass it as "
                     "deepspeed.initialize(optimizer=...); the config has no optimizer section")
    else:
        cfg["optimizer"] = {"type": opt[0], "params": opt[1]}
        if setup.optimizer == Optimizer.LION:
            notes.append("Lion: lr = AdamW lr / 3 and weight decay x 3 (Chen et al. 2023, 'Symbolic Discovery of "
                         "Optimization Algorithms', section 5)")
    if steps:
        cfg["scheduler"] = {"type": "WarmupCosineLR", "params": {
            "total_num_steps": steps, "warmup_num_steps": r.warmup_steps, "warmup_min_ratio": 0.0,
            "cos_min_ratio": round(r.min_lr / r.lr, 6)}}
    else:
        cfg["scheduler"] = {"type": "WarmupLR", "params": {
            "warmup_min_lr": 0.0, "warmup_max_lr": r.lr, "warmup_num_steps": r.warmup_steps}}
        notes.append("no step count in the plan: linear warmup then constant LR (give --tokens for a cosine decay)")
    if setup.recompute != Recompute.NONE:
        cfg["activation_checkpointing"] = {"partition_activations": False, "cpu_checkpointing": False,
                                           "contiguous_memory_optimization": False,
                                           "number_checkpoints": None, "synchronize_checkpoint_boundary": False,
                                           "profile": False}
        notes.append(f"{setup.recompute.value} recompute: switch activation checkpointing on in the model "
                     "(model.gradient_checkpointing_enable() or deepspeed.checkpointing.checkpoint)")
    notes.append(f"model {model.id}: load it with transformers ({_auto_class(model)}.from_pretrained"
                 f"({_hf_repo(model) or model.id!r})); seq_len {setup.seq_len} is set by your data loader")
    return Export("deepspeed", json.dumps(cfg, indent=2) + "\n", "ds_config.json", tuple(notes))


def fsdp(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    nodes, per_node = _nodes(setup)
    notes = []
    if setup.pp > 1:
        raise _refuse("fsdp", f"pipeline parallelism (pp={setup.pp}) in a torchrun + fully_shard launch",
                      "export torchtitan or megatron for this plan")
    if setup.sharding == Sharding.MEGATRON_DISTOPT:
        raise _refuse("fsdp", "the Megatron distributed optimizer", "plan with --zero 1/2/3 or export megatron")
    if setup.offload_optimizer == Offload.NVME or setup.offload_params == Offload.NVME:
        raise _refuse("fsdp", "NVMe offload (FSDP2 offloads to CPU only)", "plan with --offload cpu")
    replicate, shard = 1, setup.dp
    if setup.sharding == Sharding.NONE:
        replicate, shard = setup.dp, 1
    elif setup.sharding == Sharding.FSDP_HYBRID:
        shard = max(1, min(setup.dp, per_node // max(1, setup.tp * setup.cp)))
        replicate = setup.dp // shard
    reshard = setup.sharding in (Sharding.ZERO3, Sharding.FSDP_FULL, Sharding.FSDP_HYBRID)
    if setup.sharding == Sharding.ZERO1:
        notes.append("zero1 -> FSDP2 with reshard_after_forward=False (gradients are sharded too: ZeRO-2 memory)")
    dtype = _dtype_name(setup.precision)
    offload = setup.offload_optimizer != Offload.NONE or setup.offload_params != Offload.NONE
    ac = {Recompute.NONE: "", Recompute.SELECTIVE: "selective", Recompute.FULL: "full"}[setup.recompute]
    r = recipe(model, steps)
    repo = _hf_repo(model) or model.id
    text = f"""# torchrun + FSDP2 launch for {model.id}: {setup.gpus} GPUs = {nodes} node(s) x {per_node}
torchrun --nnodes {nodes} --nproc-per-node {per_node} --node-rank $NODE_RANK --rdzv-backend c10d --rdzv-endpoint $MASTER_ADDR:29500 train.py
# ---- train.py (excerpt)
import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
from transformers import AutoModelForCausalLM

MODEL = {repo!r}
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
LR = {r.lr!r}
MIN_LR = {r.min_lr!r}
WARMUP_STEPS = {r.warmup_steps}
STEPS = {steps or 0}
WEIGHT_DECAY = {r.weight_decay!r}
CLIP_GRAD = {r.clip_grad!r}
assert GLOBAL_BATCH == MICRO_BATCH * DP_REPLICATE * DP_SHARD * GRAD_ACCUM
mesh = init_device_mesh("cuda", (DP_REPLICATE, DP_SHARD, CP, TP), mesh_dim_names=("dp_replicate", "dp_shard", "cp", "tp"))
model = AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32)
if ACTIVATION_CHECKPOINT:
    model.gradient_checkpointing_enable()
mp = MixedPrecisionPolicy(param_dtype=torch.{dtype}, reduce_dtype=torch.float32)
kw = dict(mesh=mesh["dp_replicate", "dp_shard"], mp_policy=mp, reshard_after_forward=RESHARD_AFTER_FORWARD)
if CPU_OFFLOAD:
    kw["offload_policy"] = CPUOffloadPolicy()
for block in model.model.layers:  # one FSDP unit per transformer block
    fully_shard(block, **kw)
fully_shard(model, **kw)
optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=({r.beta1!r}, {r.beta2!r}), eps={r.eps!r}, weight_decay=WEIGHT_DECAY)
"""
    if setup.optimizer != Optimizer.ADAMW:
        raise _refuse("fsdp", f"optimizer {setup.optimizer.value} in this launch snippet (it builds torch AdamW)",
                      "plan with --optimizer adamw, or export deepspeed / accelerate")
    if setup.precision == Precision.FP8:
        raise _refuse("fsdp", "fp8 GEMMs in this launch snippet", "export torchtitan (float8 converter) or megatron")
    if setup.tp > 1 or setup.cp > 1:
        notes.append(f"tp={setup.tp} cp={setup.cp}: apply parallelize_module / context_parallel on the mesh's "
                     "'tp' / 'cp' dims before fully_shard (or export torchtitan, which does it for you)")
    return Export("fsdp", text, "launch_fsdp2.sh", tuple(notes))


def megatron(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    notes: list[str] = []
    if setup.sharding in (Sharding.FSDP_GRAD_OP, Sharding.FSDP_HYBRID):
        raise _refuse("megatron", f"{setup.sharding.value} (torch FSDP2 in Megatron-LM is full-shard only)",
                      "plan with --zero fsdp-full, --zero 2 (Megatron-FSDP optim_grads) or --zero megatron-distopt")
    if setup.offload_params != Offload.NONE or setup.offload_optimizer == Offload.NVME:
        raise _refuse("megatron", "parameter or NVMe offload", "plan with --offload none or cpu (optimizer only)")
    if setup.optimizer not in (Optimizer.ADAMW, Optimizer.SGD, Optimizer.LION):
        raise _refuse("megatron", f"optimizer {setup.optimizer.value} (choices: adam, sgd, lion)",
                      "plan with --optimizer adamw, sgd or lion")
    if model.position not in (PositionKind.ROTARY, PositionKind.LEARNED, PositionKind.NONE):
        raise _refuse("megatron", f"{model.position.value} position embeddings", "export deepspeed or fsdp")
    if model.is_mla or model.parallel_block or model.sliding_window:
        what = "multi-head latent attention" if model.is_mla else (
            "parallel attention/MLP blocks" if model.parallel_block else "sliding-window attention in pretrain_gpt")
        raise _refuse("megatron", f"{model.id}'s {what} with these arguments", "export torchtitan, deepspeed or fsdp")
    args: list[str] = [
        "--tensor-model-parallel-size", str(setup.tp), "--pipeline-model-parallel-size", str(setup.pp),
        "--context-parallel-size", str(setup.cp),
    ]
    if setup.tp > 1 and setup.sequence_parallel:
        args.append("--sequence-parallel")
    if setup.virtual_pp > 1:
        args += ["--num-layers-per-virtual-pipeline-stage", str(model.num_layers // (setup.pp * setup.virtual_pp))]
    if setup.recompute == Recompute.SELECTIVE:
        args += ["--recompute-granularity", "selective"]
    elif setup.recompute == Recompute.FULL:
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    args += ["--micro-batch-size", str(setup.micro_batch), "--global-batch-size", str(setup.global_batch),
             "--seq-length", str(setup.seq_len), "--max-position-embeddings", str(max(setup.seq_len, model.max_seq_len))]
    # sharding: Megatron-LM arguments.py --use-distributed-optimizer (ZeRO-1), --use-megatron-fsdp with
    # --data-parallel-sharding-strategy optim_grads (ZeRO-2) / optim_grads_params (ZeRO-3), --use-torch-fsdp2
    if setup.sharding in (Sharding.ZERO1, Sharding.MEGATRON_DISTOPT):
        args += ["--use-distributed-optimizer", "--overlap-grad-reduce", "--overlap-param-gather"]
    elif setup.sharding in (Sharding.ZERO2, Sharding.ZERO3):
        strategy = "optim_grads" if setup.sharding == Sharding.ZERO2 else "optim_grads_params"
        args += ["--use-megatron-fsdp", "--data-parallel-sharding-strategy", strategy, "--ckpt-format", "fsdp_dtensor",
                 "--overlap-grad-reduce", "--overlap-param-gather"]
        notes.append(f"{setup.sharding.value} -> Megatron-FSDP --data-parallel-sharding-strategy {strategy}")
    elif setup.sharding == Sharding.FSDP_FULL:
        # arguments.py validate_args: FSDP2 needs pp = 1, ep = 1, torch_dist checkpoints, untied embeddings, no fp16
        if setup.pp > 1 or setup.ep > 1:
            raise _refuse("megatron", "--use-torch-fsdp2 with pipeline or expert parallelism",
                          "plan with --zero 3 (Megatron-FSDP) or megatron-distopt")
        if model.tie_embeddings:
            raise _refuse("megatron", "--use-torch-fsdp2 with tied embeddings", "plan with --zero 3 (Megatron-FSDP)")
        if setup.precision == Precision.FP16_MIXED:
            raise _refuse("megatron", "--use-torch-fsdp2 with fp16", "plan with --precision bf16-mixed")
        args += ["--use-torch-fsdp2", "--ckpt-format", "torch_dist", "--no-gradient-accumulation-fusion"]
    if setup.offload_optimizer == Offload.CPU:
        args.append("--optimizer-cpu-offload")
    if setup.precision in (Precision.BF16_MIXED, Precision.BF16):
        args.append("--bf16")
        if setup.precision == Precision.BF16:
            args += ["--main-grads-dtype", "bf16", "--exp-avg-dtype", "bf16", "--exp-avg-sq-dtype", "bf16"]
    elif setup.precision == Precision.FP16_MIXED:
        args.append("--fp16")
    elif setup.precision == Precision.FP8:
        # Transformer Engine delayed scaling, HYBRID = E4M3 forward / E5M2 backward (TE DelayedScaling defaults)
        args += ["--bf16", "--fp8-format", "hybrid", "--fp8-recipe", "delayed", "--fp8-amax-history-len", "1024",
                 "--fp8-amax-compute-algo", "max"]
    # the model (every number from the preset / its HF config.json)
    args += ["--num-layers", str(model.num_layers), "--hidden-size", str(model.hidden_size),
             "--ffn-hidden-size", str(model.ffn_size), "--num-attention-heads", str(model.num_heads),
             "--kv-channels", str(model.head_dim)]
    if model.num_kv_heads and model.num_kv_heads != model.num_heads:
        args += ["--group-query-attention", "--num-query-groups", str(model.num_kv_heads)]
    if model.mlp_kind == MlpKind.SWIGLU:
        args.append("--swiglu")
    elif model.mlp_kind == MlpKind.RELU:
        raise _refuse("megatron", "a ReLU MLP in pretrain_gpt", "export deepspeed or fsdp")
    elif model.mlp_kind == MlpKind.GEGLU:
        raise _refuse("megatron", "a GeGLU (tanh-GELU gated) MLP in pretrain_gpt", "export deepspeed or fsdp")
    args += ["--normalization", "RMSNorm" if model.norm_kind == NormKind.RMSNORM else "LayerNorm"]
    if model.norm_eps is not None:
        args += ["--norm-epsilon", repr(model.norm_eps)]
    else:
        notes.append(f"{model.id} gives no norm epsilon: Megatron's default 1e-5 applies")
    if model.qk_norm != QkNorm.NONE:
        args.append("--qk-layernorm")
    if model.position == PositionKind.ROTARY:
        args += ["--position-embedding-type", "rope"]
        if model.rope_theta is not None:
            args += ["--rotary-base", str(int(model.rope_theta)) if float(model.rope_theta).is_integer()
                     else repr(model.rope_theta)]
        else:
            notes.append(f"{model.id} gives no RoPE base: Megatron's default 10000 applies")
        scaling = _rope_scaling(model)
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind == "llama3":
            if (scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0),
                    scaling.get("original_max_position_embeddings", 8192)) != (1.0, 4.0, 8192):
                raise _refuse("megatron", f"{model.id}'s RoPE scaling {scaling}", "export torchtitan or deepspeed")
            args += ["--use-rope-scaling", "--rope-scaling-factor", repr(float(scaling.get("factor", 8.0)))]
        elif kind:
            raise _refuse("megatron", f"{kind} RoPE scaling", "export deepspeed or fsdp (transformers applies it)")
    elif model.position == PositionKind.LEARNED:
        args += ["--position-embedding-type", "learned_absolute"]
    else:
        args += ["--position-embedding-type", "none"]
    if not model.tie_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    if not (model.qkv_bias or model.mlp_bias or model.out_bias):
        args.append("--disable-bias-linear")
    elif model.qkv_bias and not model.out_bias and not model.mlp_bias:
        args += ["--disable-bias-linear", "--add-qkv-bias"]
    if model.is_moe:
        args += ["--num-experts", str(model.num_experts), "--expert-model-parallel-size", str(setup.ep),
                 "--moe-router-topk", str(model.experts_per_token), "--moe-ffn-hidden-size", str(model.expert_ffn_size),
                 "--moe-router-load-balancing-type", "aux_loss", "--moe-aux-loss-coeff", "0.02",
                 "--moe-grouped-gemm", "--moe-token-dispatcher-type", "alltoall"]
        if model.num_shared_experts:
            args += ["--moe-shared-expert-intermediate-size",
                     str((model.shared_expert_ffn_size or model.expert_ffn_size) * model.num_shared_experts)]
        if model.first_k_dense_layers or model.moe_layer_freq > 1:
            pattern = [1 if model.layer_is_moe(i) else 0 for i in range(model.num_layers)]
            args += ["--moe-layer-freq", "([" + ",".join(map(str, pattern)) + "])"]
        notes.append("MoE router: top-k softmax with an auxiliary load-balancing loss of 0.02 "
                     "(Mixtral config.json router_aux_loss_coef); change --moe-aux-loss-coeff for other models")
    elif setup.ep > 1:
        raise _refuse("megatron", f"ep={setup.ep} for a dense model", "plan with --ep 1")
    repo = _hf_repo(model)
    if repo:
        args += ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", repo]
    else:
        args += ["--tokenizer-type", "NullTokenizer", "--vocab-size", str(model.vocab_size)]
        notes.append(f"{model.id}: no Hugging Face tokenizer known; NullTokenizer with vocab {model.vocab_size}")
    args += ["--make-vocab-size-divisible-by", "128", "--attention-dropout", "0.0", "--hidden-dropout", "0.0"]
    r = recipe(model, steps)
    args += ["--optimizer", {Optimizer.ADAMW: "adam", Optimizer.SGD: "sgd", Optimizer.LION: "lion"}[setup.optimizer],
             "--lr", f"{r.lr:g}", "--min-lr", f"{r.min_lr:g}", "--lr-decay-style", "cosine",
             "--lr-warmup-iters", str(r.warmup_steps), "--weight-decay", repr(r.weight_decay),
             "--clip-grad", repr(r.clip_grad)]
    if setup.optimizer == Optimizer.ADAMW:
        args += ["--adam-beta1", repr(r.beta1), "--adam-beta2", repr(r.beta2), "--adam-eps", repr(r.eps)]
    if steps:
        args += ["--train-iters", str(steps), "--lr-decay-iters", str(steps)]
    else:
        notes.append("no step count in the plan (give --tokens): pretrain_gpt.py also needs --train-iters N")
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
    return Export("megatron", "\n".join(lines) + "\n", "megatron_args.sh", tuple(notes))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


# torchtitan v0.2.2 model flavors (torchtitan/models/<name>/__init__.py `*_args`), the shape that identifies each:
# (hidden, layers, heads, kv_heads, ffn, vocab, rope_theta); ffn = multiple_of-rounded int(8*dim/3 * multiplier).
TORCHTITAN_FLAVORS = {
    ("llama3", "8B"): (4096, 32, 32, 8, 14336, 128256, 500000.0),
    ("llama3", "70B"): (8192, 80, 64, 8, 28672, 128256, 500000.0),
    ("llama3", "405B"): (16384, 126, 128, 8, 53248, 128256, 500000.0),
}


def torchtitan_flavor(model: ModelArch) -> tuple[str, str]:
    """(model.name, model.flavor) of torchtitan that builds exactly this architecture, or ExportRefused."""
    shape = (model.hidden_size, model.num_layers, model.num_heads, model.num_kv_heads, model.ffn_size,
             model.vocab_size, model.rope_theta)
    for key, flavor_shape in TORCHTITAN_FLAVORS.items():
        if shape == flavor_shape and not model.is_moe and not model.tie_embeddings:
            return key
    known = ", ".join(f"{n} {f}" for n, f in TORCHTITAN_FLAVORS)
    raise _refuse("torchtitan", f"{model.id}: no torchtitan flavor has this architecture (flavors: {known})",
                  "export megatron, deepspeed or fsdp")


def torchtitan(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    notes = []
    name, flavor = torchtitan_flavor(model)
    if setup.offload_params != Offload.NONE or setup.offload_optimizer == Offload.NVME:
        raise _refuse("torchtitan", "parameter or NVMe offload (training.enable_cpu_offload moves params, grads "
                      "and optimizer state to CPU together)", "plan with --offload none or cpu")
    if setup.optimizer != Optimizer.ADAMW:
        raise _refuse("torchtitan", f"optimizer {setup.optimizer.value} (optimizer.name: AdamW | Adam)",
                      "plan with --optimizer adamw")
    if setup.precision == Precision.FP16_MIXED:
        raise _refuse("torchtitan", "fp16 mixed precision (mixed_precision_param: bfloat16 | float32)",
                      "plan with --precision bf16-mixed")
    if setup.sharding == Sharding.MEGATRON_DISTOPT:
        raise _refuse("torchtitan", "the Megatron distributed optimizer", "plan with --zero 1/2/3 or fsdp-*")
    if setup.ep > 1:
        raise _refuse("torchtitan", f"ep={setup.ep} for a dense model", "plan with --ep 1")
    replicate, shard = 1, setup.dp
    if setup.sharding == Sharding.NONE:
        replicate, shard = setup.dp, 1
    elif setup.sharding == Sharding.FSDP_HYBRID:
        nodes, per_node = _nodes(setup)
        shard = max(1, min(setup.dp, per_node // max(1, setup.tp * setup.cp)))
        replicate = setup.dp // shard
    reshard = "never" if setup.sharding in (Sharding.ZERO1, Sharding.ZERO2, Sharding.FSDP_GRAD_OP) else "default"
    r = recipe(model, steps)
    mp = "float32" if setup.precision in (Precision.FP32, Precision.TF32) else "bfloat16"
    sections: dict = {
        "job": {"description": f"sizeup plan: {model.id} on {setup.gpus} GPUs"},
        "model": {"name": name, "flavor": flavor},
        "optimizer": {"name": "AdamW", "lr": r.lr, "beta1": r.beta1, "beta2": r.beta2, "eps": r.eps,
                      "weight_decay": r.weight_decay},
        "lr_scheduler": {"warmup_steps": r.warmup_steps, "decay_type": "cosine", "min_lr_factor": round(r.min_lr / r.lr, 6)},
        "training": {"local_batch_size": setup.micro_batch, "global_batch_size": setup.global_batch,
                     "seq_len": setup.seq_len, "max_norm": r.clip_grad, "mixed_precision_param": mp,
                     "mixed_precision_reduce": "float32",
                     "enable_cpu_offload": setup.offload_optimizer == Offload.CPU},
        "parallelism": {"data_parallel_replicate_degree": replicate, "data_parallel_shard_degree": shard,
                        "fsdp_reshard_after_forward": reshard, "tensor_parallel_degree": setup.tp,
                        "pipeline_parallel_degree": setup.pp, "context_parallel_degree": setup.cp,
                        "expert_parallel_degree": setup.ep},
        "activation_checkpoint": {"mode": setup.recompute.value},
    }
    if setup.precision == Precision.BF16:
        sections["training"]["dtype"] = "bfloat16"
    if steps:
        sections["training"]["steps"] = steps
    if setup.pp > 1:
        sections["parallelism"]["pipeline_parallel_schedule"] = (
            "Interleaved1F1B" if setup.virtual_pp > 1 else "GPipe" if setup.pp_schedule.value == "gpipe" else "1F1B")
        sections["parallelism"]["pipeline_parallel_microbatch_size"] = setup.micro_batch
    if setup.recompute == Recompute.SELECTIVE:
        sections["activation_checkpoint"]["selective_ac_option"] = "op"
    if setup.precision == Precision.FP8:
        sections["model"]["converters"] = ["quantize.linear.float8"]
        sections["quantize.linear.float8"] = {"recipe_name": "tensorwise"}
    if setup.sharding in (Sharding.ZERO1, Sharding.ZERO2):
        notes.append(f"{setup.sharding.value} -> FSDP2 with fsdp_reshard_after_forward = never (ZeRO-2 semantics)")
    if model.rope_scaling == () and name == "llama3":
        notes.append(f"torchtitan's llama3 {flavor} applies Llama-3.1 RoPE scaling (factor 8, original context 8192) "
                     f"that {model.id} lacks: rotary dims with wavelength > 2048 tokens turn more slowly; same shapes "
                     "and weights, fine from scratch, not bit-identical to the released checkpoint")
    notes.append("set [model] hf_assets_path to the downloaded tokenizer folder (scripts/download_hf_assets.py)")
    lines = [f"# torchtitan (v0.2.x TOML job config) for {model.id}: {setup.gpus} GPUs (sizeup plan)"]
    for section, fields_ in sections.items():
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in fields_.items()]
    return Export("torchtitan", "\n".join(lines) + "\n", "torchtitan.toml", tuple(notes))


def accelerate(model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    nodes, per_node = _nodes(setup)
    notes = []
    if setup.cp > 1:
        raise _refuse("accelerate", f"context parallelism (cp={setup.cp}) in its config file",
                      "export megatron or torchtitan")
    if setup.sharding == Sharding.FSDP_HYBRID:
        raise _refuse("accelerate", "hybrid sharding with its FSDP2 plugin", "export torchtitan or plan fsdp-full")
    if setup.precision == Precision.BF16:
        raise _refuse("accelerate", "pure bf16 (mixed_precision keeps fp32 weights)", "plan with --precision bf16-mixed")
    mp = {Precision.BF16_MIXED: "bf16", Precision.FP16_MIXED: "fp16", Precision.FP8: "fp8"}.get(setup.precision, "no")
    cfg: dict = {"compute_environment": "LOCAL_MACHINE", "mixed_precision": mp, "num_machines": nodes,
                 "num_processes": setup.gpus, "machine_rank": 0, "main_training_function": "main",
                 "use_cpu": False, "same_network": True, "rdzv_backend": "static" if nodes == 1 else "c10d"}
    if setup.precision == Precision.FP8:
        cfg["fp8_config"] = {"backend": "TE", "fp8_format": "HYBRID", "amax_history_len": 1024,
                             "amax_compute_algo": "max", "use_autocast_during_eval": False}
    offload = setup.offload_optimizer.value if setup.offload_optimizer != Offload.NONE else "none"
    if setup.tp > 1 or setup.pp > 1 or setup.sharding == Sharding.MEGATRON_DISTOPT:
        if setup.sharding not in (Sharding.NONE, Sharding.ZERO1, Sharding.MEGATRON_DISTOPT):
            raise _refuse("accelerate", f"{setup.sharding.value} together with tp/pp (its Megatron-LM plugin only "
                          "has the distributed optimizer)", "plan with --zero megatron-distopt or export megatron")
        cfg["distributed_type"] = "MEGATRON_LM"
        cfg["megatron_lm_config"] = {
            "megatron_lm_tp_degree": setup.tp, "megatron_lm_pp_degree": setup.pp,
            "megatron_lm_num_micro_batches": setup.grad_accum,
            "megatron_lm_sequence_parallelism": setup.sequence_parallel and setup.tp > 1,
            "megatron_lm_recompute_activations": setup.recompute != Recompute.NONE,
            "megatron_lm_use_distributed_optimizer": setup.sharding != Sharding.NONE,
            "megatron_lm_gradient_clipping": 1.0}
    elif setup.sharding in (Sharding.FSDP_FULL, Sharding.FSDP_GRAD_OP):
        cfg["distributed_type"] = "FSDP"
        cfg["fsdp_config"] = {
            "fsdp_version": 2, "fsdp_reshard_after_forward": setup.sharding == Sharding.FSDP_FULL,
            "fsdp_offload_params": setup.offload_optimizer != Offload.NONE or setup.offload_params != Offload.NONE,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_activation_checkpointing": setup.recompute != Recompute.NONE,
            "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_cpu_ram_efficient_loading": True}
    elif setup.sharding != Sharding.NONE:
        stage = _ds_stage(setup.sharding)
        cfg["distributed_type"] = "DEEPSPEED"
        cfg["deepspeed_config"] = {"zero_stage": stage, "offload_optimizer_device": offload,
                                   "offload_param_device": setup.offload_params.value if stage == 3 else "none",
                                   "gradient_accumulation_steps": setup.grad_accum,
                                   "gradient_clipping": 1.0, "zero3_init_flag": stage == 3}
    else:
        cfg["distributed_type"] = "MULTI_GPU" if setup.gpus > 1 else "NO"
    r = recipe(model, steps)
    notes.append(f"per-process micro-batch {setup.micro_batch}, gradient accumulation {setup.grad_accum} "
                 f"(Accelerator(gradient_accumulation_steps={setup.grad_accum})), global batch {setup.global_batch}, "
                 f"seq_len {setup.seq_len}; optimizer {setup.optimizer.value} lr {r.lr:g} -> {r.min_lr:g} cosine, "
                 f"warmup {r.warmup_steps} (Llama 2 recipe)")
    text = f"# accelerate config for {model.id}: {setup.gpus} GPUs\n" + yaml.safe_dump(cfg, sort_keys=False)
    return Export("accelerate", text, "accelerate_config.yaml", tuple(notes))


def _peft(fmt: str, setup: TrainSetup) -> str | None:
    """LoRA / QLoRA live in the model code (peft.get_peft_model); the launchers that load a transformers model say
    so, the trainers that build their own model (Megatron-LM pretrain_gpt, torchtitan) refuse."""
    if setup.peft == Peft.NONE:
        return None
    if fmt in ("megatron", "torchtitan"):
        raise _refuse(fmt, f"{setup.peft.value} fine-tuning (its trainer builds and trains the full model)",
                      "export deepspeed, fsdp or accelerate and wrap the model with peft")
    quant = ", base loaded in 4-bit NF4 (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4'))" \
        if setup.peft == Peft.QLORA else ""
    return (f"{setup.peft.value}: wrap the model with peft.get_peft_model(model, LoraConfig(r={setup.lora_rank}, "
            f"target_modules={list(setup.lora_targets)})){quant}")


EXPORTERS = {"deepspeed": deepspeed, "fsdp": fsdp, "megatron": megatron, "torchtitan": torchtitan,
             "accelerate": accelerate}


def export_plan(fmt: str, model: ModelArch, setup: TrainSetup, steps: int | None = None) -> Export:
    """The plan in one target format; validated against the documented keys before it is returned."""
    key = str(fmt).strip().lower()
    if key not in EXPORTERS:
        from sizeup.errors import choice_error

        raise choice_error("export format", fmt, list(FORMATS))
    if model.arch_kind != ArchKind.DECODER and key not in ("deepspeed", "accelerate"):
        # the FSDP / Megatron / torchtitan exports build decoder-only stacks (model.model.layers, GPTModel, Llama
        # flavors); the DeepSpeed and accelerate configs do not name the model class
        raise _refuse(key, f"an {model.arch_kind.value} model ({model.id})",
                      "export deepspeed or accelerate, which load any transformers model")
    peft_note = _peft(key, setup)
    out = EXPORTERS[key](model, setup, steps)
    if peft_note:
        out = Export(out.format, out.text, out.filename, out.notes + (peft_note,))
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
        def walk(d: dict, prefix: str = "") -> None:
            for key, value in d.items():
                path = f"{prefix}.{key}" if prefix else key
                if path in TORCHTITAN_FIELDS:
                    problems.extend(f"{path}.{k}" for k in value if k not in TORCHTITAN_FIELDS[path])
                elif isinstance(value, dict) and any(s.startswith(path + ".") for s in TORCHTITAN_FIELDS):
                    walk(value, path)
                else:
                    problems.append(path)
        walk(data)
    elif fmt == "megatron":
        problems += [k for k in data if k not in MEGATRON_FLAGS]
    elif fmt == "fsdp":
        problems += [k for k in data["torchrun"] if k not in TORCHRUN_FLAGS]
    return problems
