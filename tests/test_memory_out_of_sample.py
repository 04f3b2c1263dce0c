"""Out-of-sample check of training memory: published peak-memory measurements that are NOT in
/work/shared/validation/published_runs_dev.yaml, each with a fully stated setup, predicted by
`sizeup.core.memory.estimate_memory` and compared within +-25 %.

Every case states: the source (quoted), what the number measures (nvidia-smi / cudaMemGetInfo = device-wide
used memory, compared with `peak_reserved_bytes`), and which kernel profile the stack runs:
  * hf-eager: Hugging Face transformers modules run eagerly (Trainer, or a plain loop on AutoModel*);
    torch.compile of an HF model does not change which tensors autograd saves under full recompute, nor the
    fp32 weight + autocast storage, so those runs are hf-eager as well.
  * fused: Megatron/TE-style fused kernels (none here).
Setups are taken as stated; the only per-source inputs are measured facts stated by the same source
(the CUDA context it printed) and the framework semantics of its PyTorch version (zero_grad keeping grads).

Sources
  [HF] huggingface/transformers docs, "Efficient Training on a Single GPU" (perf_train_gpu_one, v4.18-v4.27,
       https://huggingface.co/docs/transformers/v4.21.0/perf_train_gpu_one) and "Model training anatomy"
       (https://huggingface.co/docs/transformers/model_memory_anatomy): bert-large-uncased
       (AutoModelForSequenceClassification), 512 random sequences of length 512, Trainer defaults (fp32, AdamW,
       dropout 0.1, eager attention), memory = pynvml `info.used // 1024**2` "MB" (= MiB) after training;
       "torch.ones((1, 1)).to('cuda') ... GPU memory occupied: 1343 MB" (CUDA context + kernels).
  [LM] usamec/lowmem_finetuning README + finetune_base.py / finetune_lowmem.py (GitHub, 2025): Llama-3.2-1B /
       Llama-3.1-8B on HellaSwag, padding to max_length=160, gradient checkpointing, torch.compile,
       memory = torch.cuda.mem_get_info (total - free) / 1024**3 "GB" (= GiB).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from sizeup.catalog import load_catalog
from sizeup.catalog.overheads import load_overheads
from sizeup.core.memory import estimate_memory
from sizeup.core.types import (
    Attention, MlpKind, ModelArch, NormKind, Optimizer, PositionKind, Precision, Recompute, TrainSetup,
)

MiB = 2**20
GiB = 2**30
TOLERANCE = 0.25

# bert-large-uncased (config.json: vocab 30522, hidden 1024, 24 layers, 16 heads, intermediate 4096, gelu,
# max_position_embeddings 512, LayerNorm with bias, embedding LayerNorm); no LM head: a 2-way classifier.
BERT_LARGE = ModelArch(
    id="bert-large-uncased", name="bert-large-uncased", vocab_size=30522, hidden_size=1024, num_layers=24,
    num_heads=16, num_kv_heads=16, head_dim=64, ffn_size=4096, mlp_kind=MlpKind.GELU,
    norm_kind=NormKind.LAYERNORM, norm_bias=True, qkv_bias=True, out_bias=True, mlp_bias=True, embed_norm=True,
    position=PositionKind.LEARNED, num_position_embeddings=512, max_seq_len=512, tie_embeddings=True,
    hf_model_type="bert")


@dataclass(frozen=True)
class Case:
    id: str
    quote: str
    model: str | ModelArch
    setup: TrainSetup
    measured_bytes: float
    kernel: str = "hf-eager"
    loss: str | None = None
    cuda_context_bytes: float | None = None   # the source's own printed CUDA-context measurement, if any
    profile: str = ""
    xfail: str = ""
    extra: dict = field(default_factory=dict)


# [HF] Trainer (transformers 4.18-4.27, PyTorch 1.x): model.zero_grad() with set_to_none=False, the PyTorch 1.x
# default, keeps the fp32 gradients allocated between steps -> grads_set_to_none=False. BERT's eager attention
# stores the s x s probabilities and dropout masks (attention=math, dropout 0.1). A sequence classifier has no
# vocabulary-wide logits: loss profile "fused-linear" (no V-wide tensor kept). Trainer's default optimizer
# (adamw_hf, a per-parameter loop) has no multi-tensor temporaries (fused_optimizer=True).
_BERT = TrainSetup(seq_len=512, precision=Precision.FP32, attention=Attention.MATH, dropout=0.1,
                   grads_set_to_none=False)
_HF_PROFILE = ("hf-eager: transformers BertForSequenceClassification under Trainer (eager attention, "
               "torch.autocast for fp16)")
_GA_GC = dict(micro_batch=1, grad_accum=4, recompute=Recompute.FULL)
HF_CASES = [
    Case("hf-bert-large-bs4-fp32", "per_device_train_batch_size=4 ... GPU memory occupied: 14949 MB.",
         BERT_LARGE, _BERT.with_(micro_batch=4), 14949 * MiB),
    Case("hf-bert-large-ga4", "per_device_train_batch_size=1, gradient_accumulation_steps=4 ... "
         "GPU memory occupied: 8681 MB.", BERT_LARGE, _BERT.with_(micro_batch=1, grad_accum=4), 8681 * MiB),
    Case("hf-bert-large-ga4-gc", "... gradient_checkpointing=True ... GPU memory occupied: 6775 MB.",
         BERT_LARGE, _BERT.with_(**_GA_GC), 6775 * MiB),
    Case("hf-bert-large-bs4-fp16", "per_device_train_batch_size=4, fp16=True ... GPU memory occupied: 13939 MB.",
         BERT_LARGE, _BERT.with_(micro_batch=4, precision=Precision.FP16_MIXED), 13939 * MiB),
    Case("hf-bert-large-ga4-gc-fp16", "... gradient_checkpointing=True, fp16=True ... "
         "GPU memory occupied: 7275 MB.", BERT_LARGE, _BERT.with_(**_GA_GC, precision=Precision.FP16_MIXED),
         7275 * MiB),
    Case("hf-bert-large-bs4-adafactor", "per_device_train_batch_size=4, optim=\"adafactor\" ... "
         "GPU memory occupied: 12295 MB.", BERT_LARGE, _BERT.with_(micro_batch=4, optimizer=Optimizer.ADAFACTOR),
         12295 * MiB),
    Case("hf-bert-large-ga4-gc-fp16-adafactor", "... fp16=True, optim=\"adafactor\" ... "
         "GPU memory occupied: 4847 MB.", BERT_LARGE,
         _BERT.with_(**_GA_GC, precision=Precision.FP16_MIXED, optimizer=Optimizer.ADAFACTOR), 4847 * MiB),
    Case("hf-bert-large-bs4-adam8bit", "bnb.optim.Adam8bit ... per_device_train_batch_size=4 ... "
         "GPU memory occupied: 13085 MB.", BERT_LARGE, _BERT.with_(micro_batch=4, optimizer=Optimizer.ADAM8BIT),
         13085 * MiB),
    Case("hf-bert-large-ga4-gc-fp16-adam8bit", "... fp16=True ... optimizers=(adam_bnb_optim, None) ... "
         "GPU memory occupied: 5363 MB.", BERT_LARGE,
         _BERT.with_(**_GA_GC, precision=Precision.FP16_MIXED, optimizer=Optimizer.ADAM8BIT), 5363 * MiB),
]
HF_CASES = [replace(c, loss="fused-linear", cuda_context_bytes=1343 * MiB, profile=_HF_PROFILE) for c in HF_CASES]

# [LM] finetune_base.py: fp32 weights, torch.autocast(bf16) forward, gradient checkpointing, HF logits + CE,
# torch.optim.Adam (foreach on CUDA: +1 x params temporaries) over model.model.layers only, batch 32 (Adam) /
# 8 (Adafactor run). finetune_lowmem.py: bf16 weights, Adafactor stepped per parameter from
# register_post_accumulate_grad_hook with p.grad = None (optimizer in backward), embeddings frozen,
# cut-cross-entropy linear_cross_entropy (no V-wide logits: loss "fused-linear"), batch 8.
_LM_PROFILE = "hf-eager: transformers LlamaForCausalLM (torch.compile does not change the saved tensors under recompute)"
LM_CASES = [
    Case("lowmem-llama32-1b-fp32-adam", "| FP32 Adam | 54.2 | 29.2 GB |", "llama-3.2-1b",
         TrainSetup(micro_batch=32, seq_len=160, precision=Precision.BF16_MIXED, optimizer=Optimizer.ADAMW,
                    fused_optimizer=False, recompute=Recompute.FULL), 29.2 * GiB, profile=_LM_PROFILE),
    Case("lowmem-llama32-1b-fp32-adafactor", "| FP32 Adafactor | 54.5 | 14.4 GB | (--optimizer Adafactor "
         "--batch_size 8)", "llama-3.2-1b",
         TrainSetup(micro_batch=8, seq_len=160, precision=Precision.BF16_MIXED, optimizer=Optimizer.ADAFACTOR,
                    recompute=Recompute.FULL), 14.4 * GiB, profile=_LM_PROFILE,
         xfail="predicts 10.6 GiB (-27 %): the optimizer covers only model.model.layers, so optim.zero_grad() "
               "never frees the tied embedding's fp32 gradient (1 GiB, alive through the next forward), and "
               "the custom per-parameter Adafactor's outer(vr, vc) / update temporaries plus a caching-allocator "
               "pool reused from the bs-32 lm-eval pass are outside the model; partial trainability "
               "(frozen-from-optimizer parameters that still get gradients) is not modelled"),
    Case("lowmem-llama32-1b-bf16-adafactor-in-bwd", "| Lowmemory BF16 Adafactor | 53.6 | 3.9 GB |",
         "llama-3.2-1b",
         TrainSetup(micro_batch=8, seq_len=160, precision=Precision.BF16, optimizer=Optimizer.ADAFACTOR,
                    recompute=Recompute.FULL, optimizer_in_backward=True), 3.9 * GiB, loss="fused-linear",
         profile=_LM_PROFILE),
    Case("lowmem-llama31-8b-bf16-adafactor-in-bwd", "We can also fine-tune Llama-3.1-8B using only 18.6 GB of "
         "memory!", "llama-3.1-8b",
         TrainSetup(micro_batch=8, seq_len=160, precision=Precision.BF16, optimizer=Optimizer.ADAFACTOR,
                    recompute=Recompute.FULL, optimizer_in_backward=True), 18.6 * GiB, loss="fused-linear",
         profile=_LM_PROFILE),
]

CASES = HF_CASES + LM_CASES


def predict(case: Case) -> float:
    model = case.model if isinstance(case.model, ModelArch) else load_catalog().model(case.model)
    ov = load_overheads()
    if case.cuda_context_bytes is not None:
        ov = replace(ov, cuda_context_bytes=case.cuda_context_bytes)
    est = estimate_memory(model, case.setup, overheads=ov, kernel=case.kernel, loss=case.loss)
    assert sum(est.per_gpu.values()) == pytest.approx(est.peak_allocated_bytes)
    return est.peak_reserved_bytes


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)]
                                               if c.xfail else []) for c in CASES])
def test_peak_memory_out_of_sample(case: Case):
    predicted = predict(case)
    error = predicted / case.measured_bytes - 1.0
    assert abs(error) <= TOLERANCE, (f"{case.id}: predicted {predicted / GiB:.2f} GiB vs measured "
                                     f"{case.measured_bytes / GiB:.2f} GiB ({100 * error:+.1f} %); {case.profile}")


def test_the_techniques_move_memory_the_published_way():
    # [HF]: each technique lowers memory in the order the source reports; [LM]: fusing the optimizer step into
    # backward (with bf16 weights) is what takes Llama-3.2-1B from 14.4 to 3.9 GiB
    by_id = {c.id: predict(c) for c in CASES}
    assert by_id["hf-bert-large-bs4-fp32"] > by_id["hf-bert-large-ga4"] > by_id["hf-bert-large-ga4-gc"]
    assert by_id["hf-bert-large-bs4-fp32"] > by_id["hf-bert-large-bs4-adam8bit"] > by_id["hf-bert-large-bs4-adafactor"]
    lowmem = next(c for c in CASES if c.id == "lowmem-llama32-1b-bf16-adafactor-in-bwd")
    without = predict(replace(lowmem, setup=lowmem.setup.with_(optimizer_in_backward=False)))
    assert by_id[lowmem.id] < without
