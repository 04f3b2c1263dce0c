"""Step-level discrete-event simulation of an LLM serving engine's scheduler under load.

PURE (no files, no printing). One replica (t x p GPUs) runs scheduler iterations ("steps"); each step
  1. decodes one token (or a speculative burst) for every running request whose prompt is done,
  2. spends the rest of the step's token budget (`max_num_batched_tokens`) on prompt chunks: first the
     partially-prefilled requests, then new requests from the FIFO queue while `max_num_seqs` and the KV
     cache allow (chunked prefill, Sarathi-Serve, Agrawal et al. 2024; iteration-level scheduling, Orca,
     Yu et al. 2022). Engines that do not mix (SGLang default, TGI) run prefill-only steps instead,
  3. takes the time of the roofline step model of core/inference.py for its token count, the KV it reads
     and the attention FLOPs of its prompt chunks.
KV capacity is the engine's KV budget (core.inference.kv_budget_bytes); with the 'preempt' policy (vLLM, SGLang)
blocks are allocated as tokens are computed and the youngest running request is preempted and recomputed
when they run out (vLLM recompute preemption; with preempt_keeps_cache, TurboMind v0.1, the victim's blocks stay
cached until an allocation that finds no free space evicts them, and an intact victim resumes without recompute);
with 'reserve' (TensorRT-LLM GUARANTEED_NO_EVICT, TGI) a request
is admitted only when its prompt + output fit.
Static batching (HF generate, gpt-fast): the queue is taken in batches, prefilled together, decoded until the
longest output ends.

Speed: between scheduling events (an arrival, a completion, a prompt finishing, KV exhaustion) every step is
the same decode batch with a context that grows by one token per step; such runs of steps are evaluated as
one numpy vector (closed-form step time per step), so the cost grows with the number of events, not steps.

Symbols: T tokens in a step, B decode sequences, c context tokens, E tokens emitted per decode step
(1, or (1 - a^(k+1))/(1 - a) with speculative decoding), s prompt, n output.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from sizeup.core.engines import EngineProfile
from sizeup.core.inference import (
    LengthDist, ServeSetup, ServingKnobs, WeightDtype, _allreduce_s, _compute_rate, _p2p_s, _shapes, api_server_s,
    decode_kv_s_per_byte, decode_step_parts, eager_elementwise_s, graph_fallback, host_exposed_s, kernel_boundaries_s,
    kv_budget_bytes,
    kv_bytes_per_sequence, kv_bytes_per_token_per_layer, kv_tp_fraction, prefill_view, weight_bytes, window_layers,
)
from sizeup.core.types import GpuSpec, ModelArch
from sizeup.errors import SizeupError

PERCENTILES = (50, 90, 95, 99)
_MAX_WINDOW = 4096  # most steps evaluated as one vector


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    """Requests: prompt/output lengths and either Poisson arrival times (open loop) or a closed-loop
    concurrency (C clients, each sending its next request when the previous one completes)."""

    prompt_len: np.ndarray
    output_len: np.ndarray
    arrival_s: np.ndarray | None = None
    concurrency: int | None = None
    rate_rps: float | None = None

    @property
    def n(self) -> int:
        return int(len(self.prompt_len))


def sample_lengths(dist: LengthDist, n: int, rng: np.random.Generator, cap: int | None = None) -> np.ndarray:
    """n lengths from a log-normal with the given p50 and p95 (sigma = ln(p95/p50)/1.645); fixed when p95 == p50."""
    if dist.p95 <= dist.p50:
        out = np.full(n, int(round(dist.p50)), dtype=np.int64)
    else:
        sigma = math.log(dist.p95 / dist.p50) / 1.6449
        out = np.maximum(1, np.rint(dist.p50 * np.exp(sigma * rng.standard_normal(n)))).astype(np.int64)
    if cap is not None:
        out = np.minimum(out, cap)
    return out


def poisson_arrivals(n: int, rate_rps: float, seed: int = 0) -> np.ndarray:
    """Arrival times of a Poisson process: cumulative exponential gaps of mean 1/rate. The same seed gives the same
    unit gaps at every rate (common random numbers), so runs at different rates differ only by the rate."""
    return np.cumsum(np.random.default_rng(seed).exponential(1.0, n)) / rate_rps


def make_workload(n: int, prompt: LengthDist | Sequence[int], output: LengthDist | Sequence[int],
                  rate_rps: float | None = None, concurrency: int | None = None, seed: int = 0,
                  max_total_len: int | None = None) -> Workload:
    """n requests with lengths drawn from distributions (or given, cycled to n) arriving at a Poisson rate
    (exponential gaps, mean 1/rate) or kept at a closed-loop concurrency. Exactly one of rate/concurrency."""
    if (rate_rps is None) == (concurrency is None):
        raise SizeupError("give either a request rate or a concurrency for the load")
    if n < 1:
        raise SizeupError("the simulation needs at least one request")
    rng = np.random.default_rng(seed + 7)  # lengths; arrivals use their own stream (seed) - see poisson_arrivals

    def lengths(spec) -> np.ndarray:
        if isinstance(spec, LengthDist):
            return sample_lengths(spec, n, rng)
        arr = np.asarray(spec, dtype=np.int64)
        if arr.size == 0 or np.any(arr < 1):
            raise SizeupError("request lengths must be whole numbers >= 1")
        return np.resize(arr, n)

    p, o = lengths(prompt), lengths(output)
    if max_total_len is not None:
        p = np.minimum(p, max(1, max_total_len - 1))
        o = np.maximum(1, np.minimum(o, max_total_len - p))
    if rate_rps is not None:
        if not (rate_rps > 0 and math.isfinite(rate_rps)):
            raise SizeupError(f"request rate must be a finite number > 0, got {rate_rps}")
        return Workload(p, o, poisson_arrivals(n, rate_rps, seed), None, float(rate_rps))
    if concurrency < 1:
        raise SizeupError(f"concurrency must be >= 1, got {concurrency}")
    return Workload(p, o, None, int(concurrency), None)


# --------------------------------------------------------------------------- scheduler settings


@dataclass(frozen=True)
class Scheduler:
    batching: str = "continuous"
    chunked_prefill: bool = True
    mix_prefill_decode: bool = True
    token_budget: int = 8192
    max_num_seqs: int = 256
    block_size: int = 16
    kv_policy: str = "preempt"
    spec_tokens: int = 0
    spec_tokens_per_step: float = 1.0
    spec_draft_cost_ratio: float = 0.0
    first_token_from_decode: bool = False
    """The prefill covers the prompt but its last token; the first output token comes from the next decode step
    (TurboMind v0.1 LlamaBatch::ContextDecode: 'skip last input token (will process with decoder later)')."""
    preempt_keeps_cache: bool = False
    """'preempt' policy: a victim's KV moves to a cached pool (neither used nor free) that allocations evict only
    when the free space runs out, least recently preempted victim first, its tail blocks first; a victim whose
    blocks survive resumes without recompute (TurboMind v0.1 SequenceManager, BlockManager::Evict)."""
    async_output: bool = False
    """Asynchronous output processing (vLLM v0.6): the tokens a step samples are processed during the next step and
    reach the client when it ends (first token, last token); a request whose last token was sampled is scheduled
    once more (its stop is checked only then) and finishes at the end of that extra step."""
    overlap_admission: bool = False
    """Overlap scheduler (SGLang v0.4, TensorRT-LLM's PyTorch backend): the CPU forms batch n+1 while the GPU runs
    batch n, so the batch that starts at t_n+1 holds only the requests that had arrived when batch n started; a
    request arriving while the server is busy waits one more step before its prefill (an idle server takes it at
    once)."""
    admission: str = "kv"
    """Which check admits a queued request besides the KV it needs now (kv_policy): 'kv' none; 'output-ratio'
    (SGLang PrefillAdder.add_one_req) its prompt + min(output, clip) must fit in the free KV less a reservation of
    new_token_ratio x min(remaining output, clip) for every running request, the ratio decaying per decode step from
    new_token_ratio_init to init x new_token_ratio_min_factor over new_token_ratio_decay_steps, back to init when the
    server idles and set to min(1, (generated + retract_decode_steps x n) / max outputs) after a retraction; 'finish-order' (SGLang
    add_one_req_ignore_eos, radix cache off and requests that ignore EOS) every request, the new one included, must
    be able to run to its full output with the KV freed by those that finish before it. With either, a decode step
    that finds no KV retracts the requests with the fewest output tokens (longest prompt first on ties) until the
    free KV holds retract_decode_steps more tokens for each remaining one, and sends them to the back of the queue
    (ScheduleBatch.retract_decode); after a failed admission no new request is tried until a running one finishes
    or is retracted (Scheduler.batch_is_full)."""
    # the admission's constants: the engine profile's fields of the same names (one set of defaults, SGLang's)
    new_token_ratio_init: float = EngineProfile.new_token_ratio_init
    new_token_ratio_min_factor: float = EngineProfile.new_token_ratio_min_factor
    new_token_ratio_decay_steps: int = EngineProfile.new_token_ratio_decay_steps
    clip_max_new_tokens: int = EngineProfile.clip_max_new_tokens
    retract_decode_steps: int = EngineProfile.retract_decode_steps

    @classmethod
    def from_engine(cls, engine, knobs: ServingKnobs, batch: int | None = None) -> "Scheduler":
        """The engine profile's scheduler; `knobs` are that profile's resolved knobs (EngineProfile.knobs), which
        carry its token budget, sequence cap, block size and the first-token/async-output behaviour (one source:
        the profile, with --engine-opt overrides applied)."""
        seqs = int(batch) if batch is not None and engine.batching == "static" else int(knobs.max_num_seqs)
        return cls(engine.batching, bool(engine.chunked_prefill), bool(engine.mix_prefill_decode),
                   int(knobs.max_num_batched_tokens), max(1, seqs), int(knobs.block_size_tokens), engine.kv_policy,
                   int(knobs.spec_tokens), float(knobs.spec_tokens_per_step), float(knobs.spec_draft_cost_ratio),
                   bool(knobs.first_token_from_decode),
                   bool(getattr(engine, "preempt_keeps_cache", False)) and engine.kv_policy == "preempt",
                   bool(knobs.async_output_proc), bool(knobs.overlap_schedule),
                   str(engine.admission), float(engine.new_token_ratio_init), float(engine.new_token_ratio_min_factor),
                   int(engine.new_token_ratio_decay_steps), int(engine.clip_max_new_tokens),
                   int(engine.retract_decode_steps))


# --------------------------------------------------------------------------- step model


class StepModel:
    """Seconds of one scheduler step from core.inference's roofline pieces:

    step(T, n_seq, S, P) = max(W_read(T)/(BW*eta_hbm), (2*N_body*T + 2*V*h*n_seq)/t / R(T))   [weight GEMMs]
                         + max(S*kv_tok*k_kv, S*f_attn/R(T))                                  [decode attention]
                         + P*f_attn_pre/R(T)                                                    [prompt attention]
                         + 2L*allreduce(T*h*2) + p2p
                         + n_kernels * t_boundary                                               [kernel launch gaps]
    step = GPU part above + host_exposed_s(GPU part, host_launch, n_seq) + overhead   [eager engines: the host issues
           kernels while the GPU runs; n_seq x ServingKnobs.step_host_per_seq_s of per-request host work, serial or,
           under an overlap scheduler, hidden behind the GPU part (core.inference.host_exposed_s)]
    k_kv seconds per KV byte (core.inference.decode_kv_s_per_byte: 1/(BW*eta_attn), more when the engine copies
    or re-reads a GQA group's K/V), T tokens in the step, n_seq sequences sampling a token, S sum of the decode
    sequences' (window-capped) contexts, P sum over prompt chunks of query-key pairs; R(T) achievable FLOP/s at
    T tokens (MAMF curve).
    The T-only parts are tabulated once (numpy) so a step costs a few scalar operations.
    """

    def __init__(self, model: ModelArch, gpu: GpuSpec, setup: ServeSetup, knobs: ServingKnobs, max_tokens: int):
        self.model, self.gpu, self.setup, self.knobs = model, gpu, setup, knobs
        sh = _shapes(model)
        self.wbytes = weight_bytes(model, setup.weights, knobs.quant_group_size).total_bytes
        self._sh = sh
        self.max_tokens = int(max(1, max_tokens))
        T = np.arange(0, self.max_tokens + 1, dtype=float)
        self._tab = self._dense_parts(T)
        t = float(setup.tp)
        L = model.num_layers
        self.n_w = window_layers(model)
        self.window = float(model.sliding_window or 0)
        per_layer = kv_bytes_per_token_per_layer(model, setup.kv_dtype) * float(kv_tp_fraction(model, setup.tp))
        # per effective context token (all L layers): bytes read / time, attention FLOPs (decode and prefill)
        self.kv_read_s_per_tok = per_layer * L * decode_kv_s_per_byte(model, gpu, knobs)
        self.attn_flops_per_tok = 2.0 * L * model.num_heads * (sh.attn_dim_qk + sh.attn_dim_v) / t
        self.attn_flops_per_pair = 2.0 * L * model.num_heads * (sh.attn_dim_qk_prefill + (model.v_head_dim or model.head_dim)) / t
        self.overhead_s = float(knobs.decode_step_overhead_s)
        self.causal_skip = bool(knobs.prefill_attention_causal_skip)
        self.launch_s = float(knobs.host_launch_s)
        # prefill forwards may run eager while decodes replay CUDA graphs (core.inference.prefill_view): their own
        # launch time and, per prompt token, the elementwise seconds they add over a decode token's
        pk = prefill_view(knobs)
        self.prefill_launch_s = float(pk.host_launch_s)
        self.ew_extra_per_prompt_tok = float(eager_elementwise_s(model, gpu, 1.0, setup.tp, pk)) \
            - float(eager_elementwise_s(model, gpu, 1.0, setup.tp, knobs))
        # a step above the engine's largest captured CUDA graph runs eager (core.inference.graph_fallback): its
        # kernel boundaries cost stream gaps and the host issues its kernels one by one; a prefill forward of an
        # engine that captures only decodes already runs eager (its own launch time and gaps)
        self.graph_max_tokens = int(knobs.graph_max_tokens) if knobs.forward_kernels_graph else 0
        _, fb_gaps, fb_launch = graph_fallback(knobs, float(self.graph_max_tokens) + 1.0)
        self.fallback_gaps_s, self.fallback_launch_s = float(fb_gaps), float(fb_launch)
        self.prefill_gaps_s = float(kernel_boundaries_s(pk)) - float(kernel_boundaries_s(knobs))
        self.prefill_falls_back = bool(pk.forward_kernels_graph)

    def _dense_parts(self, T: np.ndarray) -> dict:
        # graph-covered forwards: the eager fallback above the largest captured graph is added per step (time)
        m, g, s, k = self.model, self.gpu, self.setup, self.knobs.with_(graph_max_tokens=0)
        Tc = np.maximum(T, 1.0)
        parts = decode_step_parts(m, g, Tc, 0.0, s.tp, s.pp, s.weights, s.kv_dtype, k, self.wbytes, self._sh, s.ep)
        share_lm = self._sh.lm_head_params / max(self._sh.matmul_params_per_token, 1.0)
        comp = np.asarray(parts["gemm_compute"], dtype=float)
        rate, _ = _compute_rate(g, s.weights, k, 2.0 * Tc * m.hidden_size * self._sh.ffn_gemm / s.tp)
        return {"mem": np.asarray(parts["gemm_memory"], dtype=float) + 0.0 * T,
                "body": comp * (1.0 - share_lm), "lm_per_seq": comp * share_lm / Tc,
                "comm": np.asarray(parts["comm"], dtype=float) + 0.0 * T,
                "rate": np.asarray(rate, dtype=float) + 0.0 * T}

    def _parts_at(self, T: int) -> tuple[float, float, float, float, float]:
        if T <= self.max_tokens:
            tab = self._tab
            return (float(tab["mem"][T]), float(tab["body"][T]), float(tab["lm_per_seq"][T]), float(tab["comm"][T]),
                    float(tab["rate"][T]))
        p = self._dense_parts(np.array([float(T)]))
        return tuple(float(p[x][0]) for x in ("mem", "body", "lm_per_seq", "comm", "rate"))  # type: ignore[return-value]

    def eff_context(self, ctx):
        """Context tokens an attention read covers, averaged over layers: ((L-L_w)*c + L_w*min(c, w)) / L."""
        c = np.asarray(ctx, dtype=float)
        if not self.n_w:
            return c
        L = self.model.num_layers
        return ((L - self.n_w) * c + self.n_w * np.minimum(c, self.window)) / L

    def pairs(self, start, length):
        """Query-key pairs of a prompt chunk of `length` tokens after `start` cached tokens (causal, window-capped),
        averaged over layers."""
        x = np.asarray(length, dtype=float)
        p0 = np.asarray(start, dtype=float)
        # causal: query q attends q+1 keys; a kernel that does not skip the masked tiles computes every key of the
        # chunk's context for every query (x*(p0+x)) and masks the rest (knobs.prefill_attention_causal_skip)
        full = x * p0 + (x * (x + 1.0) / 2.0 if self.causal_skip else x * x)
        if not self.n_w:
            return full
        w = self.window
        # each query at position q attends min(q+1, w) keys
        end = p0 + x

        def cum(n):  # sum_{q=0}^{n-1} min(q+1, w)
            n = np.asarray(n, dtype=float)
            return np.where(n <= w, n * (n + 1.0) / 2.0, w * (w + 1.0) / 2.0 + (n - w) * w)

        win = cum(end) - cum(p0)
        L = self.model.num_layers
        return ((L - self.n_w) * full + self.n_w * win) / L

    def _launch_and_gaps(self, tokens: int, prefill: bool) -> tuple[float, float]:
        """(host launch s, GPU kernel-gap s beyond the tabulated graph gaps) of one forward of `tokens` tokens: a
        prefill forward runs with its own launch and gaps (core.inference.prefill_view), and a forward above the
        largest captured graph falls back to eager (core.inference.graph_fallback)."""
        launch = self.prefill_launch_s if prefill else self.launch_s
        gaps = self.prefill_gaps_s if prefill else 0.0
        if self.graph_max_tokens and tokens > self.graph_max_tokens and (not prefill or self.prefill_falls_back):
            gaps += self.fallback_gaps_s
            launch = max(launch, self.fallback_launch_s)
        return launch, gaps

    def time(self, tokens: int, n_seq: int, ctx_sum: float, pairs: float,
             prompt_tokens: float = 0.0) -> tuple[float, float, float]:
        """(seconds, seconds charged to prompt tokens, seconds charged to decode tokens) of one step;
        `prompt_tokens` of the `tokens` are prompt-chunk tokens (the step is a prefill forward)."""
        if tokens <= 0:
            return 0.0, 0.0, 0.0
        mem, body, lm, comm, rate = self._parts_at(tokens)
        dense = max(mem, (body + lm * n_seq)) + comm + prompt_tokens * self.ew_extra_per_prompt_tok
        dec_attn = max(ctx_sum * self.kv_read_s_per_tok, ctx_sum * self.attn_flops_per_tok / rate)
        pre_attn = pairs * self.attn_flops_per_pair / rate
        launch, gaps = self._launch_and_gaps(tokens, prompt_tokens > 0)
        dense += gaps
        # host time the GPU work does not hide (launches, per-sequence step work: core.inference.host_exposed_s) is
        # charged with the dense part (it scales with the forward)
        dense += float(host_exposed_s(dense + dec_attn + pre_attn, launch, n_seq, self.knobs)) + self.overhead_s
        return dense + dec_attn + pre_attn, dense, dec_attn + pre_attn

    def decode_run(self, tokens: int, n_seq: int, ctx_sums: np.ndarray) -> np.ndarray:
        """Seconds of consecutive decode-only steps with the same T and n_seq and the given context sums."""
        mem, body, lm, comm, rate = self._parts_at(tokens)
        launch, gaps = self._launch_and_gaps(tokens, False)
        gpu = max(mem, body + lm * n_seq) + comm + gaps \
            + np.maximum(ctx_sums * self.kv_read_s_per_tok, ctx_sums * self.attn_flops_per_tok / rate)
        return gpu + host_exposed_s(gpu, launch, n_seq, self.knobs) + self.overhead_s

    def prefill_batch_s(self, n_seq: int, prompt: int) -> float:
        """A padded static batch of n_seq prompts of `prompt` tokens in one forward."""
        T = n_seq * prompt
        mem, body, lm, comm, rate = self._parts_at(T)
        launch, gaps = self._launch_and_gaps(T, True)
        gpu = max(mem, body + lm * n_seq) + comm + gaps + T * self.ew_extra_per_prompt_tok \
            + n_seq * float(self.pairs(0, prompt)) * self.attn_flops_per_pair / rate
        return gpu + float(host_exposed_s(gpu, launch, n_seq, self.knobs)) + self.overhead_s


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SimResult:
    n_requests: int
    completed: int
    duration_s: float
    busy_s: float
    prefill_gpu_s: float
    decode_gpu_s: float
    input_tokens: int
    output_tokens: int
    prefill_tokens_computed: int
    preemptions: int
    steps: int
    ttft_s: np.ndarray = field(repr=False)
    e2e_s: np.ndarray = field(repr=False)
    tpot_s: np.ndarray = field(repr=False)
    itl_s: np.ndarray = field(repr=False)
    itl_weight: np.ndarray = field(repr=False)
    running_mean: float = 0.0
    queue_mean: float = 0.0

    @property
    def prompt_tokens_recomputed(self) -> int:
        """Prompt (and generated) tokens prefilled again after preemptions: prefill work beyond the inputs."""
        return max(self.prefill_tokens_computed - self.input_tokens, 0)

    @property
    def request_throughput_rps(self) -> float:
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def input_tokens_per_s(self) -> float:
        return self.input_tokens / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def gpu_utilization(self) -> float:
        return min(1.0, self.busy_s / self.duration_s) if self.duration_s > 0 else 0.0

    def pct(self, what: str, q: float) -> float:
        if what == "itl":
            return _weighted_pct(self.itl_s, self.itl_weight, q)
        arr = {"ttft": self.ttft_s, "e2e": self.e2e_s, "tpot": self.tpot_s}[what]
        arr = arr[np.isfinite(arr)]
        return float(np.percentile(arr, q)) if arr.size else 0.0

    def mean(self, what: str) -> float:
        if what == "itl":
            w = self.itl_weight
            return float(np.sum(self.itl_s * w) / np.sum(w)) if w.size and np.sum(w) > 0 else 0.0
        arr = {"ttft": self.ttft_s, "e2e": self.e2e_s, "tpot": self.tpot_s}[what]
        arr = arr[np.isfinite(arr)]
        return float(arr.mean()) if arr.size else 0.0

    def summary(self) -> dict:
        out: dict = {"requests": self.n_requests, "completed": self.completed, "duration_s": self.duration_s,
                     "request_throughput_rps": self.request_throughput_rps,
                     "output_tokens_per_s": self.output_tokens_per_s, "input_tokens_per_s": self.input_tokens_per_s,
                     "gpu_utilization": self.gpu_utilization, "preemptions": self.preemptions,
                     "prompt_tokens_recomputed": self.prompt_tokens_recomputed, "steps": self.steps,
                     "mean_running": self.running_mean, "mean_queued": self.queue_mean}
        for what in ("ttft", "tpot", "itl", "e2e"):
            out[f"{what}_mean_s"] = self.mean(what)
            for q in PERCENTILES:
                out[f"{what}_p{q}_s"] = self.pct(what, q)
        return out


def _weighted_pct(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if values.size == 0:
        return 0.0
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cw = np.cumsum(w)
    if cw[-1] <= 0:
        return 0.0
    idx = int(np.searchsorted(cw, q / 100.0 * cw[-1], side="left"))
    return float(v[min(idx, v.size - 1)])


class SimInfeasible(SizeupError):
    """The replica cannot serve the workload at all (a request's KV does not fit)."""


# --------------------------------------------------------------------------- the simulation


def kv_capacity_bytes(model: ModelArch, gpu: GpuSpec, setup: ServeSetup, knobs: ServingKnobs) -> float:
    if int(knobs.kv_cache_blocks) > 0:
        # the engine's own block count (one GPU's share of blocks x block_size tokens)
        tokens = int(knobs.kv_cache_blocks) * max(1, int(knobs.block_size_tokens))
        return float(kv_bytes_per_sequence(model, tokens, setup.kv_dtype, setup.tp, setup.pp, 1))
    wb = weight_bytes(model, setup.weights, knobs.quant_group_size).total_bytes
    return float(kv_budget_bytes(model, gpu.memory_bytes, setup.tp, setup.pp, wb, knobs))


def simulate(model: ModelArch, gpu: GpuSpec, setup: ServeSetup, knobs: ServingKnobs, sched: Scheduler,
             workload: Workload, step_model: StepModel | None = None) -> SimResult:
    """Run the workload through one replica; raises SimInfeasible when a request can never fit."""
    cap = kv_capacity_bytes(model, gpu, setup, knobs)
    blk = max(1, sched.block_size)

    def kvb(ctx):
        return kv_bytes_per_sequence(model, ctx, setup.kv_dtype, setup.tp, setup.pp, blk)

    longest = int(np.max(workload.prompt_len + workload.output_len))
    if cap <= 0 or float(kvb(longest)) > cap:
        raise SimInfeasible(f"a request of {longest} tokens needs {float(kvb(longest)) / 2**30:.2f} GiB of KV per GPU; "
                            f"the KV budget is {max(cap, 0.0) / 2**30:.2f} GiB")
    k1 = sched.spec_tokens + 1
    sm = step_model or StepModel(model, gpu, setup, knobs, sched.token_budget + sched.max_num_seqs * k1)
    if sched.batching == "static":
        res = _simulate_static(sm, sched, workload, cap, kvb)
    else:
        res = _simulate_continuous(sm, sched, workload, cap, kvb)
    front = api_server_s(knobs)
    if front > 0:
        # the API server's own time per request (core.inference.api_server_s) runs beside the GPU's steps: the client
        # sees every request's first and last token that much later; the GPU schedule does not change (a closed-loop
        # client's next request is sent when the engine finishes the previous one)
        res = replace(res, ttft_s=res.ttft_s + front, e2e_s=res.e2e_s + front)
    return res


def finish_order_admits(left: np.ndarray, held: np.ndarray, left_new: float, held_new: float,
                        free_tokens: float) -> tuple[bool, np.ndarray, np.ndarray]:
    """SGLang PrefillAdder.add_one_req_ignore_eos (taken when requests ignore EOS and the radix cache is off).

    left, held: remaining output and tokens held (prompt + generated) of the requests already in (running and admitted
    this pass), sorted by remaining output; the new request goes in before the first one with as much left
    (insert_sort). free_tokens: free KV tokens less the prompt tokens this pass allocates and the new prompt.
    Sorted by remaining output, request i finishes after left_i more steps; by then the bs_i = n - i requests from i on
    have each grown by left_i while those before i have freed what they held:
        admit  iff  for every i:  free_tokens + sum_{k<i} held_k - left_i * bs_i  >  1 * bs_i
    (min_free_tokens > IGNORE_EOS_RESERVE_TOKENS x bs). Returns (admitted, left and held with the new request)."""
    k = int(np.searchsorted(left, left_new, side="left"))
    left2 = np.insert(left, k, float(left_new))
    held2 = np.insert(held, k, float(held_new))
    bs = np.arange(left2.size, 0, -1, dtype=float)
    ok = bool(np.all(free_tokens + (np.cumsum(held2) - held2) - left2 * bs > bs))
    return ok, left2, held2


def sglang_retract(generated: np.ndarray, prompt: np.ndarray, held_tokens: np.ndarray, max_new: np.ndarray,
                   free_tokens: float, retract_steps: int) -> tuple[list[int], float]:
    """SGLang ScheduleBatch.retract_decode, for a decode batch whose next step finds no KV.

    Victims are taken in order of fewest output tokens, longest prompt on ties (sorted descending by (generated,
    -prompt), popped from the end), at least one, never the last request, until the free KV holds retract_steps more
    tokens for every request left: free_tokens + held of the victims >= retract_steps x (requests left). The new
    new_token_ratio is min(1, (generated + retract_steps x n) / sum of max outputs) over the n requests left.
    Returns (victim positions in the given arrays, in retraction order; the new ratio)."""
    n = int(generated.size)
    cand = sorted(range(n), key=lambda j: (float(generated[j]), -float(prompt[j])), reverse=True)
    free = float(free_tokens)
    out: list[int] = []
    while len(cand) > 1 and (not out or free < len(cand) * retract_steps):
        v = cand.pop()
        out.append(v)
        free += float(held_tokens[v])
    keep = np.array(cand, dtype=np.int64)
    total = float(np.sum(max_new[keep])) if keep.size else 0.0
    ratio = min(1.0, (float(np.sum(generated[keep])) + retract_steps * keep.size) / max(total, 1.0))
    return out, ratio


class _KvBytes:
    """KV bytes one sequence holds on one GPU at context c, block-rounded (core.inference.kv_bytes_per_sequence
    in closed form): a * [(L - L_w) * ceil(c/blk)*blk + L_w * ceil(min(c, w)/blk)*blk]."""

    def __init__(self, model: ModelArch, setup: ServeSetup, blk: int, whole: bool = False):
        self.a = float(kv_bytes_per_sequence(model, 1, setup.kv_dtype, setup.tp, setup.pp, 1)) / model.num_layers
        self.L = model.num_layers
        self.n_w = window_layers(model)
        self.w = float(model.sliding_window or 0)
        self.blk = float(blk)
        self.aL = self.a * self.L
        self.whole = whole  # the caller's contexts are whole token counts: with 1-token pages no rounding is needed

    def vec(self, c):
        c = np.asarray(c, dtype=float)
        if self.whole and self.blk == 1.0 and not self.n_w:
            return self.aL * c  # ceil(c / 1) * 1 == c for whole c: the same values, two array passes fewer
        full = np.ceil(c / self.blk) * self.blk
        if not self.n_w:
            return self.aL * full
        win = np.ceil(np.minimum(c, self.w) / self.blk) * self.blk
        return self.a * ((self.L - self.n_w) * full + self.n_w * win)

    def one(self, c: float) -> float:
        full = math.ceil(c / self.blk) * self.blk
        if not self.n_w:
            return self.a * self.L * full
        win = math.ceil(min(c, self.w) / self.blk) * self.blk
        return self.a * ((self.L - self.n_w) * full + self.n_w * win)


def _simulate_continuous(sm: StepModel, sched: Scheduler, wl: Workload, cap: float, kvb) -> SimResult:
    # one token per decode step keeps every context a whole number (prompts, chunks and evictions are whole too)
    kv = _KvBytes(sm.model, sm.setup, max(1, sched.block_size), whole=float(sched.spec_tokens_per_step) == 1.0)
    N = wl.n
    pl = wl.prompt_len.astype(np.int64)
    ol = wl.output_len.astype(float)
    pl_l = pl.tolist()
    ol_l = ol.tolist()
    closed = wl.arrival_s is None
    arr = np.full(N, np.inf) if closed else wl.arrival_s.astype(float).copy()
    arr_l = arr.tolist()
    issued = N
    if closed:
        issued = min(N, int(wl.concurrency))
        for i in range(issued):
            arr_l[i] = 0.0
    first = np.full(N, math.nan)
    finish = [math.nan] * N
    kvlen = np.zeros(N, dtype=float)       # tokens whose KV is stored
    ftd = bool(sched.first_token_from_decode)
    # first token from the decode step: the prefill covers the prompt but its last token (at least 1 token kept
    # so that every request has a prefill step)
    target = [float(max(x - 1, 1)) if ftd else float(x) for x in pl_l]  # prompt tokens to (re)compute
    gen = np.zeros(N, dtype=float)         # output tokens emitted
    held = np.zeros(N, dtype=float)        # KV bytes held (preempt: computed tokens; reserve: prompt + output)
    is_done = np.zeros(N, dtype=bool)
    # async output processing (vLLM v0.6): a step's sampled tokens are processed while the next step runs and reach
    # the client when it ends; the stop check runs then too, so a request whose last token was sampled ('spent')
    # is scheduled once more and finishes at the end of that extra step
    lag = bool(sched.async_output)
    late: list[int] = []                   # first tokens sampled by the last step, streamed at the end of the next
    in_late = np.zeros(N, dtype=bool)
    spent = np.zeros(N, dtype=bool)
    linger: list[int] = []                 # spent requests that finish at the end of the next step
    E = float(sched.spec_tokens_per_step)
    k1 = sched.spec_tokens + 1
    budget0 = int(sched.token_budget)
    max_seqs = int(sched.max_num_seqs)
    chunked = bool(sched.chunked_prefill)
    mix = bool(sched.mix_prefill_decode)
    reserve = sched.kv_policy == "reserve"
    keep = bool(sched.preempt_keeps_cache) and not reserve
    # cached victims (preempt_keeps_cache): their KV bytes held[i] are neither used nor free. TurboMind v0.1 re-locks
    # the cached victims still in its batch at every step (SequenceManager::VerifyAndLockCached) and an allocation
    # that finds no free space preempts from the lowest priority (latest arrival, Transaction::Process) whose blocks
    # it touches first (UpdateAndSetUnlock) and so evicts first (BlockManager::Evict: oldest timestamp first; Touch
    # stamps a sequence's blocks from its last to its first): the latest-arrived victim (highest index) loses its
    # tail blocks first
    cache: dict[int, None] = {}
    cached = 0.0
    blk_b = kv.one(kv.blk)
    # SGLang's admission (Scheduler.admission) counts tokens: KV bytes per token at page size 1
    adm = sched.admission
    sg = adm != "kv"
    tok_b = blk_b / kv.blk
    pl_f = pl.astype(float)
    clip = float(sched.clip_max_new_tokens)
    R = int(sched.retract_decode_steps)
    ntr_init = float(sched.new_token_ratio_init)
    ntr_min = ntr_init * float(sched.new_token_ratio_min_factor)
    ntr_decay = (ntr_init - ntr_min) / max(float(sched.new_token_ratio_decay_steps), 1.0)
    ratio = ntr_init                       # new_token_ratio
    batch_full = False                     # Scheduler.batch_is_full: no admission until a running request leaves

    def sg_left_clipped(i: int) -> float:
        """Request i's remaining output tokens, clipped at clip_max_new_tokens (what SGLang reserves for it)."""
        return min(max(ol_l[i] - float(gen[i]), 0.0), clip)

    def sg_extend_out(i: int) -> tuple[float, float]:
        """(prompt tokens still to compute, remaining output tokens clipped) SGLang charges a queued request."""
        return float(target[i] - kvlen[i]), sg_left_clipped(i)

    def sg_ratio_room() -> float:
        """PrefillAdder.rem_total_tokens at the start of a prefill pass: free KV tokens less new_token_ratio x each
        running request's (decoding or prefilling) remaining output, clipped."""
        rem = float(np.minimum(np.maximum(ol[dec] - gen[dec], 0.0), clip).sum()) if dec.size else 0.0
        rem += sum(sg_left_clipped(j) for j in pend)
        return (cap - used) / tok_b - ratio * rem

    def fo_states(order_now: Mapping[int, None]) -> list[np.ndarray]:
        """(remaining outputs, tokens held: prompt + generated) of the running requests, sorted by remaining output:
        the state add_one_req_ignore_eos builds once per prefill pass (req_states)."""
        ids = np.fromiter(order_now, dtype=np.int64, count=len(order_now))
        left = np.maximum(ol[ids] - gen[ids], 0.0)
        srt = np.argsort(left, kind="stable")
        return [left[srt], (pl_f[ids] + gen[ids])[srt]]

    def fo_admit(state: list[np.ndarray], i: int, pass_tokens: float) -> bool:
        """finish_order_admits for queued request i (state updated when admitted); sliding-window models skip the
        check, as SGLang skips it for its hybrid SWA pools."""
        if kv.n_w:
            return True
        ok, left, occ = finish_order_admits(state[0], state[1], max(ol_l[i] - float(gen[i]), 0.0),
                                            pl_f[i] + float(gen[i]),
                                            (cap - used) / tok_b - pass_tokens - float(target[i] - kvlen[i]))
        if ok:
            state[0], state[1] = left, occ
        return ok

    def evict(need: float) -> None:
        nonlocal cached
        while need > 1e-6 and cache:
            v = max(cache)
            h = float(held[v])
            c = 0.0
            if h > need:
                # keep the longest block-aligned prefix whose bytes fit in h - need (VerifyAndLockCached keeps the
                # blocks before the first evicted one)
                lo, hi = 0, int(math.ceil(kvlen[v] / kv.blk))
                lo = min(hi, int((h - need) // blk_b)) if not kv.n_w else lo
                while lo < hi and kv.one((lo + 1) * kv.blk) <= h - need:
                    lo += 1
                c = min(float(lo * kv.blk), float(kvlen[v]))
            kept = kv.one(c) if c else 0.0
            cached -= h - kept
            need -= h - kept
            held[v] = kept
            kvlen[v] = c
            if gen[v] > 0:
                target[v] = float(pl_l[v] + math.floor(gen[v]) - (1 if ftd else 0))
            if not c:
                del cache[v]

    waiting: deque[int] = deque()
    order: dict[int, None] = {}            # running requests in admission order (preemption victim = last)
    pend: list[int] = []                   # running requests still prefilling
    dec = np.zeros(0, dtype=np.int64)      # running requests decoding
    used = 0.0
    nxt = 0
    t = 0.0
    done = 0
    busy = pre_s = dec_s = 0.0
    steps = preempt = 0
    computed = 0
    itl_v: list[np.ndarray] = []
    itl_w: list[np.ndarray] = []
    area_run = area_queue = 0.0
    spec_extra = sched.spec_tokens * sched.spec_draft_cost_ratio
    stall = 0.0                            # time decoding requests spent paused by prefill-only steps
    def drop_kv(i: int) -> None:
        """A preempted request loses its KV: it recomputes its prompt and the tokens it has generated."""
        held[i] = 0.0
        kvlen[i] = 0.0
        target[i] = float(pl_l[i] + math.floor(gen[i]) - (1 if ftd else 0))

    # overlap scheduler: the step starting at t holds the arrivals up to the previous step's start (Scheduler.
    # overlap_admission); t_cut is that cutoff (= t when the server was idle or the engine has no overlap)
    olag = bool(sched.overlap_admission)
    t_cut = 0.0
    while done < N:
        cut = t_cut if olag else t
        while nxt < issued and arr_l[nxt] <= cut + 1e-12:
            waiting.append(nxt)
            nxt += 1
        n_run = len(order)
        if not n_run and not waiting:
            if nxt >= issued:
                break
            t = t_cut = max(t, arr_l[nxt])
            ratio = ntr_init  # SGLang re-inits new_token_ratio when it finds nothing to run
            continue
        if cache and waiting and waiting[0] in cache and n_run < max_seqs:
            # victims at the head of the queue whose KV survived in the cache and whose prompt was done: re-lock
            # their blocks (VerifyAndLockCached) and resume decoding without a prefill, when their next block and
            # the running decodes' next blocks fit in the free + cached space
            free_b = cap - used - (float(kv.vec(kvlen[dec] + kv.blk).sum() - held[dec].sum()) if dec.size else 0.0)
            moved: list[int] = []
            while waiting and len(order) < max_seqs:
                i = waiting[0]
                if i not in cache or kvlen[i] < target[i] - 1e-9:
                    break
                add = kv.one(kvlen[i] + kv.blk)
                if add > free_b:
                    break
                free_b -= add
                waiting.popleft()
                del cache[i]
                cached -= float(held[i])
                used += float(held[i])
                order[i] = None
                moved.append(i)
            if moved:
                dec = np.concatenate([dec, np.array(moved, dtype=np.int64)])
                n_run = len(order)
        n_dec_all = int(dec.size)
        # KV growth of this step's decodes (preempt policy): preempt the youngest request until it fits
        if not reserve and n_dec_all:
            new_held = kv.vec(kvlen[dec] + E)
            growth = float(new_held.sum() - held[dec].sum())
            if used + growth > cap and sg and n_dec_all > 1:
                # SGLang ScheduleBatch.retract_decode: victims = fewest output tokens, longest prompt on ties, until
                # the free KV holds retract_steps more tokens for every request left (at least one, never the
                # last); they go to the back of the queue and new_token_ratio becomes
                # min(1, (generated + retract_steps x n) / sum of max outputs) over the requests left
                pos, ratio = sglang_retract(gen[dec], pl_f[dec], held[dec] / tok_b, ol[dec], (cap - used) / tok_b, R)
                out = [int(dec[j]) for j in pos]
                for v in out:
                    used -= float(held[v])
                    drop_kv(v)
                    del order[v]
                    waiting.append(v)
                    preempt += 1
                dec = dec[~np.isin(dec, np.array(out, dtype=np.int64))]
                batch_full = False
                continue
            if used + growth > cap:
                victim = order.popitem()[0]
                used -= float(held[victim])
                if spent[victim]:
                    # its last token is out: the output processing of the step in flight finishes it (no recompute)
                    held[victim] = 0.0
                    finish[victim] = t
                    if first[victim] != first[victim]:
                        first[victim] = t
                    is_done[victim] = True
                    linger.remove(victim)
                    if victim in pend:
                        pend.remove(victim)
                    dec = dec[dec != victim]
                    done += 1
                    if closed and issued < N:
                        arr_l[issued] = t
                        issued += 1
                    continue
                if keep and held[victim] > 0:
                    # its blocks go to the cached pool (SequenceManager::Materialize: 'release preempted blocks ->
                    # cached'); it keeps its KV until an allocation evicts it
                    cached += float(held[victim])
                    cache[victim] = None
                else:
                    drop_kv(victim)
                if victim in pend:
                    pend.remove(victim)
                else:
                    dec = dec[dec != victim]
                waiting.appendleft(victim)
                preempt += 1
                continue
        else:
            growth = 0.0
        budget = budget0
        head_ok = False
        # admission headroom: room for every running decode's next KV block, so that a request admitted now is not
        # the victim of the next block boundary the (often lockstep) decodes cross together - an admit/preempt
        # cycle that makes no progress when the first token comes from a decode step
        room = growth
        if not reserve and n_dec_all and waiting and n_run < max_seqs and E != kv.blk:
            # (with one token per step and 1-token pages the next block is the next token: room == growth)
            room = max(growth, float(kv.vec(kvlen[dec] + kv.blk).sum() - held[dec].sum()))
        sg_room = 0.0
        if sg and waiting and n_run < max_seqs and not batch_full and adm == "output-ratio":
            sg_room = sg_ratio_room()
        if waiting and n_run < max_seqs and not (sg and batch_full):
            i = waiting[0]
            if reserve:
                head_ok = used + kv.one(pl_l[i] + ol_l[i]) <= cap
            elif i in cache:
                # a cached victim re-locks its surviving blocks (counted from the free + cached space)
                x = target[i] - kvlen[i]
                x = min(x, budget0) if chunked else x
                head_ok = x > 0 and used + room + kv.one(kvlen[i] + x) <= cap
            else:
                x = target[i] - kvlen[i]
                x = min(x, budget0) if chunked else x
                head_ok = used + room + kv.one(kvlen[i] + x) - held[i] <= cap
            if head_ok and sg:
                if adm == "output-ratio":
                    head_ok = sum(sg_extend_out(i)) < sg_room
                else:
                    head_ok = fo_admit(fo_states(order), i, 0.0)
                batch_full = not head_ok
        prefill_mode = bool(pend) or head_ok
        n_dec = n_dec_all if (mix or not prefill_mode) else 0
        budget -= n_dec * k1
        chunks: list[tuple[int, float, float]] = []
        if prefill_mode:
            # keep room for the running decodes' next tokens even when this step pauses them: a request admitted into
            # that room would be preempted by the next decode step (admit-preempt livelock)
            avail = cap - used - room
            for i in list(pend):
                if budget <= 0:
                    break
                need = target[i] - kvlen[i]
                x = min(need, budget) if chunked else need
                if not chunked and chunks and x > budget:
                    break
                if not reserve:
                    add = kv.one(kvlen[i] + x) - held[i]
                    if add > avail:
                        break
                    avail -= add
                chunks.append((i, x, float(kvlen[i])))
                budget -= x
            pass_tokens = float(sum(c[1] for c in chunks))   # prompt tokens this pass allocates (SGLang cur_rem)
            sg_room -= pass_tokens
            fo_state = fo_states(order) if adm == "finish-order" and waiting and not batch_full else None
            while waiting and len(order) < max_seqs and budget > 0 and not (sg and batch_full):
                i = waiting[0]
                need = target[i] - kvlen[i]
                x = min(need, budget) if chunked else need
                if not chunked and chunks and x > budget:
                    break
                relock = bool(cache) and i in cache
                if relock and x <= 0:
                    break  # a decode-state victim resumes at the top of the loop
                add = kv.one(pl_l[i] + ol_l[i]) if reserve else kv.one(kvlen[i] + x) - (0.0 if relock else held[i])
                if add > avail:
                    break
                if sg:
                    ext, outc = sg_extend_out(i)
                    ok = ext + outc < sg_room if adm == "output-ratio" else fo_admit(fo_state, i, pass_tokens)
                    if not ok:
                        batch_full = True
                        break
                    sg_room -= ext + outc
                    pass_tokens += x
                avail -= add
                if reserve:
                    held[i] = add
                    used += add
                if relock:
                    del cache[i]
                    cached -= float(held[i])
                    used += float(held[i])
                waiting.popleft()
                order[i] = None
                pend.append(i)
                chunks.append((i, x, float(kvlen[i])))
                budget -= x
        if prefill_mode and not chunks and not n_dec and not reserve:
            if n_dec_all:
                # the pending prompts cannot take their next chunk (no KV room): run the decodes instead, whose
                # finishing frees KV (SGLang runs the decode batch when no prefill batch can be formed; a scheduler
                # that kept pausing them here would never progress)
                n_dec = n_dec_all
            elif pend and not keep:
                # no decode to free KV and a partly prefilled prompt cannot continue: preempt the youngest pending
                # request (its KV freed, its prompt recomputed when it is admitted again), as vLLM's scheduler preempts
                # the lowest-priority running request when an allocation fails
                victim = pend.pop()
                del order[victim]
                used -= float(held[victim])
                drop_kv(victim)
                waiting.appendleft(victim)
                preempt += 1
                continue
        n_pre = 0.0
        for c in chunks:
            n_pre += c[1]
        tokens = int(n_dec * k1 + n_pre)
        if tokens == 0:
            if nxt < issued:
                t = t_cut = max(t, arr_l[nxt])
                continue
            raise SimInfeasible("the scheduler cannot make progress: a queued request never fits in the KV cache")
        dec_now = dec if n_dec else dec[:0]
        ctx_sum = float(np.sum(sm.eff_context(kvlen[dec_now]))) if n_dec else 0.0
        n_run = len(order)
        n_wait = len(waiting)
        # sequences whose token this step streams (a spent request's extra step emits nothing)
        n_emit = float(n_dec - int(np.count_nonzero(spent[dec_now]))) if lag and n_dec else float(n_dec)
        if not chunks:
            # ------------------------------------------------ a run of identical decode-only steps, one vector
            rem = ol[dec_now] - gen[dec_now]
            kmax = max(1, min(int(math.ceil(float(rem.min()) / E - 1e-9)), _MAX_WINDOW))
            if olag and not waiting and nxt < issued and arr_l[nxt] <= t + 1e-12:
                kmax = 1  # an arrival waits out this one step (overlap scheduler) and joins the next: no longer run
            if not reserve and kmax > 1:
                base = kvlen[dec_now]
                if used - float(held[dec_now].sum()) + float(kv.vec(base + kmax * E).sum()) > cap:
                    lo, hi = 1, kmax
                    rest = used - float(held[dec_now].sum())
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        if rest + float(kv.vec(base + mid * E).sum()) <= cap:
                            lo = mid
                        else:
                            hi = mid
                    kmax = lo
            j = np.arange(kmax, dtype=float)
            if sm.n_w:
                ctx = np.sum(sm.eff_context(kvlen[dec_now][None, :] + E * j[:, None]), axis=1)
            else:
                ctx = ctx_sum + n_dec * E * j
            durs = sm.decode_run(n_dec * k1, n_dec, ctx)
            if spec_extra:
                durs = durs + spec_extra * sm.decode_run(n_dec, n_dec, ctx * 0.0)
            k = kmax
            if not waiting and nxt < issued:
                cum = np.cumsum(durs)
                # stop after the step in which the next request arrives (with the overlap scheduler, after the step
                # that follows it: the batch formed while the arrival's step ran cannot hold it)
                k = max(1, min(k, int(np.searchsorted(cum, arr_l[nxt] - t, side="left")) + (2 if olag else 1)))
                dt = float(cum[k - 1])
            else:
                dt = float(durs.sum()) if k == kmax else float(durs[:k].sum())
            last_start = t + dt - float(durs[k - 1])
            gaps = durs[:k] / E
            if stall:
                gaps = gaps.copy()
                gaps[0] += stall
                stall = 0.0
            itl_v.append(gaps)
            itl_w.append(np.full(k, n_emit * E))
            step_gen = np.minimum(k * E, rem)
            steps += k
            if sg:
                ratio = max(ratio - ntr_decay * k, ntr_min)
            dur = dt
            pre_part = 0.0
        else:
            last_start = t
            dur, dense, attn = sm.time(tokens, n_dec + len(chunks), ctx_sum, 0.0, n_pre)
            pairs = 0.0
            for c in chunks:
                pairs += float(sm.pairs(c[2], c[1]))
            rate = sm._parts_at(tokens)[4]
            pre_attn = pairs * sm.attn_flops_per_pair / rate
            dur += pre_attn
            if n_dec and spec_extra:
                dur += spec_extra * sm.time(n_dec, n_dec, 0.0, 0.0)[0]
            pre_part = dense * (n_pre / tokens) + pre_attn
            steps += 1
            computed += int(n_pre)
            if sg and n_dec:
                ratio = max(ratio - ntr_decay, ntr_min)
            if n_dec_all and not n_dec:
                stall += dur
            if n_dec:
                itl_v.append(np.array([dur / E + stall]))
                stall = 0.0
                itl_w.append(np.array([n_emit * E]))
                step_gen = np.minimum(E, ol[dec_now] - gen[dec_now])
        area_run += n_run * dur
        area_queue += n_wait * dur
        fin: list[int] = []
        if lag and (late or linger):
            # the previous step's outputs, processed during this run's first step, reach the client when it ends; a
            # spent request runs in that step only (its zero remaining tokens make the run one step long)
            d0 = float(durs[0]) if not chunks else dur
            for i in late:
                if first[i] != first[i]:
                    first[i] = t + d0
            late = []
            in_late[:] = False
            fin.extend(linger)
            linger = []
        if ftd and n_dec:
            # requests whose prompt finished wait for this decode step's first token (end of its first step)
            fresh = dec_now[np.isnan(first[dec_now]) & ~in_late[dec_now]]
            if fresh.size:
                if not lag:
                    first[fresh] = t + (float(durs[0]) if not chunks else dur)
                elif not chunks and k > 1:
                    first[fresh] = t + float(durs[0] + durs[1])  # streamed at the end of the run's second step
                else:
                    late.extend(fresh.tolist())
                    in_late[fresh] = True
        t += dur
        t_cut = last_start
        busy += dur
        pre_s += min(pre_part, dur)
        dec_s += max(dur - pre_part, 0.0)
        if n_dec:
            gen[dec_now] += step_gen
            kvlen[dec_now] += step_gen
            if not reserve:
                nh = kv.vec(kvlen[dec_now])
                used += float(nh.sum() - held[dec_now].sum())
                held[dec_now] = nh
            fmask = gen[dec_now] >= ol[dec_now] - 1e-9
            if lag:
                fmask &= ~spent[dec_now]
            if fmask.any():
                if lag:
                    spent[dec_now[fmask]] = True
                    linger.extend(dec_now[fmask].tolist())
                else:
                    fin.extend(dec_now[fmask].tolist())
        joined: list[int] = []
        for i, x, _ in chunks:
            kvlen[i] += x
            if not reserve:
                h = kv.one(kvlen[i])
                used += h - held[i]
                held[i] = h
            if kvlen[i] >= target[i] - 1e-9:
                pend.remove(i)
                if ftd:
                    joined.append(i)  # the next decode step processes the last prompt token and samples
                    continue
                # the last prompt chunk samples the next token (the first one, or the next after a recompute)
                if first[i] != first[i]:
                    if lag:
                        if not in_late[i]:
                            late.append(i)
                            in_late[i] = True
                    else:
                        first[i] = t
                gen[i] += 1.0
                if gen[i] >= ol_l[i] - 1e-9:
                    if lag:
                        spent[i] = True
                        linger.append(i)  # scheduled as a decode once more before its stop is seen
                        joined.append(i)
                    else:
                        fin.append(i)
                else:
                    joined.append(i)
        if cache and used + cached > cap:
            # this step's allocations took the free space first, then cached victims' blocks (never those of the
            # requests above: a cached victim is waiting, not running)
            evict(used + cached - cap)
        if fin:
            batch_full = False
            fin_set = set(fin)
            for i in fin_set:
                finish[i] = t
                used -= float(held[i])
                held[i] = 0.0
                order.pop(i, None)
            is_done[fin] = True
            dec = dec[~is_done[dec]] if dec.size else dec
            done += len(fin_set)
            if closed:
                for _ in range(len(fin_set)):
                    if issued < N:
                        arr_l[issued] = t
                        issued += 1
        if joined:
            dec = np.concatenate([dec, np.array(joined, dtype=np.int64)])
    return _result(wl, np.array(arr_l), first, np.array(finish), busy, pre_s, dec_s, computed, preempt,
                   steps, itl_v, itl_w, area_run, area_queue)


def _simulate_static(sm: StepModel, sched: Scheduler, wl: Workload, cap: float, kvb) -> SimResult:
    N = wl.n
    pl = wl.prompt_len.astype(np.int64)
    ol = wl.output_len.astype(np.int64)
    closed = wl.arrival_s is None
    arr = np.full(N, np.inf) if closed else wl.arrival_s.astype(float).copy()
    issued = N
    if closed:
        issued = min(N, int(wl.concurrency))
        arr[:issued] = 0.0
    first = np.full(N, np.nan)
    finish = np.full(N, np.nan)
    waiting: deque[int] = deque()
    nxt = 0
    t = 0.0
    done = 0
    busy = pre_s = dec_s = 0.0
    steps = 0
    computed = 0
    itl_v: list[np.ndarray] = []
    itl_w: list[np.ndarray] = []
    area_run = area_queue = 0.0
    E = float(sched.spec_tokens_per_step)
    k1 = sched.spec_tokens + 1
    spec_extra = sched.spec_tokens * sched.spec_draft_cost_ratio
    while done < N:
        while nxt < issued and arr[nxt] <= t + 1e-12:
            waiting.append(nxt)
            nxt += 1
        if not waiting:
            t = float(arr[nxt])
            continue
        batch: list[int] = []
        while waiting and len(batch) < sched.max_num_seqs:
            cand = batch + [waiting[0]]
            smax = int(pl[cand].max())
            nmax = int(ol[cand].max())
            if len(cand) * float(kvb(smax + nmax)) > cap:
                break
            batch.append(waiting.popleft())
        b = np.array(batch, dtype=np.int64)
        B = len(batch)
        smax, nmax = int(pl[b].max()), int(ol[b].max())
        pf = sm.prefill_batch_s(B, smax)
        t0 = t
        t += pf
        pre_s += pf
        computed += B * smax
        first[b] = t
        if nmax > 1:
            # decode steps after the prefill's token; with speculative decoding each (verify) step emits E tokens
            # per sequence on average, so a sequence of n tokens needs ceil((n - 1) / E) of them
            need = np.where(ol[b] > 1, np.ceil((ol[b] - 1) / E - 1e-9), 0).astype(np.int64)
            m_steps = int(need.max())
            j = np.arange(1, m_steps + 1, dtype=float)
            ctx = B * sm.eff_context(smax + E * j)
            durs = sm.decode_run(B * k1, B, ctx)
            if spec_extra:
                durs = durs + spec_extra * sm.decode_run(B, B, ctx * 0.0)
            cum = np.cumsum(durs)
            steps += m_steps
            itl_v.append(durs / E)
            active = np.array([(need > jj).sum() for jj in range(m_steps)], dtype=float) * E
            itl_w.append(active)
            ends = np.where(need > 0, t + cum[np.maximum(need - 1, 0)], t)
            dec_s += float(cum[-1])
            t += float(cum[-1])
        else:
            ends = np.full(B, t)
        steps += 1
        finish[b] = ends
        busy += t - t0
        area_run += B * (t - t0)
        area_queue += len(waiting) * (t - t0)
        done += B
        if closed:
            for e in np.sort(ends):
                if issued < N:
                    arr[issued] = float(e)
                    issued += 1
    return _result(wl, arr, first, finish, busy, pre_s, dec_s, computed, 0, steps, itl_v, itl_w, area_run, area_queue)


def _result(wl: Workload, arr, first, finish, busy, pre_s, dec_s, computed, preempt, steps, itl_v, itl_w,
            area_run, area_queue) -> SimResult:
    N = wl.n
    ok = np.isfinite(finish)
    start = float(np.min(arr[ok])) if ok.any() else 0.0
    end = float(np.max(finish[ok])) if ok.any() else 0.0
    duration = max(end - start, 1e-12)
    ttft = first - arr
    e2e = finish - arr
    ol = wl.output_len.astype(float)
    tpot = np.where(ol > 1, (finish - first) / np.maximum(ol - 1.0, 1.0), np.nan)
    itl = np.concatenate(itl_v) if itl_v else np.zeros(0)
    w = np.concatenate(itl_w) if itl_w else np.zeros(0)
    return SimResult(N, int(ok.sum()), duration, busy, pre_s, dec_s, int(wl.prompt_len[ok].sum()),
                     int(wl.output_len[ok].sum()), int(computed), int(preempt), int(steps), ttft[ok], e2e[ok],
                     tpot[ok], itl, w, area_run / duration, area_queue / duration)


# --------------------------------------------------------------------------- cost per token


@dataclass(frozen=True)
class TokenCost:
    """One definition of $/token for every command:
    cost = price * gpus * wall-clock hours of the run (idle time included: the GPUs are rented anyway);
    input tokens pay the share of busy GPU time spent on prompt work, output tokens the rest:
      usd_per_1m_input  = cost * prefill_s / busy_s / input_tokens * 1e6
      usd_per_1m_output = cost * decode_s  / busy_s / output_tokens * 1e6
    A step that mixes prompt chunks and decodes splits its weight/communication time by token count and
    charges each attention term to the tokens that cause it."""

    price_usd_per_gpu_hour: float
    gpus: int
    usd_per_hour: float
    usd_per_1m_input_tokens: float
    usd_per_1m_output_tokens: float
    usd_per_1m_tokens: float
    input_share_of_gpu_time: float
    rule: str = ("$/h of the replica x run hours (idle included) split by the share of busy GPU time spent on "
                 "prompt (input) vs decode (output) work, divided by the tokens of each kind")

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def token_cost(price_usd_per_gpu_hour: float, gpus: int, duration_s: float, busy_s: float, prefill_s: float,
               input_tokens: float, output_tokens: float) -> TokenCost:
    usd_h = price_usd_per_gpu_hour * gpus
    cost = usd_h * duration_s / 3600.0
    share = prefill_s / busy_s if busy_s > 0 else 0.0
    usd_in = cost * share / max(input_tokens, 1e-9) * 1e6 if input_tokens > 0 else 0.0
    usd_out = cost * (1.0 - share) / max(output_tokens, 1e-9) * 1e6 if output_tokens > 0 else 0.0
    usd_all = cost / max(input_tokens + output_tokens, 1e-9) * 1e6
    return TokenCost(price_usd_per_gpu_hour, gpus, usd_h, usd_in, usd_out, usd_all, share)


def sim_token_cost(res: SimResult, price_usd_per_gpu_hour: float, gpus: int) -> TokenCost:
    return token_cost(price_usd_per_gpu_hour, gpus, res.duration_s, res.busy_s, res.prefill_gpu_s,
                      res.input_tokens, res.output_tokens)


def run_load(model: ModelArch, gpu: GpuSpec, setup: ServeSetup, knobs: ServingKnobs, engine, workload: Workload,
             batch: int | None = None) -> SimResult:
    """Convenience: scheduler from the engine profile + knobs, then simulate."""
    sched = Scheduler.from_engine(engine, knobs, batch)
    return simulate(model, gpu, setup, knobs, sched, workload)


__all__ = ["Workload", "make_workload", "sample_lengths", "Scheduler", "StepModel", "SimResult", "SimInfeasible",
           "simulate", "finish_order_admits", "sglang_retract", "run_load", "TokenCost", "token_cost", "sim_token_cost",
           "kv_capacity_bytes", "PERCENTILES"]
_unused = (Mapping, WeightDtype, _allreduce_s, _p2p_s)


# --------------------------------------------------------------------------- replica sizing for SLOs


@dataclass(frozen=True)
class SloTargets:
    ttft_p95_s: float | None = None
    tpot_p95_s: float | None = None
    ttft_p50_s: float | None = None
    tpot_p50_s: float | None = None

    def met(self, res: SimResult) -> tuple[bool, str]:
        checks = (("ttft", 95, self.ttft_p95_s), ("tpot", 95, self.tpot_p95_s),
                  ("ttft", 50, self.ttft_p50_s), ("tpot", 50, self.tpot_p50_s))
        for what, q, limit in checks:
            if limit is not None and res.pct(what, q) > limit:
                return False, f"latency ({what} p{q})"
        return True, ""


@dataclass(frozen=True)
class ReplicaSizing:
    feasible: bool
    reason: str
    binding: str
    max_rps_per_replica: float
    saturation_rps: float
    replicas: int
    operating_rps_per_replica: float
    result: SimResult | None


def _lengths_like(prompt, output, n: int, seed: int):
    rng = np.random.default_rng(seed + 7)
    p = sample_lengths(prompt, n, rng) if isinstance(prompt, LengthDist) else np.resize(np.asarray(prompt), n)
    o = sample_lengths(output, n, rng) if isinstance(output, LengthDist) else np.resize(np.asarray(output), n)
    return p, o


def size_replicas(model: ModelArch, gpu: GpuSpec, setup: ServeSetup, knobs: ServingKnobs, sched: Scheduler,
                  prompt, output, rps: float, targets: SloTargets, n_requests: int = 800, seed: int = 0,
                  max_utilization: float = 0.95) -> ReplicaSizing:
    """Largest Poisson request rate one replica carries within the targets (bisection on simulated runs with
    common random numbers), then replicas = ceil(rps / that rate) and a final run at rps / replicas.
    A rate above `max_utilization` of the saturation throughput (closed loop at max_num_seqs) is never used:
    at 100 % the queue grows without bound whatever the finite run shows."""
    p, o = _lengths_like(prompt, output, n_requests, seed)
    sm = StepModel(model, gpu, setup, knobs, sched.token_budget + sched.max_num_seqs * (sched.spec_tokens + 1))
    unit = poisson_arrivals(n_requests, 1.0, seed)

    def run_rate(r: float) -> SimResult:
        return simulate(model, gpu, setup, knobs, sched, Workload(p, o, unit / r, None, r), sm)

    sat = simulate(model, gpu, setup, knobs, sched,
                   Workload(p, o, None, min(sched.max_num_seqs, n_requests), None), sm).request_throughput_rps
    hi = max_utilization * sat
    lo = hi / 1000.0
    res_lo = run_rate(lo)
    ok, why = targets.met(res_lo)
    if not ok:
        return ReplicaSizing(False, f"even an idle replica misses the target: {why.split('(')[-1].rstrip(')')} "
                             f"{_fmt_pct(res_lo, why)}", why, 0.0, sat, 0, 0.0, None)
    res_hi = run_rate(hi)
    if targets.met(res_hi)[0]:
        r_max, binding = hi, "throughput (replica saturated)"
    else:
        binding = targets.met(res_hi)[1]
        for _ in range(7):
            mid = math.sqrt(lo * hi)
            if targets.met(run_rate(mid))[0]:
                lo = mid
            else:
                hi = mid
        r_max = lo
    replicas = max(1, math.ceil(rps / r_max - 1e-9))
    op = rps / replicas
    final = run_rate(op)
    if replicas == 1 and rps < 0.5 * r_max:
        binding = "minimum (one replica is more than enough)"
    return ReplicaSizing(True, "", binding, r_max, sat, replicas, op, final)


def _fmt_pct(res: SimResult, why: str) -> str:
    what = "ttft" if "ttft" in why else "tpot"
    q = 95 if "p95" in why else 50
    return f"{res.pct(what, q) * 1e3:,.1f} ms"
