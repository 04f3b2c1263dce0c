"""Typed results of every command's `--json` output (pydantic v2): `sizeup schema COMMAND` prints the JSON Schema
generated from these models, and tests/test_outputs.py validates each command's real output against it.

Conventions: the keys listed are always present (a renamed or dropped key breaks the schema test, not a user's
pipeline); a number that is unknown is null (never NaN, never 0); options add keys (e.g. `train --platform` adds
`cost`), which the schema allows. Every output may carry `warnings` (list of one-line strings), `notes` (the notes the
table prints: assumptions, rules, sources) and, with --explain, `explain` (one object per figure: name, value, unit,
formula, inputs, source).
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")

    warnings: list[str] = []
    notes: list[Any] = []
    explain: Optional[list[dict[str, Any]]] = None


class ParamsOutput(_Out):
    """`sizeup params --json`."""

    model: str
    name: str
    total_params: int
    active_params: int
    breakdown: dict[str, Any]
    per_layer: dict[str, Any]
    notes: list[Any]
    preset_notes: str
    source: str


class ModelsOutput(_Out):
    """`sizeup models --json`."""

    models: list[Any]


class GpusOutput(_Out):
    """`sizeup gpus --json`."""

    gpus: list[Any]


class PlatformsOutput(_Out):
    """`sizeup platforms --json`."""

    today: str
    max_age_days: int
    platforms: list[Any]
    offers: list[Any]


class MemoryOutput(_Out):
    """`sizeup memory --json`."""

    model: str
    kernel: str
    setup: dict[str, Any]
    per_gpu: dict[str, Any]
    peak_allocated_bytes: Optional[float]
    peak_reserved_bytes: Optional[float]
    overhead_bytes: dict[str, Any]
    gpu: str
    gpu_memory_bytes: Optional[float]
    headroom_bytes: Optional[float]
    fits: bool
    reasons: list[Any]
    host_bytes: Optional[float]
    nvme_bytes: Optional[float]
    model_state_bytes: Optional[float]
    activation_bytes: Optional[float]
    peak_phase: str
    worst_stage: str
    suggestions: list[Any]


class TrainOutput(_Out):
    """`sizeup train --json`."""

    model: str
    gpu: str
    gpus: int
    kernel: str
    setup: dict[str, Any]
    params: dict[str, Any]
    memory: dict[str, Any]
    flops_per_step: Optional[float]
    flops: dict[str, Any]
    step_time_s: Optional[float]
    tokens_per_s: Optional[float]
    tokens_per_s_per_gpu: Optional[float]
    samples_per_s: Optional[float]
    model_flops_per_s_per_gpu: Optional[float]
    mfu: Optional[float]
    mfu_causal: Optional[float]
    hfu: Optional[float]
    peak_flops_per_s: Optional[float]
    compute_dtype: str
    bound: str
    bound_margin: Optional[float]
    compute_memory_ratio: Optional[float]
    bound_parts_s: dict[str, Any]
    breakdown_s: dict[str, Any]
    steps: int
    tokens: Optional[float]
    total_time_s: Optional[float]
    gpu_hours: Optional[float]
    six_nd: dict[str, Any]
    platform: Optional[str]
    pricing: Optional[str]
    fits: bool
    reasons: list[Any]
    intervals: Optional[dict[str, Any]] = None
    """P10/P50/P90 of each estimated figure: {figure: {p10, p50, p90, interval_regime}} (calibration.yaml)."""


class CompareOutput(_Out):
    """`sizeup compare --json`."""

    workload: dict[str, Any]
    rows: list[Any]
    excluded: list[Any]
    does_not_fit: list[Any]
    cheapest: dict[str, Any]
    fastest: dict[str, Any]
    pareto: list[Any]
    sort: str
    deadline_s: Optional[float]
    budget_usd: Optional[float]


class BudgetOutput(_Out):
    """`sizeup budget --json`."""

    plan: dict[str, Any]


class InferOutput(_Out):
    """`sizeup infer --json`."""

    model_id: str
    gpu_id: str
    tp: int
    pp: int
    ep: int
    gpus: int
    weights_dtype: str
    kv_dtype: str
    prompt_len: int
    output_len: int
    batching: str
    batch: int
    weights_bytes: Optional[float]
    weights_bytes_per_gpu: Optional[float]
    kv_cache_bytes_per_token: Optional[float]
    kv_cache_bytes_per_token_per_gpu: Optional[float]
    kv_cache_bytes_per_sequence: Optional[float]
    kv_cache_bytes_total: Optional[float]
    kv_budget_bytes_per_gpu: Optional[float]
    max_concurrency: int
    fits: bool
    reasons: list[Any]
    ttft_s: Optional[float]
    tpot_s: Optional[float]
    e2e_latency_s: Optional[float]
    output_tokens_per_s: Optional[float]
    output_tokens_per_s_per_request: Optional[float]
    output_tokens_per_s_per_gpu: Optional[float]
    input_tokens_per_s: Optional[float]
    decode_bound: str
    compute_bound_batch: int
    price_usd_per_gpu_hour: Optional[float]
    utilization: Optional[float]
    usd_per_hour: Optional[float]
    usd_per_1m_input_tokens: Optional[float]
    usd_per_1m_output_tokens: Optional[float]
    memory_per_gpu: dict[str, Any]
    decode_step: dict[str, Any]
    notes: list[Any]
    model: str
    gpu: str
    price_note: str
    max_seq_len: int
    intervals: Optional[dict[str, Any]] = None
    """P10/P50/P90 of the closed-form and simulated (load_*) latencies, tokens/s and $ per 1M tokens."""
    request_lengths: dict[str, Any]
    """Where the lengths come from ('flags' or 'trace'), whether they vary, and their p50 / p95 / mean for the prompt
    and the output; prompt_len / output_len above are the rounded means the closed form uses."""


class ServePlanOutput(_Out):
    """`sizeup serve-plan --json`."""

    model: str
    rps: Optional[float]
    prompt_len: dict[str, Any]
    output_len: dict[str, Any]
    targets: dict[str, Any]
    weights_dtype: str
    kv_dtype: str
    best: dict[str, Any]
    options: list[Any]


class SearchOutput(_Out):
    """`sizeup search --json`."""

    model: str
    tokens: Optional[float]
    objective: str
    gpu_kinds: list[Any]
    constraints: dict[str, Any]
    evaluated: int
    considered: int
    fits_memory: int
    feasible: int
    pruned: dict[str, Any]
    elapsed_s: Optional[float]
    rate_configs_per_s: Optional[float]
    plans: list[Any]
    best_per_gpu: list[Any]
    excluded: list[Any]
    strategy_note: str


class ExportOutput(_Out):
    """`sizeup export --json`."""

    format: str
    filename: str
    text: str
    notes: list[Any]
    setup: dict[str, Any]


class TokensOutput(_Out):
    """`sizeup tokens --json`."""

    sample_seconds: Optional[float]
    tokens_per_sample: Optional[float]
    tokens_per_hour: Optional[float]
    samples: Optional[float]
    total_tokens: Optional[float]
    target_tokens: Optional[float]
    data_hours_for_target: Optional[float]
    samples_for_target: Optional[float]
    streams: list[Any]


class AuditOutput(_Out):
    """`sizeup audit --json`."""

    file: str
    title: str
    status: str
    params: Optional[float]
    tokens: Optional[float]
    gpu: str
    gpus: int
    implied_mfu: dict[str, Any]
    checks: list[Any]


class ScaleOutput(_Out):
    """`sizeup scale --json`."""

    family: dict[str, Any]
    global_batch: int
    seq_len: int
    tokens_per_sample: Optional[float]
    precision: str
    optimizer: str
    kernel: str
    pricing: list[Any]
    options: list[Any]
    rows: list[Any]


class ValidateOutput(_Out):
    """`sizeup validate --json`; with --loso: `loso` (the refit's accuracy, knobs and intervals) instead of
    points/summary."""

    points: Optional[list[Any]] = None
    summary: Optional[dict[str, Any]] = None
    loso: Optional[dict[str, Any]] = None


class CalibrateOutput(_Out):
    """`sizeup calibrate --json`: the profile written and its path; with --refit: `loso` (as validate --loso)."""

    profile: Optional[dict[str, Any]] = None
    path: Optional[str] = None
    loso: Optional[dict[str, Any]] = None


class FitBudgetOutput(_Out):
    """`sizeup fit-budget --json`."""

    mode: str
    question: str
    budget_usd: Optional[float]
    deadline_s: Optional[float]
    pricing: str
    answer: dict[str, Any]
    binding: str
    next: dict[str, Any]
    candidates: list[Any]
    evaluations: int


class TraceOutput(_Out):
    """`sizeup trace --json` (needs the trace extra)."""

    model_id: str
    hf_model_type: str
    num_layers: int
    traced_layers: list[Any]
    extrapolated: bool
    micro_batch: int
    seq_len: int
    precision: str
    optimizer: str
    optimizer_impl: str
    gradient_checkpointing: bool
    cuda_like: bool
    params: int
    trainable_params: int
    flops_per_step: int
    attention_flops_per_step: int
    flops_causal_per_step: int
    peak_bytes: int
    peak_phase: str
    phase_peak_bytes: dict[str, Any]
    first_step_phase_peak_bytes: dict[str, Any]
    activation_bytes: int
    weights_bytes: int
    grads_bytes: int
    optimizer_state_bytes: int
    step_start_bytes: int
    attention_mask_used: bool
    segment_peak_bytes: dict[str, Any]
    torch_version: str
    transformers_version: str
    trace_s: Optional[float]
    notes: list[Any]
    tokens_per_step: int
    flops_6nd: int
    active_params: int
    recompute: str
    analytic_params: int


class FrameworksOutput(_Out):
    """`sizeup frameworks --json`."""

    frameworks: list[dict[str, Any]]


OUTPUTS: dict[str, type[_Out]] = {
    'trace': TraceOutput,
    'frameworks': FrameworksOutput,
    'params': ParamsOutput,
    'models': ModelsOutput,
    'gpus': GpusOutput,
    'platforms': PlatformsOutput,
    'memory': MemoryOutput,
    'train': TrainOutput,
    'compare': CompareOutput,
    'budget': BudgetOutput,
    'infer': InferOutput,
    'serve-plan': ServePlanOutput,
    'search': SearchOutput,
    'export': ExportOutput,
    'tokens': TokensOutput,
    'audit': AuditOutput,
    'scale': ScaleOutput,
    'validate': ValidateOutput,
    'calibrate': CalibrateOutput,
    'fit-budget': FitBudgetOutput,
}


def json_schema(command: str) -> dict:
    """The JSON Schema (draft 2020-12) of `sizeup COMMAND --json`."""
    from sizeup.errors import choice_error

    if command not in OUTPUTS:
        raise choice_error("command", command, sorted(OUTPUTS))
    schema = OUTPUTS[command].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"sizeup {command} --json"
    return schema
