"""The typed job tree: one frozen dataclass per concern, each validated when it is constructed (nothing is
floored or guessed: gpus must be a multiple of tp*pp*cp, the global batch a multiple of micro-batch x dp).

    Job
      model        ModelArch (catalog preset, HF config.json or a point's fields)
      workload     Workload | None (tokens, or samples x tokens per sample x epochs)
      cluster      GPU kind (or a bare memory size), count, GPUs per node
      parallelism  tp, pp, virtual stages, schedule, cp, ep, dp (derived exactly), sequence parallel, sharding
      batch        sequence length (encoder input length of an encoder-decoder, with its decoder/target length),
                   micro-batch, gradient accumulation, global batch
      precision    precision and fp8 recipe
      optimizer    kind, fused/foreach, paged, step in backward
      recompute    policy and fraction of layers
      offload      optimizer / parameters / activations
      peft         method, rank, targets, implementation
      execution    the framework profile and every field of it the user overrode (kernels, attention, loss,
                   compile, overlap), dropout, fragmentation
      pricing      platform, pricing kind, price and billing overrides
      defaults     what was not given and how it was chosen (shown in every command's output)

`Job.setup` is the core's TrainSetup; `Job.to_argv()` the equivalent `sizeup train` command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from sizeup.core.types import (
    Attention, ContextParallel, Fp8Recipe, GpuSpec, LoraImpl, ModelArch, Offload, Optimizer, Peft, PipelineSchedule,
    Precision, Recompute, Sharding, TrainSetup,
)
from sizeup.core.workload import Workload
from sizeup.errors import SizeupError

# the largest count any job field may hold: bounds the work a single estimate can cause
MAX_GPUS = 1_000_000
MAX_DEGREE = 65_536
MAX_SEQ = 16_777_216
MAX_MICRO_BATCH = 1_048_576


def _whole(name: str, value: Any, lo: int = 1, hi: int = 2**31) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SizeupError(f"{name} must be a whole number, got {value!r}")
    if value < lo:
        raise SizeupError(f"{name} must be >= {lo}, got {value}")
    if value > hi:
        raise SizeupError(f"{name} must be <= {hi:,}, got {value:,}")
    return value


def _fraction(name: str, value: float | None, lo: float = 0.0, hi: float = 1.0, hi_open: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SizeupError(f"{name} must be a number in [{lo}, {hi}{')' if hi_open else ']'}, got {value!r}")
    if value < lo or value > hi or (hi_open and value == hi):
        raise SizeupError(f"{name} must be in [{lo}, {hi}{')' if hi_open else ']'}, got {value}")


@dataclass(frozen=True)
class Cluster:
    gpu: GpuSpec | None
    gpus: int = 1
    gpus_per_node: int = 8
    memory_bytes: float | None = None
    """GPU memory: the catalog GPU's, or a bare size given instead of a GPU kind (memory / trace only)."""

    def __post_init__(self):
        _whole("gpus", self.gpus, 1, MAX_GPUS)
        _whole("gpus-per-node", self.gpus_per_node, 1, 100_000)  # TPU pods: v5p slices of 8,960 chips
        if self.memory_bytes is not None and not (math.isfinite(self.memory_bytes) and self.memory_bytes > 0):
            raise SizeupError(f"GPU memory must be > 0, got {self.memory_bytes}")


@dataclass(frozen=True)
class Parallelism:
    gpus: int
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    virtual_pp: int = 1
    schedule: PipelineSchedule = PipelineSchedule.ONE_F_ONE_B
    sequence_parallel: bool = False
    sharding: Sharding = Sharding.NONE
    cp_impl: ContextParallel = ContextParallel.RING
    zero_quantized_weights: bool = False
    zero_quantized_gradients: bool = False

    def __post_init__(self):
        for name in ("tp", "pp", "cp", "ep", "virtual_pp"):
            _whole(name.replace("_", "-"), getattr(self, name), 1, MAX_DEGREE)
        group = self.tp * self.pp * self.cp
        if self.gpus % group:
            raise SizeupError(f"--gpus {self.gpus} must be a multiple of tp x pp x cp = {self.tp}x{self.pp}x{self.cp} "
                              f"= {group} (data parallelism takes the rest)")
        if self.virtual_pp > 1 and self.schedule != PipelineSchedule.INTERLEAVED:
            raise SizeupError("virtual pipeline stages (--virtual-pp > 1) need --pp-schedule interleaved")
        if self.virtual_pp > 1 and self.pp == 1:
            raise SizeupError("--virtual-pp needs pipeline parallelism (--pp > 1)")
        if self.sequence_parallel and self.tp == 1:
            raise SizeupError("--sequence-parallel splits activations over tensor-parallel ranks: it needs --tp > 1")

    @property
    def dp(self) -> int:
        return self.gpus // (self.tp * self.pp * self.cp)


@dataclass(frozen=True)
class Batch:
    seq_len: int
    micro_batch: int
    grad_accum: int
    dp: int
    packed_doc_tokens: int = 0
    """Mean tokens per packed document with document-masked attention (0 = one document per sequence)."""
    decoder_seq_len: int = 0
    """target tokens per sequence of an encoder-decoder model (0: the same as seq_len, or not one)"""

    def __post_init__(self):
        _whole("seq", self.seq_len, 1, MAX_SEQ)
        if self.packed_doc_tokens:
            _whole("packed-doc-tokens", self.packed_doc_tokens, 1, MAX_SEQ)
        if self.decoder_seq_len:
            _whole("decoder-seq", self.decoder_seq_len, 1, MAX_SEQ)
        _whole("micro-batch", self.micro_batch, 1, MAX_MICRO_BATCH)
        _whole("grad-accum", self.grad_accum, 1, 2**24)

    @property
    def global_batch(self) -> int:
        """B = b * dp * g sequences per optimizer step."""
        return self.micro_batch * self.dp * self.grad_accum

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len


@dataclass(frozen=True)
class PrecisionSpec:
    precision: Precision = Precision.BF16_MIXED
    fp8_recipe: Fp8Recipe | None = None
    """delayed | tensorwise | rowwise | blockwise (fp8 only; None = the framework's)"""

    def __post_init__(self):
        if self.fp8_recipe is not None and self.precision != Precision.FP8:
            raise SizeupError(f"--fp8-recipe {self.fp8_recipe.value} needs --precision fp8 (got {self.precision.value})")


@dataclass(frozen=True)
class OptimizerSpec:
    kind: Optimizer = Optimizer.ADAMW
    fused: bool = True
    paged: bool = False
    in_backward: bool = False


@dataclass(frozen=True)
class RecomputeSpec:
    policy: Recompute = Recompute.NONE
    layers_fraction: float = 1.0
    """fraction of transformer blocks checkpointed (1 = all; 'every 2nd' = 0.5; '21 of 80' = 0.2625)"""
    meaning: str = ""
    """what the policy means for this framework (e.g. 'selective' = Megatron's core-attention recompute)"""

    def __post_init__(self):
        _fraction("recompute-layers", self.layers_fraction)
        if self.layers_fraction <= 0:
            raise SizeupError("--recompute-layers must be > 0 (use --recompute none to checkpoint nothing)")
        if self.layers_fraction < 1.0 and self.policy not in (Recompute.FULL, Recompute.LAYER_FRACTION):
            raise SizeupError("--recompute-layers checkpoints whole blocks: use it with --recompute full")


@dataclass(frozen=True)
class OffloadSpec:
    optimizer: Offload = Offload.NONE
    params: Offload = Offload.NONE
    activations: bool = False
    auto_cap: float = 0.0
    """adaptive placement: offload only past this fraction of GPU memory (Colossal-AI Gemini auto)"""


@dataclass(frozen=True)
class PeftSpec:
    method: Peft = Peft.NONE
    rank: int = 16
    targets: tuple[str, ...] = ("q", "k", "v", "o")
    impl: LoraImpl = LoraImpl.PEFT
    kbit_fp32_non_quantized: bool = False
    """QLoRA through PEFT prepare_model_for_kbit_training (the framework profile's qlora_kbit_prep)"""
    trainable_params: float = 0.0
    """trained parameter count of an adapter method (peft adapter)"""
    fp32_adapters: bool = False
    """LoRA adapters in fp32, each adapted Linear casting its input (the profile's lora_fp32_adapters)"""
    nf4_base: bool = False
    """adapter method on a base whose Linear weights are NF4 (bitsandbytes Linear4bit)"""
    adapter_linear_scales: bool = False
    """adapter method scaling every Linear's output with a trained vector (LLaMA-Adapter v2)"""
    nf4_saves_inputs: bool = False
    """4-bit base Linears keep their inputs (bitsandbytes MatMul4Bit; the profile's nf4_saves_linear_inputs)"""

    def __post_init__(self):
        _whole("lora-rank", self.rank, 1, 65_536)


@dataclass(frozen=True)
class Execution:
    """The framework that runs the job: its profile's fields, each possibly overridden by a flag."""

    framework: str = "generic"
    framework_name: str = "generic (fused kernels, flash attention)"
    timing_kernel: str = "fused"
    memory_kernel: str = "fused"
    attention: Attention = Attention.FLASH
    loss: str | None = None
    compile: bool = False
    fp8_library: str = "te"
    selective_recompute: str = "attention-core"
    dropout: float = 0.0
    fragmentation: float | None = None
    dp_overlap: float | None = None
    tp_overlap: float | None = None
    grads_set_to_none: bool = True
    grad_reduce_dtype: str = ""
    fsdp_no_sync: bool = False
    """gradient accumulation under FSDP no_sync (the profile's fsdp_no_sync_accumulation)"""
    fsdp_mixed_units: bool = False
    """FSDP units mixing adapters and frozen weights (the profile's fsdp_mixed_frozen_units)"""
    overridden: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        _fraction("dropout", self.dropout, hi_open=True)
        _fraction("fragmentation", self.fragmentation)
        _fraction("dp-overlap", self.dp_overlap)
        _fraction("tp-overlap", self.tp_overlap)


@dataclass(frozen=True)
class PricingSpec:
    platform: str | None = None
    pricing: str = "on-demand"
    price_per_gpu_hour: float | None = None
    billing_increment_s: float | None = None
    min_billing_s: float | None = None
    preemption_rate: float | None = None
    restart_s: float | None = None
    checkpoints_kept: int | None = None
    retain_s: float = 0.0
    catalogs: tuple[str, ...] = ()
    max_price_age_days: int = 180

    def __post_init__(self):
        for name in ("price_per_gpu_hour", "billing_increment_s", "min_billing_s", "preemption_rate", "restart_s",
                     "retain_s"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not math.isfinite(v) or v < 0):
                raise SizeupError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v!r}")
        if self.price_per_gpu_hour is not None and self.price_per_gpu_hour > 1e6:
            raise SizeupError(f"--price-per-gpu-hour must be <= 1,000,000 USD, got {self.price_per_gpu_hour}")
        if self.checkpoints_kept is not None:
            _whole("checkpoints-kept", self.checkpoints_kept, 0, 100_000)
        _whole("max-price-age-days", self.max_price_age_days, 0, 100_000)


@dataclass(frozen=True)
class Job:
    model: ModelArch
    cluster: Cluster
    parallelism: Parallelism
    batch: Batch
    precision: PrecisionSpec = PrecisionSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    recompute: RecomputeSpec = RecomputeSpec()
    offload: OffloadSpec = OffloadSpec()
    peft: PeftSpec = PeftSpec()
    execution: Execution = Execution()
    pricing: PricingSpec = PricingSpec()
    workload: Workload | None = None
    defaults: tuple[tuple[str, str], ...] = ()
    """(field, how it was chosen) for every field the user did not give"""
    given: tuple[str, ...] = ()
    """the job flags the user (or the file) gave, in the table's order"""
    label: str = ""
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.batch.dp != self.parallelism.dp:
            raise SizeupError(f"internal: batch dp {self.batch.dp} != parallel dp {self.parallelism.dp}")
        from sizeup.core.memory import check_setup

        problems = check_setup(self.model, self.setup)
        if problems:
            raise SizeupError("; ".join(problems))

    # ------------------------------------------------------------------ derived
    @property
    def gpu(self) -> GpuSpec | None:
        return self.cluster.gpu

    @property
    def gpus(self) -> int:
        return self.cluster.gpus

    @property
    def setup(self) -> TrainSetup:
        p, b = self.parallelism, self.batch
        return TrainSetup(
            gpus=self.cluster.gpus, tp=p.tp, pp=p.pp, cp=p.cp, ep=p.ep, micro_batch=b.micro_batch,
            grad_accum=b.grad_accum, seq_len=b.seq_len, decoder_seq_len=b.decoder_seq_len,
            precision=self.precision.precision,
            optimizer=self.optimizer.kind, fused_optimizer=self.optimizer.fused, sharding=p.sharding,
            sequence_parallel=p.sequence_parallel, pp_schedule=p.schedule, virtual_pp=p.virtual_pp, cp_impl=p.cp_impl,
            zero_quantized_weights=p.zero_quantized_weights, zero_quantized_gradients=p.zero_quantized_gradients,
            recompute=self.recompute.policy, attention=self.execution.attention,
            offload_optimizer=self.offload.optimizer, offload_params=self.offload.params,
            offload_activations=self.offload.activations, offload_auto_cap=self.offload.auto_cap,
            peft=self.peft.method, lora_rank=self.peft.rank,
            lora_targets=self.peft.targets, dropout=self.execution.dropout, gpus_per_node=self.cluster.gpus_per_node,
            optimizer_in_backward=self.optimizer.in_backward, paged_optimizer=self.optimizer.paged,
            grads_set_to_none=self.execution.grads_set_to_none, lora_impl=self.peft.impl,
            trainable_params=self.peft.trainable_params if self.peft.method == Peft.ADAPTER else 0.0,
            lora_fp32_adapters=self.peft.fp32_adapters and self.peft.method in (Peft.LORA, Peft.QLORA),
            nf4_base=self.peft.nf4_base and self.peft.method == Peft.ADAPTER,
            nf4_saves_inputs=self.peft.nf4_saves_inputs,
            adapter_linear_scales=self.peft.adapter_linear_scales and self.peft.method == Peft.ADAPTER,
            kbit_fp32_non_quantized=self.peft.kbit_fp32_non_quantized and self.peft.method == Peft.QLORA,
            recompute_fraction=self.recompute.layers_fraction if self.recompute.policy == Recompute.LAYER_FRACTION
            else 1.0,
            fp8_recipe=self.precision.fp8_recipe or Fp8Recipe.DELAYED,
            grad_reduce_dtype=self.execution.grad_reduce_dtype, tp_comm_overlap=self.execution.tp_overlap,
            fsdp_no_sync_accumulation=self.execution.fsdp_no_sync,
            fsdp_mixed_frozen_units=self.execution.fsdp_mixed_units, packed_doc_tokens=b.packed_doc_tokens,
        )

    def with_setup(self, setup: TrainSetup) -> "Job":
        """The same job with the parallel layout / batch / recipe of `setup` (used by generators of jobs)."""
        par = replace(self.parallelism, gpus=setup.gpus, tp=setup.tp, pp=setup.pp, cp=setup.cp, ep=setup.ep,
                      virtual_pp=setup.virtual_pp, schedule=setup.pp_schedule,
                      sequence_parallel=setup.sequence_parallel, sharding=setup.sharding, cp_impl=setup.cp_impl,
                      zero_quantized_weights=setup.zero_quantized_weights,
                      zero_quantized_gradients=setup.zero_quantized_gradients)
        return replace(
            self, cluster=replace(self.cluster, gpus=setup.gpus), parallelism=par,
            batch=Batch(setup.seq_len, setup.micro_batch, setup.grad_accum, par.dp, setup.packed_doc_tokens,
                        setup.decoder_seq_len),
            precision=replace(self.precision, precision=setup.precision),
            optimizer=replace(self.optimizer, kind=setup.optimizer, fused=setup.fused_optimizer,
                              in_backward=setup.optimizer_in_backward, paged=setup.paged_optimizer),
            recompute=replace(self.recompute, policy=setup.recompute,
                              layers_fraction=setup.recompute_fraction if setup.recompute == Recompute.LAYER_FRACTION
                              else 1.0),
            offload=OffloadSpec(setup.offload_optimizer, setup.offload_params, setup.offload_activations,
                                setup.offload_auto_cap),
            peft=replace(self.peft, method=setup.peft, rank=setup.lora_rank, targets=setup.lora_targets,
                         impl=setup.lora_impl, trainable_params=setup.trainable_params,
                         fp32_adapters=setup.lora_fp32_adapters, nf4_base=setup.nf4_base,
                         nf4_saves_inputs=setup.nf4_saves_inputs,
                         adapter_linear_scales=setup.adapter_linear_scales),
        )

    def with_gpu(self, gpu: GpuSpec, gpus: int | None = None) -> "Job":
        """The same job on another GPU kind (and count): precision falls back to fp16-mixed without bf16."""
        n = gpus or self.cluster.gpus
        prec = self.precision.precision
        if prec in (Precision.BF16_MIXED, Precision.BF16) and not gpu.supports_bf16 and gpu.vendor != "generic":
            prec = Precision.FP16_MIXED
        par = replace(self.parallelism, gpus=n)
        return replace(self, cluster=replace(self.cluster, gpu=gpu, gpus=n, memory_bytes=float(gpu.memory_bytes)),
                       parallelism=par, batch=replace(self.batch, dp=par.dp),
                       precision=replace(self.precision, precision=prec))

    def defaults_dict(self) -> dict[str, str]:
        return dict(self.defaults)

    def to_values(self) -> dict[str, Any]:
        """The job as flag values (snake_case keys), enough to rebuild the same job with `build_job`."""
        from sizeup.job.argv import job_values

        return job_values(self)

    def to_argv(self, command: str = "train") -> list[str]:
        from sizeup.job.argv import job_argv

        return job_argv(self, command)

    def command(self, command: str = "train") -> str:
        import shlex

        return "sizeup " + " ".join(shlex.quote(a) for a in self.to_argv(command))
