"""From a published point's free text to sizeup's frozen inputs (ModelArch, GpuSpec, TrainSetup).

Rules (docs/methodology.md "Validation"):
- a setting the point states is used as stated (free text is parsed: "PyTorch FSDP FULL_SHARD" -> fsdp-full);
- a missing setting that only changes the result a little and has a standard default (precision
  bf16-mixed, AdamW, no ZeRO, no recompute, cp = ep = 1, grad_accum = 1) is defaulted and the
  default is listed in the row's `assumptions`;
- a missing setting the result depends on (architecture, GPU, GPU count, tensor/pipeline layout,
  micro-batch, sequence length) is inferred only when the point's own numbers fix it (dp = GPUs ->
  tp = pp = 1; micro_batch = global batch / (grad_accum x dp)), otherwise the point is skipped with the
  exact reason.
"""

from __future__ import annotations

import math
import functools
import re
from pathlib import Path
from dataclasses import dataclass, field

from sizeup.core.types import (
    ArchKind, Attention, GpuSpec, HeadKind, MlpKind, ModelArch, NormKind, Offload, Optimizer, Peft, PipelineSchedule,
    PositionKind, Precision, Recompute, Sharding, TrainSetup,
)
from sizeup.errors import SizeupError
from sizeup.validate.points import Point, Skip

# --------------------------------------------------------------------------- free text -> enums


def parse_sharding(text: str | None) -> Sharding | None:
    """'PyTorch FSDP FULL_SHARD' -> fsdp-full, 'ZeRO-1 (P_os)' -> zero1, 'baseline DP (no ZeRO)' -> none."""
    if not text:
        return None
    t = text.lower()
    if re.search(r"no\s+zero|baseline\s+dp|\bddp\b|no\s+sharding|^none$|^no$", t):
        return Sharding.NONE
    if "distributed optimizer" in t or "distopt" in t or "dist-opt" in t:
        return Sharding.MEGATRON_DISTOPT
    if "hybrid" in t or "hsdp" in t:
        return Sharding.FSDP_HYBRID
    if "shard_grad_op" in t or "grad_op" in t or "shard grad op" in t:
        return Sharding.FSDP_GRAD_OP
    m = re.search(r"zero[\s_-]*(?:stage[\s_-]*)?([0-3])", t)
    if m:
        return {"0": Sharding.NONE, "1": Sharding.ZERO1, "2": Sharding.ZERO2, "3": Sharding.ZERO3}[m.group(1)]
    if "p_os+g+p" in t:
        return Sharding.ZERO3
    if "p_os+g" in t:
        return Sharding.ZERO2
    if "p_os" in t:
        return Sharding.ZERO1
    if "full_shard" in t or "full shard" in t or "fsdp" in t or "fully sharded" in t:
        # FSDP's default strategy is FULL_SHARD (torch.distributed.fsdp docs)
        return Sharding.FSDP_FULL
    if re.search(r"\bdp\b|data parallel", t):
        return Sharding.NONE
    return None


def parse_precision(text: str | None, gpu: GpuSpec | None = None) -> Precision | None:
    """'bf16 AMP (... amp_bf16 ...)' -> bf16-mixed, 'bf16 (MP mode PURE ...)' -> bf16, 'FP8 ...' -> fp8; fp32 only
    when no 16-bit or 8-bit compute dtype is named ('bf16 with fp32 reduce' is bf16). Wording: validate/prose.py."""
    from sizeup.validate.prose import mentions

    if not text:
        return None
    m = {k for k, v in mentions(text).items() if v}
    sixteen = bool(m & {"bf16", "fp16", "mixed", "master_weights", "four_bit_base"})
    if "fp8" in m:
        return Precision.FP8
    if "fp32" in m and not sixteen:
        return Precision.FP32
    if "tf32" in m and not sixteen:
        return Precision.TF32
    mixed = bool(m & {"mixed", "master_weights"})
    if "bf16" in m:
        if "pure" in m and "mixed" not in m:
            return Precision.BF16
        if "fp16" in m and "not_stated" in m:  # 'fp16/bf16 (not stated)': a 16-bit mixed recipe either way
            return _sixteen_bit(gpu)
        return Precision.BF16_MIXED if (mixed or m & {"compute_dtype", "four_bit_base"}) else Precision.BF16
    if "fp16" in m:
        return Precision.FP16_MIXED
    if mixed:
        return _sixteen_bit(gpu)
    return None


def _sixteen_bit(gpu: GpuSpec | None) -> Precision:
    """bf16-mixed where the GPU has bf16 tensor cores, fp16-mixed on older GPUs (V100, T4)."""
    if gpu is not None and not gpu.supports_bf16:
        return Precision.FP16_MIXED
    return Precision.BF16_MIXED


def parse_recompute(text: str | None) -> tuple[Recompute | None, bool]:
    """(recompute, sequence_parallel) from e.g. 'selective activation recomputation + sequence parallelism'."""
    if not text:
        return None, False
    from sizeup.validate.prose import says

    t = text.lower()
    sp = says(t, "sequence_parallel")
    if re.fullmatch(r"\s*(none|no|false|off|disabled)\s*", t):
        return Recompute.NONE, sp
    hits = []
    for word, value in (("selective", Recompute.SELECTIVE), ("partial", Recompute.SELECTIVE),
                        ("full", Recompute.FULL), ("uniform", Recompute.FULL), ("checkpointing", Recompute.FULL),
                        ("recompute", Recompute.FULL), ("recomputation", Recompute.FULL)):
        i = t.find(word)
        if i >= 0:
            hits.append((i, value))
    if not hits:
        if re.search(r"\b(none|no|off|false|disabled)\b", t):
            return Recompute.NONE, sp
        return None, sp
    return min(hits, key=lambda x: x[0])[1], sp  # the first one named (e.g. 'selective ... vs full ...')


def parse_optimizer(*texts: str | None) -> Optimizer | None:
    """The optimizer the texts name (8-bit Adam only when 8-bit wording is there: 'bnb' alone is a library)."""
    from sizeup.validate.prose import mentions

    m = {k for k, v in mentions(" ; ".join(x for x in texts if x)).items() if v}
    for concept, value in (("adam_8bit", Optimizer.ADAM8BIT), ("lion", Optimizer.LION),
                           ("adafactor", Optimizer.ADAFACTOR), ("sgd", Optimizer.SGD), ("adam", Optimizer.ADAMW)):
        if concept in m:
            return value
    return None


# PEFT methods that train a small parameter set while every base Linear stays frozen and carries no low-rank adapter
# on its input (Peft.ADAPTER): LLaMA-Adapter (v1/v2), prefix / prompt / p-tuning, IA3, OFT / BOFT, LoHa, LoKr, VeRA,
# LN tuning, FourierFT, trainable tokens (huggingface/peft src/peft/tuners/*, Lightning-AI/lit-gpt lit_gpt/adapter*.py)
_ADAPTER_METHODS = re.compile(r"(?<![a-z])(?:llama-adapter|adapter(?: v2)?|prefix[_ -]?tuning|prompt[_ -]?tuning|"
                              r"p[_-]tuning|ia3|b?oft|loha|lokr|vera|ln[_ ]tuning|fourierft|trainable[_ ]tokens)"
                              r"(?![a-z])")


def trainable_params_stated(point: Point) -> float | None:
    """The trained parameter count a point states ('trainable parameters 1,229,760')."""
    m = re.search(r"trainable param(?:eter)?s?\s*[:=]?\s*(\d[\d,]*)", point.text())
    return float(m.group(1).replace(",", "")) if m else None


# LoRA target wording -> sizeup targets (HF module names, litgpt's to_query/to_value wording, torchtune's names)
_TARGET_WORDS = (("q", r"q_proj|q|query|wq"), ("k", r"k_proj|k|key|wk"), ("v", r"v_proj|v|value|wv"),
                 ("o", r"o_proj|o|out_proj|output_proj|wo|projection"), ("gate", r"gate_proj|w1"),
                 ("up", r"up_proj|w3"), ("down", r"down_proj|w2"), ("mlp", r"mlp"),
                 ("qkv", r"query_key_value|c_attn|qkv_proj|wqkv"))
def lora_targets_stated(text: str, model_type: str | None = None) -> tuple[str, ...] | None:
    """The LoRA targets a text names after 'on' ('on query and value', "on ['q_proj', 'v_proj']", 'on q, k, v,
    output_proj, MLP and the output layer'), or peft's defaults when the text says the defaults are used."""
    t = text.lower()
    if re.search(r"default target modules", t) and model_type:
        from sizeup.job.frameworks import peft_default_lora_targets

        default = peft_default_lora_targets(model_type)
        if default is not None:
            return default
    for clause in re.split(r";", t):
        if not re.search(r"lora", clause):
            continue
        m = re.search(r"\bon\s+(?!all\b)(.+)", clause)
        if not m:
            continue
        span = re.split(r"\(", m.group(1))[0]
        found: list[str] = []
        for name, words in _TARGET_WORDS:
            if re.search(rf"(?<![a-z0-9_])(?:{words})(?![a-z0-9])", span):
                found += ["gate", "up", "down"] if name == "mlp" else (["q", "k", "v"] if name == "qkv" else [name])
        if found:
            return tuple(x for x in ("q", "k", "v", "o", "gate", "up", "down") if x in found)
    return None


def parse_peft(point: Point, model_type: str | None = None) -> tuple[Peft, int | None, tuple[str, ...] | None]:
    """(peft, lora rank, lora targets) from the workload kind, else the first clause of `parallel.other`."""
    kind = (point.workload.kind or "").lower()
    other = (point.parallel.other or "").lower()
    head = other.split(";")[0]
    # the workload kind names the method; 'other' may mention LoRA settings of a different script
    probe = kind if re.search(r"lora|full|pretrain|fine-?tun|sft", kind) else head
    if "qlora" in probe:
        peft = Peft.QLORA
    elif "lora" in probe:
        peft = Peft.LORA
    elif _ADAPTER_METHODS.search(probe) and trainable_params_stated(point):
        return Peft.ADAPTER, None, None
    else:
        peft = Peft.NONE
    if peft is Peft.NONE:
        return peft, None, None
    text = f"{kind} {other}"
    m = re.search(r"(?:rank|\br)\s*[=:]?\s*(\d+)", text)
    rank = int(m.group(1)) if m else None
    targets = None
    if re.search(r"all[ -]linear", text):
        targets = ("q", "k", "v", "o", "gate", "up", "down")
    elif (stated := lora_targets_stated(f"{other} ; {point.text()}", model_type)) is not None:
        targets = stated
    elif "mlp" in text and re.search(r"q/v|q_proj", text):
        targets = ("q", "v", "o", "gate", "up", "down")
    return peft, rank, targets


def paged_optimizer(point: Point) -> bool:
    """bitsandbytes paged optimizers keep states in unified memory: on the GPU while they fit, paged
    to host memory under pressure (bitsandbytes docs, 'Paged optimizers')."""
    from sizeup.validate.prose import says

    return says(" ; ".join(x for x in (point.parallel.optimizer, point.parallel.precision, point.parallel.other) if x),
                "paged")


def foreach_optimizer(point: Point) -> bool:
    """The run states a non-fused multi-tensor optimizer step (torch.optim.AdamW(foreach=True), torch's default
    when fused is not asked for). Read from the run's own optimizer field only."""
    t = (point.parallel.optimizer or "").lower()
    return bool(re.search(r"foreach\s*=\s*true", t)) and not re.search(r"fused\s*=\s*true", t)


def optimizer_in_backward(point: Point) -> bool:
    """The run states the optimizer step fused into backward (torchtune `optimizer_in_bwd=True`, README
    'Fuse optimizer step into backward'). Read from the run's own setup fields only: quotes may name it for
    other rows ('LoRA and QLoRA ... do not use optimizer_in_bwd')."""
    t = " ".join(x for x in (point.parallel.optimizer, point.parallel.other) if x).lower()
    t = re.sub(r"optimi[sz]er_in_bwd\s*[=:]\s*(false|0|no)\b", "", t)
    return bool(re.search(r"optimi[sz]er_in_bwd|optimi[sz]er[- ]in[- ]backward|"
                          r"fuse[sd]? optimi[sz]er step (in)?to (the )?backward|optimi[sz]er step (fused )?in(to)? backward",
                          t))


def parse_offload(point: Point) -> tuple[Offload, Offload, bool]:
    """(optimizer offload, param offload, activation offload); 'CPUOffload=False' is not an offload."""
    t = " ".join(x for x in (point.parallel.other, point.parallel.sharding, point.workload.kind) if x).lower()
    t = re.sub(r"offload\w*\s*=\s*false", "", t)
    act = bool(re.search(r"activation\s+offload", t))
    t_wo_act = re.sub(r"activation\s+offload\w*", "", t)
    cpu = bool(re.search(r"cpu[\s_-]*offload|offload\w*\s*=\s*true|offload(ing)? to cpu", t_wo_act)) \
        or gemini_auto_placement(point)
    nvme = "nvme" in t_wo_act
    state = Offload.NVME if nvme else Offload.CPU if cpu else Offload.NONE
    params = state if (state is not Offload.NONE and re.search(r"zero-?3|fsdp|param", t_wo_act)) else Offload.NONE
    # Colossal-AI Gemini placement_policy (colossalai/zero/gemini/placement_policy.py): 'cuda' keeps every chunk on
    # the GPU; 'cpu' keeps parameter chunks and optimizer states in host memory; 'auto' moves chunks between host and
    # GPU by the memory left at run time, with the fp32 optimizer states on the host once they do not fit
    gemini = re.search(r"placement[_ ]policy\W{0,3}(cuda|cpu|auto)", t_wo_act)
    if gemini and gemini.group(1) in ("cpu", "auto") and state is Offload.NONE:
        state = params = Offload.CPU
    return state, params, act


def gemini_auto_placement(point: Point) -> bool:
    """Colossal-AI Gemini with placement_policy auto: chunks move between host and GPU as memory requires."""
    t = " ".join(x for x in (point.parallel.other, point.parallel.sharding) if x).lower()
    return bool(re.search(r"placement[_ ]policy\s*[=:]?\s*['\"]?auto", t))


@functools.lru_cache(maxsize=1)
def framework_table() -> dict:
    """validate/data/frameworks.yaml: which framework profile (catalog/data/frameworks.yaml) a point's wording names."""
    from sizeup.catalog import read_yaml

    return read_yaml(Path(__file__).parent / "data" / "frameworks.yaml")


def framework_for(point: Point) -> dict:
    """The framework entry matching the point's source (repository or title) first, then its free text;
    the default when nothing matches."""
    table = framework_table()
    sources = " ".join((s.repo or s.title or "") for s in point.source).lower()
    for text in (sources, point.text()):
        for entry in table["frameworks"]:
            if re.search(entry["match"], text):
                return entry
    return {"name": "unknown framework", "profile": None, "source": "default: the generic profile"}


def compiled(point: Point) -> bool:
    """The run states torch.compile (and no clause denies it)."""
    from sizeup.validate.prose import says

    return says(point.text(), "compile")


def transformer_engine(point: Point) -> bool:
    from sizeup.validate.prose import says

    return says(point.text(), "transformer_engine")


def infer_loss(point: Point) -> str | None:
    """Loss implementation the point states (memory of the logits/loss buffers); None = the kernel's default."""
    from sizeup.validate.prose import says

    if says(point.text(), "chunked_ce"):
        return "chunked"
    return None


def _point_kernels(point: Point, fp8: bool) -> tuple[str, str]:
    from sizeup.job.frameworks import framework_profile
    from sizeup.job.parse import kernels_for

    prof = framework_profile(framework_for(point).get("profile"))
    return kernels_for(prof, fp8, compiled(point), "te" if transformer_engine(point) else None)


def infer_kernel(point: Point) -> str:
    """Memory profile of the kernels the point's framework runs (the job parser's rule on the named profile)."""
    return _point_kernels(point, False)[1]


def infer_timing_kernel(point: Point, setup: TrainSetup | None = None) -> str:
    """Step-time kernel family: the job parser's rule (sizeup.job.parse.kernels_for) on the profile the point's
    framework names: fp8 through Transformer Engine or a stated Transformer Engine -> 'te'; torch.compile -> 'fused'."""
    return _point_kernels(point, setup is not None and setup.precision == Precision.FP8)[0]


FLASH_ATTENTION_YEAR = 2022  # Dao et al., FlashAttention, arXiv:2205.14135 (May 2022)


def source_year(point: Point) -> int | None:
    """Earliest year named in the point's source titles / commits (e.g. 'Narayanan et al. 2021', '2020-05-15')."""
    years = [int(y) for s in point.source for y in re.findall(r"\b(20[12]\d)\b", f"{s.title or ''} {s.url or ''}")]
    return min(years) if years else None


# torch SDPA's default backend on sm90/sm100 is cuDNN attention from the torch 2.11 wheels on: sdp_utils.cpp
# check_prefer_cudnn_attention() puts cudnn first when the bundled cuDNN is > 9.15 (in torch 2.10's code; 2.11's
# bundled cuDNN crosses it: huggingface/transformers PR #48163, maintainer's comment of 2026-08-31, citing
# pytorch/pytorch@70d99e99 aten/src/ATen/native/transformers/cuda/sdp_utils.cpp L78-99)
SDPA_CUDNN_TORCH = (2, 11)
_TORCH_VERSION_RE = re.compile(r"\btorch[ =v]*(\d+)\.(\d+)")


def stated_torch_version(point: Point) -> tuple[int, int] | None:
    """(major, minor) of the PyTorch version the point states ('torch 2.11.0+cu130'), in its text or sources."""
    text = point.text() + " " + " ".join(f"{s.title or ''}" for s in point.source)
    m = _TORCH_VERSION_RE.search(text.lower())
    return (int(m.group(1)), int(m.group(2))) if m else None


def attention_for(point: Point, gpu: GpuSpec) -> Attention:
    """Materialised (math) attention when the run states eager attention, predates FlashAttention, or ran on a
    GPU without bf16 tensor cores (pre-Ampere: FlashAttention-2 needs sm80); cuDNN attention when the run states
    torch SDPA (attn_implementation=sdpa) under torch >= 2.11 (SDPA_CUDNN_TORCH; the timing model reads the
    cuDNN table only on the Hopper/Blackwell GPUs torch prefers it on); otherwise flash."""
    year = source_year(point)
    from sizeup.validate.prose import says

    if says(point.text(), "eager_attention") or (year is not None and year < FLASH_ATTENTION_YEAR):
        return Attention.MATH
    if gpu is not None and not gpu.supports_bf16:
        return Attention.MATH
    torch_v = stated_torch_version(point)
    if torch_v is not None and torch_v >= SDPA_CUDNN_TORCH and re.search(r"attn_implementation\s*=\s*['\"]?sdpa",
                                                                         point.text()):
        return Attention.CUDNN
    return Attention.FLASH


# --------------------------------------------------------------------------- model


def model_for_point(point: Point, catalog) -> tuple[ModelArch, list[str]]:
    """A catalog preset matching the point's model name (when consistent with its stated dims), else
    a ModelArch built from the point's own `model` fields."""
    notes: list[str] = []
    m = point.model
    arch_text = f"{m.arch_type or ''} {m.name or ''}".lower()
    stated_kind = stated_arch_kind(point)
    preset = None
    if m.name:
        for name in _name_variants(m.name):
            try:
                preset = catalog.model(name)
                break
            except SizeupError:
                continue
    candidates = [preset] if preset is not None and _consistent(preset, point) else []
    candidates += [c for c in _token_matches(m.name, catalog) if c not in candidates and _consistent(c, point)]
    seq = seq_len_for_point(point)
    if candidates:
        variants = []
        for c in candidates:
            variants.append((c, ""))
            if seq and c.position == PositionKind.LEARNED and seq != c.num_position_embeddings:
                # benchmark configs size the learned table to the run (llm-foundry: max_seq_len = seq)
                variants.append((c.with_(num_position_embeddings=seq, max_seq_len=max(seq, c.max_seq_len)),
                                 f"learned positions sized to seq_len {seq}"))
        if m.params:
            # several presets/variants fit the stated dims: the stated parameter count decides
            from sizeup.core.params import count_params

            variants.sort(key=lambda cv: abs(count_params(cv[0]).total - m.params))
        preset, how = variants[0]
        if seq and preset.position == PositionKind.LEARNED and seq > preset.num_position_embeddings:
            preset = preset.with_(num_position_embeddings=seq, max_seq_len=max(seq, preset.max_seq_len))
            how = f"learned positions extended to seq_len {seq}"
        notes.append(f"model preset {preset.id}")
        if how:
            notes.append(how)
        if stated_kind is not None and preset.arch_kind != stated_kind:
            raise Skip(f"the point's model is {stated_kind.value} ({m.arch_type}) but preset {preset.id} is "
                       f"{preset.arch_kind.value}")
        if preset.arch_kind == ArchKind.ENCODER and re.search(r"sequence[ -]classification", arch_text):
            # AutoModelForSequenceClassification: pooler + Linear(h, num_labels), num_labels 2 unless the config
            # says otherwise (transformers PretrainedConfig num_labels default 2; modeling_bert.py)
            preset = preset.with_(head=HeadKind.CLASSIFIER, num_labels=2)
            notes.append("sequence-classification head: pooler + classifier over 2 labels (transformers default "
                         "num_labels; the point does not state it)")
        return preset, notes
    if stated_kind is not None and stated_kind != ArchKind.DECODER:
        raise Skip(f"{m.arch_type}: no {stated_kind.value} preset matches {m.name!r} (an encoder or encoder-decoder "
                   "model is built from a preset or a config.json, not from the point's fields)")
    if re.search(r"\bmoe\b|mixture", arch_text):
        raise Skip("MoE model without expert count/size in the point and no matching preset")
    missing = [k for k in ("layers", "hidden", "heads") if getattr(m, k) is None]
    if m.vocab is None:
        missing.append("vocab")
    if missing:
        what = "no preset matches the model name" if preset is None else f"preset {preset.id} disagrees with stated dims"
        raise Skip(f"architecture incomplete ({', '.join(missing)} unknown) and {what} {m.name!r}")
    return arch_from_fields(point), notes + ["architecture built from the point's model fields"]


def stated_arch_kind(point: Point) -> ArchKind | None:
    """The architecture kind a point's `arch_type` names ('encoder-decoder T5', 'encoder-only'); None when silent."""
    t = (point.model.arch_type or "").lower()
    if re.search(r"encoder[ -]?decoder|seq2seq|sequence-to-sequence", t):
        return ArchKind.ENCODER_DECODER
    if re.search(r"encoder", t):
        return ArchKind.ENCODER
    if re.search(r"decoder", t):
        return ArchKind.DECODER
    return None


def _token_matches(name: str | None, catalog) -> list[ModelArch]:
    """Presets whose id/name/aliases contain every word of the point's model name ('MPT-30b' ->
    llmfoundry-mpt-30b, mpt-30b)."""
    if not name:
        return []
    words = [w for w in re.findall(r"[a-z]+|\d+(?:\.\d+)?[bmk]?", re.sub(r"\(.*?\)", "", name.lower())) if w]
    if not words:
        return []
    out = []
    try:
        models = catalog.models
    except AttributeError:
        return []
    for arch in models.values():
        hay = " ".join([arch.id, arch.name, *arch.aliases]).lower()
        if all(re.search(rf"(?<![a-z0-9.]){re.escape(w)}(?![a-z0-9])", hay) for w in words):
            out.append(arch)
    return out


def _name_variants(name: str) -> list[str]:
    out = [name]
    base = re.sub(r"\s*\(.*?\)\s*", " ", name).strip()  # 'Llama 3.1 8B Instruct (FP8)' -> 'Llama 3.1 8B Instruct'
    out.append(base)
    out.append(re.sub(r"\binstruct\b", "", base, flags=re.I).strip())
    if "/" in base:  # 'Llama 3/3.1 8B' -> 'Llama 3.1 8B', 'Llama 3 8B'
        m = re.match(r"(.*?)(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)(.*)", base)
        if m:
            out += [f"{m.group(1)}{m.group(3)}{m.group(4)}", f"{m.group(1)}{m.group(2)}{m.group(4)}"]
    seen, uniq = set(), []
    for v in out:
        v = re.sub(r"\s+", " ", v).strip()
        if v and v not in seen:
            seen.add(v)
            uniq.append(v)
    return uniq


def _consistent(arch: ModelArch, point: Point) -> bool:
    m = point.model
    pairs = ((m.layers, arch.num_layers), (m.hidden, arch.hidden_size), (m.heads, arch.num_heads),
             (m.kv_heads, arch.num_kv_heads), (m.ffn, arch.ffn_size if not arch.is_moe else None),
             (m.vocab, arch.vocab_size))
    for stated, ours in pairs:
        if stated is not None and ours is not None and int(stated) != int(ours):
            # padded vocabularies (50257 -> 50304) are the same model
            if ours == arch.vocab_size and stated == m.vocab and abs(stated - ours) <= 128:
                continue
            return False
    return True


def arch_from_fields(point: Point) -> ModelArch:
    """Decoder-only ModelArch from layers/hidden/heads/vocab (+ffn, kv_heads) and the arch_type words.

    Unstated details (gated MLP or not, tied embeddings) are chosen so that the parameter count is
    closest to the point's stated `params` when it gives one.
    """
    from sizeup.core.params import count_params

    m = point.model
    t = f"{m.arch_type or ''} {m.name or ''}".lower()
    h, L, a = int(m.hidden), int(m.layers), int(m.heads)
    kv = int(m.kv_heads) if m.kv_heads else (1 if "mqa" in t else a)
    if "swiglu" in t or "llama" in t:
        kinds = [MlpKind.SWIGLU]
    elif "geglu" in t:
        kinds = [MlpKind.GEGLU]
    elif re.search(r"gelu|mpt|gpt|bloom|neox|opt|pythia", t):
        kinds = [MlpKind.GELU]
    elif "relu" in t:
        kinds = [MlpKind.RELU]
    else:
        kinds = [MlpKind.GELU, MlpKind.SWIGLU]
    llama_like = bool(re.search(r"llama|rmsnorm", t))
    norm = NormKind.RMSNORM if llama_like else NormKind.LAYERNORM
    no_bias = llama_like or "no bias" in t or "mpt" in t
    if re.search(r"alibi|mpt|bloom", t):
        pos = PositionKind.ALIBI
    elif re.search(r"rope|rotary|llama|neox|pythia", t):
        pos = PositionKind.ROTARY
    elif re.search(r"gpt|opt", t):
        pos = PositionKind.LEARNED
    else:
        pos = PositionKind.ROTARY
    seq = int(m.seq_len or 2048)
    # the Hugging Face class the point names ('Hugging Face GPT2LMHeadModel'): its model_type (activation, layout)
    hf_type = "gpt2" if re.search(r"gpt2(lmheadmodel|model)\b", t) else ""
    from sizeup.validate.prose import says

    if says(t, "tied_embeddings"):
        ties = [True]
    elif m.params:
        ties = [False, True]
    else:
        ties = [bool(re.search(r"mpt|gpt|bloom", t)) and not llama_like]
    best, best_err = None, math.inf
    for kind in kinds:
        ffn = int(m.ffn) if m.ffn else _default_ffn(kind, h)
        for tie in ties:
            arch = ModelArch(
                id=re.sub(r"[^a-z0-9.]+", "-", (m.name or point.id).lower()).strip("-"),
                name=m.name or point.id, vocab_size=int(m.vocab), hidden_size=h, num_layers=L, num_heads=a,
                num_kv_heads=kv, head_dim=m.head_dim or h // a, ffn_size=ffn, mlp_kind=kind, norm_kind=norm,
                norm_bias=not no_bias, qkv_bias=not no_bias, out_bias=not no_bias, mlp_bias=not no_bias,
                position=pos, num_position_embeddings=seq if pos == PositionKind.LEARNED else 0,
                max_seq_len=max(seq, 2048), tie_embeddings=tie, parallel_block="parallel" in t,
                embed_norm="bloom" in t, source=f"published point {point.id}", hf_model_type=hf_type,
            )
            err = abs(count_params(arch).total - m.params) if m.params else 0.0
            if err < best_err:
                best, best_err = arch, err
    return best


def _default_ffn(kind: MlpKind, h: int) -> int:
    if kind.gated:
        # LLaMA: 2/3 * 4h rounded up to a multiple of 256 (Touvron 2023 §2.2; llama/model.py multiple_of=256)
        return 256 * math.ceil(8 * h / 3 / 256)
    return 4 * h  # GPT / Megatron default ffn_hidden_size = 4h (Radford 2019; Megatron arguments.py)


def stand_in_arch(params: float, name: str) -> ModelArch:
    """A GPT-shaped decoder with exactly ~`params` parameters, for model-state memory checks where the
    source gives only N (model states = bytes/param x N do not depend on the shape)."""
    h, L, V = 4096, 32, 32000
    per_layer = (params - V * h - h) / L  # tied embedding + final norm
    ffn = max(1, round((per_layer - 4 * h * h - 2 * h) / (2 * h)))
    return ModelArch(id="stand-in", name=name, vocab_size=V, hidden_size=h, num_layers=L, num_heads=32,
                     num_kv_heads=32, head_dim=128, ffn_size=ffn, mlp_kind=MlpKind.GELU,
                     norm_kind=NormKind.LAYERNORM, tie_embeddings=True, source="stand-in with the stated N")


# --------------------------------------------------------------------------- GPU


def resolve_point_gpu(point: Point, catalog) -> tuple[GpuSpec, str | None]:
    """(GPU, the assumption to show when the stated name was read through its remark, else None); Skip when the
    point's GPU does not resolve."""
    name = point.hardware.gpu
    if not name:
        raise Skip("GPU not stated")
    try:
        return catalog.gpu(name), None
    except SizeupError as exc:
        read = _gpu_read_from_remark(point, catalog, alternatives_ok=False)
        if read is not None:
            return read
        raise Skip(f"GPU {name!r} not in the catalog ({str(exc).split('.')[0]})") from None
    except AttributeError:
        raise Skip("GPU catalog not available") from None


def gpu_for_point(point: Point, catalog) -> GpuSpec:
    return resolve_point_gpu(point, catalog)[0]


def gpu_reading_note(point: Point, catalog) -> str | None:
    """The assumption to show when gpu_for_point read the stated GPU through its remark (None otherwise)."""
    try:
        return resolve_point_gpu(point, catalog)[1]
    except Skip:
        return None


def _gpu_read_from_remark(point: Point, catalog, alternatives_ok: bool) -> tuple[GpuSpec, str] | None:
    """The stated GPU name read without its parenthetical remark, its memory size taken from the remark or from
    `gpu_memory_gb` ('A100 (80GB assumed; not stated)' -> A100 80GB). Alternatives ('A800/H800 80GB') only when
    `alternatives_ok` (a memory quantity, whose bytes do not depend on which): their speeds differ."""
    name = point.hardware.gpu or ""
    mem = point.hardware.gpu_memory_gb
    bare = re.sub(r"\([^)]*\)", " ", name).strip()
    size = re.search(r"\d+\s*GB", name, re.I)
    alts = [a.strip() for a in re.split(r"/", bare) if a.strip()]
    if len(alts) > 1 and not alternatives_ok:
        return None
    for alt in alts:
        if not re.search(r"\d+\s*GB", alt, re.I):
            if size:
                alt = f"{alt} {size.group(0)}"
            elif mem:
                alt = f"{alt} {int(mem)}GB"
        try:
            gpu = catalog.gpu(alt)
        except (SizeupError, AttributeError):
            continue
        what = "(a memory quantity does not depend on which)" if len(alts) > 1 else "(the point's own remark)"
        return gpu, f"GPU {name!r} read as {gpu.id} {what}"
    return None


# a GPU-independent quantity of a point whose GPU is not stated: any catalog GPU with bf16 and flash attention
_STAND_IN_GPU = "h100-sxm"


def gpu_stand_in_for_memory(point: Point, catalog) -> tuple[GpuSpec, str] | None:
    """For a memory quantity (bytes do not depend on the GPU model beyond its dtype support), a GPU when the point's
    own does not resolve: the stated name read through its remark, the first of alternatives that share one memory
    size ('A800/H800 80GB'), or a stand-in when none is stated.
    None when the stated GPU resolves (use it) or nothing usable is stated."""
    name = point.hardware.gpu
    try:
        if name:
            catalog.gpu(name)
            return None
    except SizeupError:
        pass
    except AttributeError:
        return None
    if name:
        read = _gpu_read_from_remark(point, catalog, alternatives_ok=True)
        if read is not None or not re.search(r"\((?:[^)]*\b)?(unspecified|not stated|unknown)\)", name, re.I):
            return read
        # 'CUDA GPU (unspecified)': the point itself says no GPU model is stated
        gpu = catalog.gpu(_STAND_IN_GPU)
        return gpu, (f"GPU {name!r}: {gpu.id} stands in (a memory quantity does not depend on the GPU model)")
    gpu = catalog.gpu(_STAND_IN_GPU)
    return gpu, f"GPU not stated: {gpu.id} stands in (a memory quantity does not depend on the GPU model)"


# --------------------------------------------------------------------------- setup


@dataclass
class SetupResult:
    setup: TrainSetup
    assumptions: list[str] = field(default_factory=list)
    global_batch_exact: bool = True


def seq_len_is_a_maximum(point: Point) -> bool:
    """True when the stated length is only a cap ('Max sequence length=4096') and samples are not packed,
    so the tokens actually trained per sequence are unknown."""
    text = point.text()
    return "max sequence length" in text and "pack" not in text


def seq_len_for_point(point: Point) -> int | None:
    w = point.workload
    if w.longest_sample_tokens and seq_len_is_a_maximum(point):
        # unpacked, padded batches: the run's memory peak is the longest micro-batch's
        return int(w.longest_sample_tokens)
    for v in (point.model.seq_len, w.seq_len):
        if v:
            return int(v)
    if w.input_len and w.output_len:
        return int(w.input_len + w.output_len)
    return None


def build_setup(point: Point, model: ModelArch, gpu: GpuSpec, need_batch: bool = True,
                need_seq: bool = True) -> SetupResult:
    """TrainSetup from the point's `parallel`, `hardware` and `model.seq_len` (see module doc for the rules).

    need_batch / need_seq False: the predicted quantity does not depend on the micro-batch split / the
    sequence length (model-state memory), so a missing one is filled with a placeholder and noted."""
    par, hw = point.parallel, point.hardware
    notes: list[str] = []
    seq = seq_len_for_point(point)
    dec_seq = 0
    if model.is_encoder_decoder:
        # encoder-decoder: the input length feeds the encoder, the target length the decoder (workload input_len /
        # output_len); a single stated length is used for both, and said so
        w = point.workload
        if w.input_len and w.output_len:
            seq, dec_seq = int(w.input_len), int(w.output_len)
        elif seq:
            notes.append(f"encoder-decoder: one sequence length stated ({seq}); used for the encoder input and the "
                         "decoder target")
        elif need_seq:
            raise Skip("sequence length unknown (encoder-decoder: neither the encoder input length nor the decoder "
                       "target length is stated)")
    if not seq:
        if need_seq:
            raise Skip("sequence length unknown")
        seq = min(2048, model.max_seq_len or 2048)
        notes.append(f"seq_len unknown, {seq} used (the predicted quantity does not depend on it)")
    cp = int(par.cp or 1)
    ep = int(par.ep or 1)
    tp, pp, dp = par.tp, par.pp, par.dp
    gpus = hw.count
    if gpus is None:
        if tp and pp and dp:
            gpus = int(tp * pp * dp * cp)
        elif dp and not (tp or pp):
            raise Skip("GPU count unknown (only dp stated; tensor/pipeline degrees not given)")
        else:
            raise Skip("GPU count unknown")
    gpus = int(gpus)
    unknown = [n for n, v in (("tp", tp), ("pp", pp), ("dp", dp)) if v is None]
    known = {n: int(v) for n, v in (("tp", tp), ("pp", pp), ("dp", dp)) if v is not None}
    if gpus == 1:
        tp = pp = dp = 1
    elif len(unknown) == 1:
        rest = gpus / (math.prod(known.values()) * cp)
        if rest < 1 or abs(rest - round(rest)) > 1e-9:
            raise Skip(f"{unknown[0]} cannot be derived: {gpus} GPUs / ({' x '.join(f'{k}={v}' for k, v in known.items())} x cp={cp}) is not an integer")
        known[unknown[0]] = int(round(rest))
        if unknown[0] != "dp":
            notes.append(f"{unknown[0]}={known[unknown[0]]} derived from GPUs / (other degrees)")
        tp, pp, dp = known["tp"], known["pp"], known["dp"]
    elif len(unknown) >= 2:
        shard = (par.sharding or "").lower()
        if known.get("dp") == gpus // cp or (re.search(r"fsdp|ddp|zero|fully sharded", shard)
                                               and "tensor" not in shard and "megatron" not in shard
                                               and not known.get("tp") and not known.get("pp")):
            tp, pp, dp = 1, 1, gpus // cp
            notes.append("tp = pp = 1 (data-parallel-only framework; tensor/pipeline degrees not stated)")
        else:
            raise Skip(f"tensor/pipeline layout unknown ({', '.join(unknown)} not stated for {gpus} GPUs)")
    else:
        tp, pp, dp = int(tp), int(pp), int(dp)
        if tp * pp * dp * cp != gpus:
            notes.append(f"tp*pp*dp*cp = {tp * pp * dp * cp} differs from {gpus} GPUs; dp = GPUs/(tp*pp*cp) used")
    if gpus % (tp * pp * cp):
        raise Skip(f"{gpus} GPUs not divisible by tp*pp*cp = {tp * pp * cp}")
    dp = gpus // (tp * pp * cp)

    gbs = par.global_batch_seqs
    if gbs is None and par.global_batch_tokens:
        gbs_f = par.global_batch_tokens / seq
        if abs(gbs_f - round(gbs_f)) < 1e-6 * gbs_f:
            gbs = int(round(gbs_f))
    mb, ga = par.micro_batch, par.grad_accum
    exact = True
    if mb is None:
        if gbs and ga:
            mb_f = gbs / (ga * dp)
            if mb_f < 1 or abs(mb_f - round(mb_f)) > 1e-9:
                raise Skip(f"micro_batch unknown and global batch {gbs} / (grad_accum {ga} x dp {dp}) is not an integer")
            mb = int(round(mb_f))
            notes.append(f"micro_batch={mb} from global batch / (grad_accum x dp)")
        elif need_batch:
            what = f"global batch {gbs} seqs known but its split into micro-batch x grad-accum is not" if gbs \
                else "micro_batch and global batch unknown"
            raise Skip(what)
        elif need_seq:
            raise Skip("micro_batch unknown (activation memory depends on it)")
        else:
            mb = 1
            notes.append("micro_batch unknown, 1 used (does not affect the predicted quantity)")
    if ga is None:
        if gbs:
            ga_f = gbs / (mb * dp)
            if ga_f < 1:
                raise Skip(f"global batch {gbs} smaller than micro_batch {mb} x dp {dp}")
            ga = max(1, int(round(ga_f)))
            if abs(ga_f - ga) > 1e-9:
                exact = False
                notes.append(f"grad_accum {ga_f:.3g} rounded to {ga}")
        else:
            ga = 1
            notes.append("grad_accum not stated, 1 assumed")

    precision = parse_precision(par.precision, gpu)
    if precision is None:
        precision = _sixteen_bit(gpu)
        notes.append(f"precision not stated, {precision.value} assumed")
    elif precision in (Precision.BF16, Precision.BF16_MIXED) and not gpu.supports_bf16:
        precision = Precision.FP16_MIXED
    if precision == Precision.FP8 and gpu.peak("fp8") <= 0:
        raise Skip(f"fp8 stated but {gpu.name} has no fp8 tensor cores")
    optimizer = parse_optimizer(par.optimizer, par.other)
    if optimizer is None:
        optimizer = Optimizer.ADAMW
    sharding = parse_sharding(par.sharding)
    if sharding is None:
        sharding = Sharding.NONE
        if dp > 1 and par.sharding is None:
            notes.append("sharding not stated, none (DDP / Megatron default) assumed")
    recompute, sp = parse_recompute(par.recompute)
    if recompute is None:
        recompute, sp2 = parse_recompute(_clauses(par.other, r"checkpoint|recomput"))
        sp = sp or sp2
    if recompute is None:
        recompute = Recompute.NONE
        if par.recompute is None:
            notes.append("recompute not stated, none assumed")
    rec_fraction = None
    if recompute == Recompute.FULL:
        from sizeup.job.parse import parse_recompute_layers
        from sizeup.validate.prose import recompute_layers

        # full checkpointing of only some blocks ('every 2nd decoder layer', '14 of 28 layers'): a layer fraction
        layers_text = recompute_layers(par.recompute) or recompute_layers(_clauses(par.other, r"checkpoint|recomput"))
        if layers_text:
            rec_fraction = parse_recompute_layers(layers_text, model.num_layers)
            if rec_fraction < 1.0:
                recompute = Recompute.LAYER_FRACTION
    from sizeup.validate.prose import mentions

    stated = mentions(par.other).get("sequence_parallel")
    sp = (sp or stated is True) and stated is not False
    peft, rank, targets = parse_peft(point, model.hf_model_type)
    off_opt, off_params, off_act = parse_offload(point)
    opt_in_bwd = optimizer_in_backward(point)
    if opt_in_bwd and (int(ga) > 1 or pp > 1):
        opt_in_bwd = False
        notes.append("optimizer step in backward stated but ignored (needs grad_accum 1 and pp 1)")
    if opt_in_bwd and peft is not Peft.NONE and re.search(r"lora[^.;]*do not use optimi[sz]er_in_bwd", point.text()):
        opt_in_bwd = False  # torchtune README: 'except for LoRA and QLoRA, which do not use optimizer_in_bwd'
    vpp = int(par.virtual_pp or 1)
    attention = attention_for(point, gpu)
    kwargs = dict(
        gpus=gpus, tp=tp, pp=pp, cp=cp, ep=ep, micro_batch=int(mb), grad_accum=int(ga), seq_len=seq,
        decoder_seq_len=dec_seq,
        precision=precision, optimizer=optimizer, sharding=sharding, sequence_parallel=bool(sp and tp > 1),
        pp_schedule=PipelineSchedule.INTERLEAVED if vpp > 1 else PipelineSchedule.ONE_F_ONE_B,
        virtual_pp=vpp, recompute=recompute, attention=attention, offload_optimizer=off_opt,
        offload_params=off_params, offload_activations=off_act, peft=peft,
        gpus_per_node=int(getattr(gpu, "node_size", 8) or 8),
        optimizer_in_backward=opt_in_bwd, paged_optimizer=paged_optimizer(point),
        fused_optimizer=not foreach_optimizer(point),
    )
    if point.model.dropout:
        kwargs["dropout"] = float(point.model.dropout)
    if rank:
        kwargs["lora_rank"] = rank
    if targets:
        kwargs["lora_targets"] = targets
    if recompute == Recompute.LAYER_FRACTION:
        kwargs["recompute_fraction"] = rec_fraction
    if gemini_auto_placement(point) and off_opt != Offload.NONE:
        from sizeup.core.memory import GEMINI_STEADY_CUDA_CAP_RATIO

        kwargs["offload_auto_cap"] = GEMINI_STEADY_CUDA_CAP_RATIO
    if peft is Peft.ADAPTER:
        kwargs["lora_targets"] = ()
        kwargs["trainable_params"] = trainable_params_stated(point)
        from sizeup.validate.prose import says

        kwargs["nf4_base"] = says(par.precision, "four_bit_base")  # 'bf16-true + bnb.nf4 base weights'
        # LLaMA-Adapter v2 scales every Linear's output (lit-gpt adapter_v2.py)
        kwargs["adapter_linear_scales"] = bool(re.search(r"adapter[ _-]?v2", f"{point.workload.kind} {par.other}".lower()))
    doc = packed_documents(point)
    if doc is not None:
        kwargs["packed_doc_tokens"] = int(doc["mean_tokens_per_sample"])
        notes.append(f"packed {doc['id']} samples, attention per sample (the framework masks documents): "
                     f"~{doc['mean_tokens_per_sample']} tokens each (catalog datasets.yaml, {doc['uncertainty']})")
    return SetupResult(TrainSetup(**kwargs), notes, exact)


def packed_documents(point: Point) -> dict | None:
    """The catalog dataset whose samples a point packs, when its framework's packing keeps attention within each
    sample (frameworks.yaml packing_masks_documents): 'SQuAD-v1.1 packed to 4096 tokens' under NeMo."""
    from sizeup.catalog.datasets import dataset_named_in
    from sizeup.job.frameworks import framework_profile

    prof_id = framework_for(point).get("profile")
    if not prof_id or not framework_profile(prof_id).get("packing_masks_documents"):
        return None
    text = f"{point.parallel.other or ''} ; {point.workload.kind or ''} ; {point.workload.dataset or ''}"
    if not re.search(r"\bpack(ed|ing)\b", text.lower()):
        return None
    return dataset_named_in(text)


def _clauses(text: str | None, pattern: str) -> str | None:
    """The clauses of a free-text field (split on , ; +) that match a pattern, joined."""
    if not text:
        return None
    parts = [c for c in re.split(r"[;,+]", text) if re.search(pattern, c, re.I) and not re.search(r"=\s*false", c, re.I)]
    return " ".join(parts) or None
