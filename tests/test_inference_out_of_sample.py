"""Out-of-sample check of the inference model (core/inference.py) against published runs from serving stacks
that are NOT in the development set (which is mostly TensorRT-LLM tables): llama.cpp, vLLM, LMDeploy
(TurboMind). (A Neural Magic nm-vllm nightly-benchmark point was removed on 2026-12-06: nightly benchmark
results of vLLM are reserved for independent checks.)

Every point quotes its source and states the setup the source states; nothing is fitted to these points.
Each is predicted with `estimate_inference` and the catalog knobs (catalog/data/inference.yaml), and the
|error| must stay within TOLERANCE. Points the model misses are xfail with a physical diagnosis, and
`test_known_misses_keep_their_diagnosed_direction` checks that each miss is still on the diagnosed side
(so a change that "fixes" one for the wrong reason is noticed).

Conventions used to turn a source's setup into a ServeSetup (the same as validate/inference_points.py):
- a fixed number of concurrent requests B (LMDeploy `batch`, vLLM `--max-concurrency`, "50 concurrent
  requests") -> continuous batching with batch=B; an offline run with all prompts queued -> batch=None
  (memory-limited, capped at the engine's max_num_seqs);
- llama.cpp `tg128` / micro-batch 1 -> decode at batch 1, tokens/s = 1/TPOT;
- ggml Q8_0 / Q4_0 store one fp16 scale per block of 32 weights: 8.5 / 4.5 bits per weight. Q4_0 maps to
  int4 with quant_group_size=64 (4 + 32/64 = 4.5 bits, the same bytes); Q8_0 maps to int8 (8 bits, 6 % fewer
  bytes than 8.5). The model keeps embeddings/LM head 16-bit (llama.cpp quantises them too): a few % more bytes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import pytest

from sizeup.catalog import load_catalog
from sizeup.core.inference import KvDtype, ServeSetup, WeightDtype, estimate_inference
from sizeup.catalog.knobs import load_serving_knobs

TOLERANCE = 0.30  # |predicted - measured| / measured


@dataclass(frozen=True)
class Point:
    id: str
    source: str          # where the number is published
    quote: str           # the row / sentence, as published
    model: str           # catalog model id
    gpu: str             # catalog GPU name
    quantity: str        # "output_tok_s" | "decode_tok_s" | "tpot_s" | "e2e_s"
    measured: float
    setup: dict          # ServeSetup fields
    knobs: dict = field(default_factory=dict)  # ServingKnobs overrides stated by the source
    engine: tuple = ()   # (engine, release) the source states: that release line's catalog profile is used
    xfail: str = ""      # diagnosis when the model misses
    miss_sign: int = 0   # +1: over-predicts (predicted > measured), -1: under-predicts


LMDEPLOY = ("InternLM/lmdeploy docs/en/benchmark/a100_fp16.md (lmdeploy v0.1.0a1, TurboMind, A100-80G, CUDA 11.8), "
            "'Static Inference Benchmark' table")

POINTS: tuple[Point, ...] = (
    # ---------------------------------------------------------------- llama.cpp (CUDA backend, batch 1)
    # ggml-org/llama.cpp PR #4766 'llama : ggml-backend integration', comment by ggerganov 2024-01-10,
    # llama-bench on 'NVIDIA GeForce RTX 4090', codellama-7b (Llama-2-7B architecture), ngl 99.
    Point("llamacpp-4090-llama7b-f16-tg128", "ggml-org/llama.cpp PR #4766 (RTX 4090, llama-bench)",
          "| llama 7B F16 | 12.55 GiB | 6.74 B | CUDA | 99 | tg 128 | 61.03 ± 0.07 |",
          "llama-2-7b", "rtx 4090", "decode_tok_s", 61.03,
          dict(prompt_len=1, output_len=128, batch=1, weights=WeightDtype.FP16, kv_dtype=KvDtype.FP16)),
    Point("llamacpp-4090-llama7b-q8_0-tg128", "ggml-org/llama.cpp PR #4766 (RTX 4090, llama-bench)",
          "| llama 7B Q8_0 | 6.67 GiB | 6.74 B | CUDA | 99 | tg 128 | 98.13 ± 0.07 |",
          "llama-2-7b", "rtx 4090", "decode_tok_s", 98.13,
          dict(prompt_len=1, output_len=128, batch=1, weights=WeightDtype.INT8, kv_dtype=KvDtype.FP16)),
    # ggml-org/llama.cpp PR #15802 'CUDA: fastdiv, launch bounds for mmvq + q8_1 quant' (JohannesGaessler):
    # micro-batch size 1 over a 512-token prompt = one token per forward pass, i.e. batch-1 decoding.
    Point("llamacpp-3090-llama8b-q4_0-ub1", "ggml-org/llama.cpp PR #15802 (RTX 3090)",
          "| RTX 3090 | llama 8B Q4_0 | Yes | 1 | pp512 | 155.02 | 156.56 | 1.01 |",
          "llama-3-8b", "rtx 3090", "decode_tok_s", 155.02,
          dict(prompt_len=1, output_len=512, batch=1, weights=WeightDtype.INT4, kv_dtype=KvDtype.FP16),
          knobs=dict(quant_group_size=64)),
    # ---------------------------------------------------------------- vLLM
    # johnmusgrave.com 'vLLM throughput-latency sweep on NVIDIA A100': A100 40GB, Llama-3.1-8B-Instruct BF16,
    # vLLM 0.23.0 defaults, random 1024-token input / 128-token output, --ignore-eos, --max-concurrency 1.
    Point("vllm-a100-40gb-llama3.1-8b-c1", "johnmusgrave.com/p/vllm-throughput-latency-sweep-on (vLLM 0.23.0)",
          "On a single NVIDIA A100 40GB, decode at one request per time runs at about 75 tokens/sec",
          "llama-3.1-8b", "a100-40gb-sxm", "tpot_s", 1.0 / 75.0,
          dict(prompt_len=1024, output_len=128, batch=1)),
    # databasemart.com/blog/vllm-gpu-benchmark-a40: A40 48GB, vLLM, Llama-3.1-8B-Instruct fp16, 'Input length:
    # 100 tokens', 'Output length: 600 tokens' (max; 'Total Generated Tokens 22170' over 50 requests = 443 mean),
    # 'Scenario 1: 50 concurrent requests'.
    Point("vllm-a40-llama3.1-8b-c50-tpot", "databasemart.com/blog/vllm-gpu-benchmark-a40 (Scenario 1)",
          "Median TPOT(ms) | 35.96 (meta-llama/Llama-3.1-8B-Instruct, 50 requests, 100 in / 600 out)",
          "llama-3.1-8b", "a40", "tpot_s", 35.96e-3,
          dict(prompt_len=100, output_len=443, batch=50)),
    # vLLM (2023), sfc-gh-zhwang/llm_benchmark README: 'llm_benchmark on llama2-70B Run on A100(40GiB)x8, with
    # tensor para = 8. batch_size: 32, input_len: 1, output_len: 2048 ... vLLM 133.70 s' (static batch).
    Point("vllm2023-8xa100-40gb-llama2-70b-b32-1-2048", "github.com/sfc-gh-zhwang/llm_benchmark README",
          "batch_size: 32, input_len: 1, output_len: 2048 ... vLLM 133.70 s (A100(40GiB)x8, tensor para = 8)",
          "llama-2-70b", "a100-40gb-sxm", "e2e_s", 133.70,
          dict(prompt_len=1, output_len=2048, batch=32, tp=8, static=True),
          xfail=("launch/host-bound: 133.7 s / 2048 steps = 65 ms per step vs a 17.5 GB/GPU weight read of "
                 "~14 ms; 2023 vLLM ran eager (CUDA graphs arrived in v0.2.x) with Ray workers and Python "
                 "per-layer dispatch over 80 layers x 8 ranks; the same repo's Triton/FasterTransformer row "
                 "(70.19 s) is also 2x the roofline. The model's 2 ms/step host overhead is for CUDA-graph engines."),
          miss_sign=-1),
    # vllm-project/vllm PR #2192 'Custom all reduce kernels' (hanzhi713, 2023-12-19): 'python
    # benchmarks/benchmark_latency.py --model NAME -tp TP --input-len 256 --output-len 256 --batch-size BS'
    # = one static batch of BS prompts, latency of the whole batch. 'L after' = with the custom all-reduce.
    Point("vllm2023-a100-llama-33b-tp2-bs64-256-256", "vllm-project/vllm PR #2192 (A100-80G, custom all-reduce)",
          "| Llama 33B | A100-80G | 2 | 64 | 15.88 | 14.38 | 75739 | 74741 |",
          "llama-33b", "a100-80gb-sxm", "e2e_s", 14.38,
          dict(prompt_len=256, output_len=256, batch=64, tp=2, static=True), engine=("vllm", "v0.2.6")),
    Point("vllm2023-a100-llama2-70b-tp4-bs64-256-256", "vllm-project/vllm PR #2192 (A100-80G, custom all-reduce)",
          "| Llama 70B | A100-80G | 4 | 64 | 16.37 | 14.57 | 76723 | 75717 |",
          "llama-2-70b", "a100-80gb-sxm", "e2e_s", 14.57,
          dict(prompt_len=256, output_len=256, batch=64, tp=4, static=True), engine=("vllm", "v0.2.6")),
    # (was a diagnosed miss, ~48 ms per decode step measured vs 26 ms predicted, put down to TP: the excess was the GQA group's K/V read once per query head by
    # vLLM's paged_attention kernel of the time (catalog engine vllm-0.2); the MHA 33B row beside it was fine)
    # ---------------------------------------------------------------- LMDeploy / TurboMind (A100-80G)
    # Table columns: batch | tp | prompt_tokens | output_tokens | throughput(out tok/s) | ...
    # 'batch' = concurrent requests (each client thread sends its next request when the previous finishes),
    # so the replica runs continuous batching at B sequences.
    Point("lmdeploy-a100-llama2-7b-b1-128-128", LMDEPLOY, "| 1 | 1 | 128 | 128 | 102.21 | (llama2-7b)",
          "llama-2-7b", "a100-80gb-sxm", "output_tok_s", 102.21, dict(prompt_len=128, output_len=128, batch=1)),
    Point("lmdeploy-a100-llama2-7b-b16-128-128", LMDEPLOY, "| 16 | 1 | 128 | 128 | 1272.47 | (llama2-7b)",
          "llama-2-7b", "a100-80gb-sxm", "output_tok_s", 1272.47, dict(prompt_len=128, output_len=128, batch=16)),
    Point("lmdeploy-a100-llama2-7b-b64-128-128", LMDEPLOY, "| 64 | 1 | 128 | 128 | 3024.07 | (llama2-7b)",
          "llama-2-7b", "a100-80gb-sxm", "output_tok_s", 3024.07, dict(prompt_len=128, output_len=128, batch=64)),
    Point("lmdeploy-a100-llama2-7b-b64-128-2048", LMDEPLOY, "| 64 | 1 | 128 | 2048 | 1852.06 | (llama2-7b)",
          "llama-2-7b", "a100-80gb-sxm", "output_tok_s", 1852.06, dict(prompt_len=128, output_len=2048, batch=64)),
    Point("lmdeploy-a100-llama2-7b-b16-2048-2048", LMDEPLOY, "| 16 | 1 | 2048 | 2048 | 601.63 | (llama2-7b)",
          "llama-2-7b", "a100-80gb-sxm", "output_tok_s", 601.63, dict(prompt_len=2048, output_len=2048, batch=16)),
    Point("lmdeploy-a100-llama2-7b-b16-2048-128", LMDEPLOY, "| 16 | 1 | 2048 | 128 | 348.87 | (llama2-7b)",
          "llama-2-7b", "a100-80gb-sxm", "output_tok_s", 348.87, dict(prompt_len=2048, output_len=128, batch=16)),
    # (was a diagnosed miss, +30 %: prefill-bound, the prompt GEMMs at the bare MAMF curve; serving GEMMs now run at
    # the calibration's in-model fraction of it, as training's do, and the row is within tolerance)
    Point("lmdeploy-a100-llama2-13b-b1-128-128", LMDEPLOY, "| 1 | 1 | 128 | 128 | 56.58 | (llama2-13b)",
          "llama-2-13b", "a100-80gb-sxm", "output_tok_s", 56.58, dict(prompt_len=128, output_len=128, batch=1)),
    Point("lmdeploy-a100-llama2-13b-b64-128-128", LMDEPLOY, "| 64 | 1 | 128 | 128 | 2033.22 | (llama2-13b)",
          "llama-2-13b", "a100-80gb-sxm", "output_tok_s", 2033.22, dict(prompt_len=128, output_len=128, batch=64)),
    Point("lmdeploy-a100-llama2-13b-b16-128-2048", LMDEPLOY, "| 16 | 1 | 128 | 2048 | 605.88 | (llama2-13b)",
          "llama-2-13b", "a100-80gb-sxm", "output_tok_s", 605.88, dict(prompt_len=128, output_len=2048, batch=16)),
    Point("lmdeploy-a100-llama2-70b-tp4-b1-128-128", LMDEPLOY, "| 1 | 4 | 128 | 128 | 33.63 | (llama2-70b)",
          "llama-2-70b", "a100-80gb-sxm", "output_tok_s", 33.63,
          dict(prompt_len=128, output_len=128, batch=1, tp=4)),
    Point("lmdeploy-a100-llama2-70b-tp4-b64-128-2048", LMDEPLOY, "| 64 | 4 | 128 | 2048 | 1391.8 | (llama2-70b)",
          "llama-2-70b", "a100-80gb-sxm", "output_tok_s", 1391.8,
          dict(prompt_len=128, output_len=2048, batch=64, tp=4)),
    # The two TP4 batch-64 rows were strict xfails until 2026-12-06 (the table's median per-token latency 43 ms vs
    # 29 ms at batch 1; the roofline added only ~8 ms for 63 more sequences: a TP-specific excess). The calibration's
    # tp_allreduce_exposed_s (40 us per all-reduce, fitted on the serving rows, whose lmdeploy family includes this
    # page's profile_generation table, so these rows are not independent of that fit) brings them to +20 / +23 %.
    Point("lmdeploy-a100-llama2-70b-tp4-b64-2048-2048", LMDEPLOY, "| 64 | 4 | 2048 | 2048 | 930.46 | (llama2-70b)",
          "llama-2-70b", "a100-80gb-sxm", "output_tok_s", 930.46,
          dict(prompt_len=2048, output_len=2048, batch=64, tp=4)),
    # LMDeploy issue #210 'performance in A10 for LLAMA2 -7B is slow': single A10, Llama-2-7b-chat, TurboMind,
    # batch 1, 20 prompt tokens, 267 generated ('# inputs torch.Size([1, 20])', '287 - 20 = 267').
    Point("lmdeploy-a10-llama2-7b-b1", "InternLM/lmdeploy issue #210 (A10)",
          "I test LMdeploy with batch size 1 equal with HF, and I found that the performance is about 27ms per token",
          "llama-2-7b", "a10", "tpot_s", 27e-3, dict(prompt_len=20, output_len=267, batch=1)),
)


@pytest.fixture(scope="module")
def env():
    cat = load_catalog()
    return cat, load_serving_knobs(cat)


def predict(point: Point, cat, knobs) -> float:
    """The point's quantity predicted by core.inference with the catalog knobs, the stated engine release's profile
    and the source's own settings."""
    from sizeup.catalog.engines import engine_profile_for_version

    model, gpu = cat.model(point.model), cat.gpu(point.gpu)
    if point.engine:
        knobs = engine_profile_for_version(*point.engine).for_gpu(gpu).knobs(knobs, model.num_layers)
    est = estimate_inference(model, gpu, ServeSetup(**point.setup), knobs.with_(**point.knobs) if point.knobs else knobs)
    return {
        "output_tok_s": est.output_tokens_per_s,
        "decode_tok_s": est.batch / est.tpot_s,
        "tpot_s": est.tpot_s,
        "e2e_s": est.e2e_latency_s,
    }[point.quantity]


def rel_error(point: Point, cat, knobs) -> float:
    return (predict(point, cat, knobs) - point.measured) / point.measured


def _param(p: Point):
    marks = [pytest.mark.xfail(reason=p.xfail, strict=True)] if p.xfail else []
    return pytest.param(p, id=p.id, marks=marks)


@pytest.mark.parametrize("point", [_param(p) for p in POINTS])
def test_published_point_within_tolerance(point: Point, env):
    cat, knobs = env
    err = rel_error(point, cat, knobs)
    assert abs(err) <= TOLERANCE, (
        f"{point.id}: predicted {predict(point, cat, knobs):.4g} vs measured {point.measured:.4g} "
        f"({err:+.1%}); source: {point.source}: {point.quote}")


def test_known_misses_keep_their_diagnosed_direction(env):
    # each xfail's diagnosis says which way the model errs; a change that flips the sign has not fixed the
    # diagnosed cause (it moved the error elsewhere)
    cat, knobs = env
    for p in POINTS:
        if p.xfail:
            assert p.miss_sign in (-1, 1), p.id
            assert rel_error(p, cat, knobs) * p.miss_sign > 0, p.id


def test_out_of_sample_median_error(env):
    # over every point, misses included: the out-of-sample median |error| stays at the dev-set level (~15 %)
    cat, knobs = env
    errors = [abs(rel_error(p, cat, knobs)) for p in POINTS]
    assert len(errors) >= 10
    assert statistics.median(errors) <= 0.20


def test_points_state_full_setups():
    # no point relies on defaults for what the source states: lengths and batch (or offline) are explicit
    for p in POINTS:
        assert {"prompt_len", "output_len"} <= set(p.setup), p.id
        assert p.source and p.quote and p.measured > 0, p.id
