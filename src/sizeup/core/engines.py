"""Serving engines as profiles (vLLM, SGLang, TensorRT-LLM, TGI, LMDeploy, llama.cpp, HF generate, gpt-fast).

PURE: the profile data lives in catalog/data/engines.yaml (read by sizeup.catalog.engines); this module turns a
profile into the ServingKnobs the step model reads and the scheduler settings the simulator reads.
Nothing here opens files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from sizeup.core.inference import ServingKnobs
from sizeup.core.types import GpuSpec
from sizeup.errors import SizeupError
from sizeup.units import GiB, MiB


ADMISSIONS = ("kv", "output-ratio", "finish-order")
"""Admission checks a scheduler may apply besides the KV a request needs now (core.serving_sim.Scheduler.admission)."""


@dataclass(frozen=True)
class SpeculativeDecoding:
    """Draft-then-verify decoding (Leviathan et al. 2023): k draft tokens per step, each accepted with
    probability alpha; the profile's knobs carry it (EngineProfile.knobs), and ServingKnobs.spec_tokens_per_step gives
    the expected tokens per verify step, (1 - alpha^(k+1)) / (1 - alpha)."""

    num_tokens: int = 3
    acceptance_rate: float = 0.7
    draft_cost_ratio: float = 0.05


@dataclass(frozen=True)
class EngineProfile:
    id: str = "generic"
    name: str = "generic continuous-batching engine (catalog knobs)"
    version: str = "-"
    batching: str = "continuous"
    chunked_prefill: bool = True
    mix_prefill_decode: bool = True
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    block_size_tokens: int = 16
    kv_policy: str = "preempt"
    preempt_keeps_cache: bool = False
    admission: str = "kv"
    # the constants of SGLang's admission (read only when admission is not 'kv'): SGLang's defaults, cited in
    # engines.yaml (sglang sources 'new_token_ratio'): global_config.py default_init_new_token_ratio 0.7,
    # default_min_new_token_ratio_factor 0.14, default_new_token_ratio_decay_steps 600, retract_decode_steps 20;
    # schedule_policy.py CLIP_MAX_NEW_TOKENS 4096 (tokens)
    new_token_ratio_init: float = 0.7
    new_token_ratio_min_factor: float = 0.14
    new_token_ratio_decay_steps: int = 600
    clip_max_new_tokens: int = 4096
    retract_decode_steps: int = 20
    cuda_graphs: bool = True
    cuda_graph_max_batch: int = 0
    step_overhead_s: float = 0.002
    launch_overhead_per_layer_s: float = 0.0
    kernels_per_layer: int = 0
    kernels_per_forward: int = 0
    kernels_per_layer_tp: int = 0
    kernel_launch_s: float = 0.0
    gpu_kernels_per_layer: int = 10
    gpu_kernels_per_forward: int = 3
    eager_elementwise_bytes: Mapping[str, float] = field(default_factory=dict)
    prefill_eager_elementwise_bytes: Mapping[str, float] = field(default_factory=dict)
    first_token_from_decode: bool = False
    async_output_proc: bool = False
    overlap_schedule: bool = False
    prefill_attention_causal_skip: bool = True
    kv_cache_blocks: int = 0
    eager_prefill: bool = False
    attention: str = "paged"
    decode_attention_hbm_efficiency: float = 0.7
    attention_repeat_kv: bool = False
    decode_attention_q_heads_per_kv_read: int = 0
    int4_kernel: str = "-"
    int4_weight_read_efficiency: float = 1.0
    fp8_kernel: str = "-"
    allreduce: str = "nccl"
    api_server: bool = True
    per_request_step_work: bool = True
    speculative: SpeculativeDecoding | None = None
    large_gpu: Mapping[str, Any] = field(default_factory=dict)
    small_gpu: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, key: str, data: Mapping[str, Any]) -> "EngineProfile":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SizeupError(f"engine {key!r}: unknown field(s) {', '.join(sorted(unknown))}")
        values = dict(data)
        spec = values.get("speculative")
        values["speculative"] = SpeculativeDecoding(**spec) if isinstance(spec, Mapping) else None
        return cls(id=key, **{k: v for k, v in values.items() if k != "id"})

    def for_gpu(self, gpu: GpuSpec) -> "EngineProfile":
        """Apply the engine's own GPU-dependent defaults: `large_gpu` on >= 70 GiB non-A100 GPUs (vLLM's
        get_batch_defaults rule), `small_gpu` on GPUs under 25,000 MiB (SGLang's chunked_prefill_size rule)."""
        out = self
        big = gpu.memory_bytes >= 70 * GiB and "a100" not in gpu.id.lower()
        if big and self.large_gpu:
            out = replace(out, **dict(self.large_gpu))
        # SGLang compares nvidia-smi's total in MiB with 25_000 (an RTX 4090's 24,564 MiB is below it)
        if gpu.memory_bytes < 25_000 * MiB and self.small_gpu:
            out = replace(out, **dict(self.small_gpu))
        return out

    def with_overrides(self, overrides: Mapping[str, str]) -> "EngineProfile":
        """--engine-opt FIELD=VALUE overrides, typed from the field's current value; bad ones -> SizeupError."""
        changes: dict[str, Any] = {}
        spec = self.speculative
        for key, text in overrides.items():
            head, _, sub = key.partition(".")
            if head in ("eager_elementwise_bytes", "prefill_eager_elementwise_bytes") and sub:
                # one coefficient of an elementwise-bytes mapping: FIELD.hidden / .kv / .ffn = bytes per token per layer
                if sub not in ("hidden", "kv", "ffn"):
                    raise SizeupError(f"--engine-opt {key}: unknown; {head}.hidden / .kv / .ffn")
                value = _typed(key, text, 0.0)
                if value < 0:
                    raise SizeupError(f"--engine-opt {key}: bytes must be >= 0")
                base = dict(changes.get(head, getattr(self, head)) or {})
                if head == "prefill_eager_elementwise_bytes" and not base:
                    base = dict(self.eager_elementwise_bytes or {})  # starts from the decode forward's passes
                base[sub] = value
                changes[head] = base
                continue
            if key.startswith("speculative."):
                sub = key.split(".", 1)[1]
                base = spec or SpeculativeDecoding()
                if sub not in {f.name for f in fields(SpeculativeDecoding)}:
                    raise SizeupError(f"--engine-opt {key}: unknown; speculative.num_tokens / .acceptance_rate / .draft_cost_ratio")
                spec = replace(base, **{sub: _typed(key, text, getattr(base, sub))})
                continue
            if key == "speculative":
                if str(text).lower() in ("off", "none", "false", "0"):
                    spec = None
                    continue
                spec = spec or SpeculativeDecoding()
                continue
            fixed = ("id", "name", "version", "sources", "large_gpu", "small_gpu", "eager_elementwise_bytes",
                     "prefill_eager_elementwise_bytes")
            if key in fixed or key not in {f.name for f in fields(self)}:
                allowed = sorted(f.name for f in fields(self) if f.name not in fixed)
                raise SizeupError(f"--engine-opt {key!r} is not an engine field; one of: {', '.join(allowed)}")
            changes[key] = _typed(key, text, getattr(self, key))
        out = replace(self, **changes, speculative=spec)
        out.check()
        return out

    def check(self) -> None:
        if self.batching not in ("continuous", "static"):
            raise SizeupError(f"engine {self.id}: batching must be continuous or static, got {self.batching!r}")
        if self.kv_policy not in ("preempt", "reserve"):
            raise SizeupError(f"engine {self.id}: kv_policy must be preempt or reserve, got {self.kv_policy!r}")
        if self.admission not in ADMISSIONS:
            raise SizeupError(f"engine {self.id}: admission must be one of {', '.join(ADMISSIONS)}, got {self.admission!r}")
        if self.admission != "kv" and (self.kv_policy != "preempt" or self.preempt_keeps_cache or self.async_output_proc):
            raise SizeupError(f"engine {self.id}: admission {self.admission} is SGLang's scheduler: it needs kv_policy "
                              "preempt without preempt_keeps_cache or async_output_proc")
        if not 0 < float(self.new_token_ratio_init) <= 1 or not 0 <= float(self.new_token_ratio_min_factor) <= 1:
            raise SizeupError(f"engine {self.id}: new_token_ratio_init must be in (0, 1] and new_token_ratio_min_factor "
                              "in [0, 1]")
        for name in ("new_token_ratio_decay_steps", "clip_max_new_tokens", "retract_decode_steps"):
            if int(getattr(self, name)) < 1:
                raise SizeupError(f"engine {self.id}: {name} must be >= 1, got {getattr(self, name)}")
        if self.allreduce not in ("custom", "nccl"):
            raise SizeupError(f"engine {self.id}: allreduce must be custom or nccl, got {self.allreduce!r}")
        for name in ("max_num_batched_tokens", "max_num_seqs", "block_size_tokens"):
            if int(getattr(self, name)) < 1:
                raise SizeupError(f"engine {self.id}: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("decode_attention_hbm_efficiency", "int4_weight_read_efficiency"):
            v = float(getattr(self, name))
            if not 0 < v <= 1:
                raise SizeupError(f"engine {self.id}: {name} must be in (0, 1], got {v}")
        for name in ("step_overhead_s", "launch_overhead_per_layer_s", "kernel_launch_s", "kernels_per_layer",
                     "kernels_per_forward", "kv_cache_blocks", "decode_attention_q_heads_per_kv_read",
                     "gpu_kernels_per_layer", "gpu_kernels_per_forward", "cuda_graph_max_batch",
                     "kernels_per_layer_tp"):
            if float(getattr(self, name)) < 0:
                raise SizeupError(f"engine {self.id}: {name} must be >= 0")
        if self.speculative is not None:
            s = self.speculative
            if s.num_tokens < 1 or not 0 <= s.acceptance_rate <= 1 or s.draft_cost_ratio < 0:
                raise SizeupError(f"engine {self.id}: speculative needs num_tokens >= 1, 0 <= acceptance_rate <= 1, "
                                  "draft_cost_ratio >= 0")

    def knobs(self, base: ServingKnobs, num_layers: int, tp: int = 1) -> ServingKnobs:
        """The step-model knobs this engine implies (memory knobs such as gpu_memory_utilization stay as given);
        `tp` = tensor-parallel degree (host ops of the all-reduces, kernels_per_layer_tp)."""
        overhead = float(self.step_overhead_s)
        # eager forward: host time to issue (ops/layer x L + ops outside the layers) launches, the profile's eager
        # count when it states one, else one launch per GPU kernel; it overlaps the GPU work (core.inference
        # ServingKnobs.host_launch_s). CUDA graphs replay the forward in one launch and run fused kernels (no
        # unfused elementwise passes); a forward above the largest captured graph falls back to this eager one.
        per_layer = int(self.kernels_per_layer) + (int(self.kernels_per_layer_tp) if int(tp) > 1 else 0)
        kernels = per_layer * num_layers + int(self.kernels_per_forward) if per_layer else \
            int(self.gpu_kernels_per_layer) * num_layers + int(self.gpu_kernels_per_forward)
        eager_launch = kernels * float(self.kernel_launch_s)
        ew = self.eager_elementwise_bytes or {}
        eager_ew = (float(ew.get("hidden", 0.0)), float(ew.get("kv", 0.0)), float(ew.get("ffn", 0.0)))
        # a prefill forward may run other unfused passes than a decode one (TurboMind v0.1's context decoder: QKV
        # bias/rotary transpose, KV-block writes and a block -> linear KV copy that its decode kernel fuses)
        pew = self.prefill_eager_elementwise_bytes or {}
        pre_ew = (float(pew.get("hidden", 0.0)), float(pew.get("kv", 0.0)), float(pew.get("ffn", 0.0))) \
            if pew else eager_ew
        if not self.cuda_graphs:
            overhead += float(self.launch_overhead_per_layer_s) * num_layers
        eager_decode = not self.cuda_graphs
        eager_pre = eager_decode or bool(self.eager_prefill)
        # GPU kernels of one decode forward: each boundary costs a launch gap on the GPU (graph or stream)
        gpu_kernels = int(self.gpu_kernels_per_layer) * num_layers + int(self.gpu_kernels_per_forward)
        return base.with_(host_launch_s=eager_launch if eager_decode else 0.0,
                          forward_kernels=float(gpu_kernels), forward_kernels_graph=bool(self.cuda_graphs),
                          graph_max_tokens=int(self.cuda_graph_max_batch) if self.cuda_graphs else 0,
                          eager_fallback_launch_s=eager_launch if self.cuda_graphs else 0.0,
                          prefill_forward_graph=not eager_pre,
                          prefill_host_launch_s=eager_launch if eager_pre else 0.0,
                          eager_elementwise_bytes=eager_ew if eager_decode else (0.0, 0.0, 0.0),
                          prefill_eager_elementwise_bytes=pre_ew if eager_pre else (0.0, 0.0, 0.0),
                          kv_cache_blocks=int(self.kv_cache_blocks),
                          first_token_from_decode=bool(self.first_token_from_decode),
                          spec_tokens=int(self.speculative.num_tokens) if self.speculative else 0,
                          spec_acceptance_rate=float(self.speculative.acceptance_rate) if self.speculative else 0.0,
                          spec_draft_cost_ratio=float(self.speculative.draft_cost_ratio) if self.speculative else 0.0,
                          async_output_proc=bool(self.async_output_proc),
                          overlap_schedule=bool(self.overlap_schedule),
                          prefill_attention_causal_skip=bool(self.prefill_attention_causal_skip),
                          max_num_batched_tokens=int(self.max_num_batched_tokens),
                          max_num_seqs=int(self.max_num_seqs),
                          block_size_tokens=max(1, int(self.block_size_tokens)),
                          decode_step_overhead_s=overhead,
                          decode_attention_hbm_efficiency=float(self.decode_attention_hbm_efficiency),
                          decode_kv_repeat=bool(self.attention_repeat_kv),
                          decode_q_heads_per_kv_read=int(self.decode_attention_q_heads_per_kv_read),
                          int4_weight_read_efficiency=float(self.int4_weight_read_efficiency),
                          allreduce_impl=self.allreduce,
                          api_server=bool(self.api_server),
                          # per-request host work each step (calibration's step_host_per_seq_s) is paid by a
                          # Python scheduler / step loop; a C++ one (TurboMind, TensorRT-LLM's executor,
                          # llama.cpp) or a tensor-only generate() loop does not pay it
                          step_host_per_seq_s=base.step_host_per_seq_s if self.per_request_step_work else 0.0)

    def describe(self) -> str:
        chunk = f"chunked prefill {self.max_num_batched_tokens} tokens" if self.chunked_prefill else \
            f"prefill up to {self.max_num_batched_tokens} tokens/step"
        mix = "mixed with decodes" if self.mix_prefill_decode else "prefill steps pause decodes"
        version = "" if self.version in ("", "-") else f" {self.version}"
        int4 = "no int4 kernel stated" if self.int4_kernel in ("", "-") else f"int4 {self.int4_kernel}"
        return (f"{self.name}{version}: {self.batching} batching, {chunk} ({mix}), max {self.max_num_seqs} seqs, "
                f"KV block {self.block_size_tokens}, {self.kv_policy} on KV exhaustion"
                + (" (a preempted request's KV blocks stay cached until evicted, latest-arrived victim first; "
                   "it resumes without recompute when they were not)"
                   if self.preempt_keeps_cache and self.kv_policy == "preempt" else "")
                + (f"; admits a request only if its prompt + output (clipped at {self.clip_max_new_tokens}) fits beside "
                   f"a reservation of new_token_ratio x each running request's remaining output (ratio "
                   f"{self.new_token_ratio_init:g} decaying to {self.new_token_ratio_init * self.new_token_ratio_min_factor:.3g} "
                   f"over {self.new_token_ratio_decay_steps} decode steps)" if self.admission == "output-ratio" else "")
                + ("; admits a request only if every request can run to its full output with the KV freed by those "
                   "finishing first (SGLang's ignore-EOS check with the radix cache off)"
                   if self.admission == "finish-order" else "")
                + (f"; out of KV, retracts the requests with the fewest output tokens until {self.retract_decode_steps} "
                   "more decode steps fit, to the back of the queue" if self.admission != "kv" else "")
                + ", "
                f"CUDA graphs {'on' if self.cuda_graphs else 'off'}"
                + (f" up to {self.cuda_graph_max_batch} tokens per forward (larger forwards run eager)"
                   if self.cuda_graphs and self.cuda_graph_max_batch else "")
                + (" for decodes only (prefills run eager)" if self.cuda_graphs and self.eager_prefill else "")
                + f", {self.allreduce} all-reduce, {int4}"
                + ("" if self.api_server else ", in-process (no API server)")
                + ("" if self.per_request_step_work else ", no per-request host work in the step loop")
                + (f", {self.gpu_kernels_per_layer} GPU kernels per layer + {self.gpu_kernels_per_forward} per forward "
                   "(a launch gap each)" if self.gpu_kernels_per_layer or self.gpu_kernels_per_forward else "")
                + (", decode attention copies K/V per query head (repeat_kv)" if self.attention_repeat_kv else "")
                + (f", decode attention reads each KV head once per {self.decode_attention_q_heads_per_kv_read} "
                   "query heads" if self.decode_attention_q_heads_per_kv_read else "")
                + (f", unfused elementwise bytes/token/layer decode {_ew(self.eager_elementwise_bytes)}"
                   if self.eager_elementwise_bytes and not self.cuda_graphs else "")
                + (f", prefill {_ew(self.prefill_eager_elementwise_bytes)}"
                   if self.prefill_eager_elementwise_bytes and (not self.cuda_graphs or self.eager_prefill) else "")
                + ("" if self.prefill_attention_causal_skip else
                   ", prefill attention computes every query-key pair (no causal tile skipping: s^2, not s^2/2)")
                + (", async output processing (a step's tokens reach the client at the end of the next step; a "
                   "finished request runs one extra step)" if self.async_output_proc else "")
                + (", overlap scheduler (the next batch is formed while the GPU runs the current one: a new request "
                   "joins one step later)" if self.overlap_schedule else "")
                + (f", speculative k={self.speculative.num_tokens} alpha={self.speculative.acceptance_rate}"
                   if self.speculative else ""))


def _ew(coeffs: Mapping[str, float]) -> str:
    """'16h + 6ffn' from {hidden: 16, kv: 0, ffn: 6}."""
    parts = [f"{float(coeffs.get(k, 0.0)):g}{sym}" for k, sym in (("hidden", "h"), ("kv", "kv"), ("ffn", "ffn"))
             if float(coeffs.get(k, 0.0))]
    return " + ".join(parts) or "0"


def _typed(key: str, text: Any, current: Any) -> Any:
    s = str(text).strip()
    try:
        if isinstance(current, bool):
            if s.lower() in ("1", "true", "yes", "on"):
                return True
            if s.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(current, int):
            value = float(s)
            if value != int(value):
                raise ValueError
            return int(value)
        if isinstance(current, float):
            value = float(s)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
    except ValueError:
        raise SizeupError(f"--engine-opt {key}={s!r}: expected {type(current).__name__}") from None
    return s


GENERIC = EngineProfile()
