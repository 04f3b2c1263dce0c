"""ONE parser from flag values to a Job: CLI flags, scenario YAML, audit claims, published points (through
sizeup.job.prose) and the web form all arrive here as a dict of job-flag names -> values.

`collect_values(target, model, flags)` merges a scenario file (if the target is one) with the flags given;
`build_job(values, ...)` validates every value and fills what was not given with a stated default.
"""

from __future__ import annotations

import math
from typing import Any

from sizeup.errors import SizeupError
from sizeup.job import choices as C
from sizeup.job.flags import JOB_FLAG_NAMES

DEFAULT_SEQ = 2048
# Default global batch: about 1M tokens per optimizer step (GPT-3 paper, Brown et al. 2020, Table 2.1: 0.5M-2M
# tokens for 125M-13B models; Llama 2 uses 4M), but never fewer than 1000 optimizer steps for the run
# (fine-tuning runs of a few million tokens then get batches of tens of sequences, as HF/torchtune recipes use).
DEFAULT_BATCH_TOKENS = 2**20
DEFAULT_MIN_STEPS = 1000
LORA_TARGET_SETS = {
    "all": ("q", "k", "v", "o", "gate", "up", "down"), "all-linear": ("q", "k", "v", "o", "gate", "up", "down"),
    "attn": ("q", "k", "v", "o"), "attention": ("q", "k", "v", "o"), "mlp": ("gate", "up", "down"),
}
LORA_TARGET_ALIASES = {
    "q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "out_proj": "o", "output_proj": "o",
    "gate_proj": "gate", "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up", "w2": "down",
    "c_attn": "qkv", "c_proj": "o", "c_fc": "up", "fc1": "up", "fc2": "down",
}


# --------------------------------------------------------------------------- values


def collect_values(target: str | None, model: str | None, flags: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(values, scenario): the scenario file's values (when the target is a .yaml) overridden by every flag given."""
    from sizeup.scenario import Scenario, load_scenario

    if target and model and target != model:
        raise SizeupError(f"two models given ({target!r} and --model {model!r}); give one")
    name = target or model
    is_file = bool(name) and str(name).lower().endswith((".yaml", ".yml"))
    scenario = load_scenario(name) if is_file else Scenario()
    given = {k: v for k, v in flags.items() if v is not None and v != () and v != []}
    if not is_file and name:
        given["model"] = name
    return scenario.merged(given), scenario


def parse_count(name: str, value) -> int | None:
    """A whole-number flag (int, integral float or digit string), 1 .. 2**40, or None when absent; anything else is
    one clear line. The one count parser of the job description and the plan search."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SizeupError(f"--{name} must be a whole number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise SizeupError(f"--{name} must be a whole number, got {value!r}")
        value = int(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text.lstrip("+-").isdigit():
            raise SizeupError(f"--{name} must be a whole number, got {value!r}")
        value = int(text)
    if not isinstance(value, int):
        raise SizeupError(f"--{name} must be a whole number, got {value!r}")
    if value <= 0:
        raise SizeupError(f"--{name} must be > 0, got {value}")
    if value > 2**40:
        raise SizeupError(f"--{name} must be <= {2**40:,}, got {value:,}")
    return value


def _float(name: str, value, lo: float = 0.0) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise SizeupError(f"--{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SizeupError(f"--{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < lo:
        raise SizeupError(f"--{name} must be a finite number >= {lo:g}, got {value!r}")
    return x


def _profile_bool(v: dict, key: str, default) -> bool:
    """A boolean job flag that overrides a framework-profile field."""
    got = C.parse_bool("--" + key.replace("_", "-"), v.get(key))
    return bool(default) if got is None else bool(got)


def _count(name: str, value) -> float | None:
    if value is None:
        return None
    from sizeup.units import UnitError, parse_count

    if isinstance(value, bool):
        raise SizeupError(f"--{name} must be a count like 15M or 2B, got {value!r}")
    try:
        x = float(parse_count(value))
    except (UnitError, ValueError, TypeError) as exc:
        raise SizeupError(f"--{name}: {exc}") from None
    if not math.isfinite(x) or x <= 0:
        raise SizeupError(f"--{name} must be > 0, got {value!r}")
    if x > 1e18:
        raise SizeupError(f"--{name} must be <= 1e18, got {value!r}")
    return x


def parse_workload(values: dict[str, Any]):
    """Workload from tokens, or samples x tokens per sample x epochs (None when neither is given)."""
    from sizeup.core.workload import Workload

    tokens, samples, tps = _count("tokens", values.get("tokens")), _count("samples", values.get("samples")), \
        _count("tokens-per-sample", values.get("tokens_per_sample"))
    epochs = _float("epochs", values.get("epochs"))
    if epochs is not None and epochs <= 0:
        raise SizeupError(f"--epochs must be > 0, got {values.get('epochs')!r}")
    if tokens is None and samples is None:
        return None
    return Workload(tokens=tokens, samples=samples, tokens_per_sample=tps, epochs=epochs or 1.0)


def parse_lora_targets(text, model=None) -> tuple[str, ...] | None:
    """'q,v' / 'all' / 'q_proj,v_proj' / a list -> canonical target names; unknown -> SizeupError."""
    from sizeup.core.memory import LORA_TARGETS
    from sizeup.errors import did_you_mean

    if text is None:
        return None
    parts = [str(p) for p in text] if isinstance(text, (list, tuple)) else str(text).split(",")
    key = ",".join(p.strip().lower() for p in parts)
    if key == "peft-default":
        from sizeup.job.frameworks import peft_default_lora_targets

        mtype = getattr(model, "hf_model_type", "") or ""
        targets = peft_default_lora_targets(mtype)
        if targets is None:
            raise SizeupError(f"--lora-targets peft-default: Hugging Face PEFT has no default LoRA targets for "
                              f"{getattr(model, 'id', 'this model')!r} (model type {mtype or 'unknown'!r}); "
                              "give the targets, e.g. q,v or all")
        return targets
    if key in LORA_TARGET_SETS:
        targets = LORA_TARGET_SETS[key]
        if model is not None and not model.mlp_kind.gated:
            targets = tuple(t for t in targets if t != "gate")
        return targets
    out: list[str] = []
    for raw in parts:
        name = raw.strip().lower()
        if not name:
            continue
        name = LORA_TARGET_ALIASES.get(name, name)
        for n in (("q", "k", "v") if name == "qkv" else (name,)):
            if n not in LORA_TARGETS:
                raise SizeupError(f"unknown LoRA target {raw.strip()!r}.{did_you_mean(raw.strip(), LORA_TARGETS)} "
                                  f"Allowed: {', '.join(LORA_TARGETS)}, or all, attn, mlp, peft-default")
            if n not in out:
                out.append(n)
    if not out:
        raise SizeupError("--lora-targets is empty; give e.g. q,v or all")
    return tuple(out)


def parse_packed_doc_tokens(value) -> int:
    """--packed-doc-tokens: a whole number of tokens >= 1, or a catalog dataset's name (its mean tokens per sample);
    None -> 0 (one document per sequence)."""
    if value is None:
        return 0
    if isinstance(value, str) and not value.strip().lstrip("+-").replace("_", "").isdigit():
        from sizeup.catalog.datasets import dataset_by_name, datasets

        d = dataset_by_name(value)
        if d is None:
            known = ", ".join(x["id"] for x in datasets())
            raise SizeupError(f"--packed-doc-tokens: {value!r} is neither a token count nor a known dataset ({known})")
        return int(d["mean_tokens_per_sample"])
    n = parse_count("packed-doc-tokens", value)
    if n is None or n < 1:
        raise SizeupError(f"--packed-doc-tokens must be a whole number >= 1 or a dataset name, got {value!r}")
    return n


def parse_recompute_layers(text, num_layers: int) -> float | None:
    """'0.25' | '21/80' | 'every-2' | 'every 2nd' -> fraction of layers checkpointed."""
    import re

    if text is None:
        return None
    if isinstance(text, bool):
        raise SizeupError(f"--recompute-layers must be a fraction, 'K/L' or 'every-N', got {text!r}")
    t = str(text).strip().lower()
    m = re.fullmatch(r"every[\s_-]*(\d+)(?:st|nd|rd|th)?(?:[\s_-]*layers?)?", t)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise SizeupError(f"--recompute-layers every-N needs N >= 1, got {text!r}")
        return math.ceil(num_layers / n) / num_layers
    m = re.fullmatch(r"(\d+)\s*(?:/|of)\s*(\d+)", t)
    if m:
        k, total = int(m.group(1)), int(m.group(2))
        if total < 1 or not 0 < k <= total:
            raise SizeupError(f"--recompute-layers {text!r}: need 0 < K <= L")
        return k / total
    try:
        x = float(t)
    except ValueError:
        raise SizeupError(f"--recompute-layers must be a fraction (0.25), 'K/L' (21/80) or 'every-N', got {text!r}") from None
    if not math.isfinite(x) or not 0 < x <= 1:
        raise SizeupError(f"--recompute-layers must be in (0, 1], got {text!r}")
    return x


def resolve_gpu(text, catalog, allow_memory: bool = False):
    """(GpuSpec | None, memory bytes | None) from --gpu: a catalog GPU, or (memory/trace) a size like 24GiB."""
    if text is None:
        return None, None
    if isinstance(text, (list, tuple)):
        raise SizeupError(f"--gpu takes one GPU kind here, got {len(text)} ({', '.join(map(str, text))}); "
                          "'sizeup compare' evaluates several")
    text = str(text)
    if "," in text:
        raise SizeupError(f"--gpu takes one GPU kind here, got {text!r}; 'sizeup compare' evaluates several")
    from sizeup.units import UnitError, parse_bytes

    try:
        mem = parse_bytes(text)
    except (UnitError, ValueError):
        mem = None
    if mem is not None:
        if not allow_memory:
            raise SizeupError(f"--gpu {text!r} is a memory size; this command needs a GPU kind for its FLOP/s and "
                              "bandwidth (see 'sizeup gpus'); 'sizeup memory' takes a size")
        if not (math.isfinite(mem) and 0 < mem <= 2**50):
            raise SizeupError(f"--gpu memory must be between 1 B and 1 PiB, got {text!r}")
        try:
            gpu = catalog.gpu_or_memory(text)
            return gpu, float(gpu.memory_bytes)
        except SizeupError:
            return None, float(mem)
    gpu = catalog.gpu(text)
    return gpu, float(gpu.memory_bytes)


def kernels_for(prof: dict, fp8: bool, compile_: bool, kernel: str | None = None) -> tuple[str, str]:
    """(timing kernel family, memory kernel profile) a framework profile runs: an explicit --kernel wins; fp8 through
    Transformer Engine (the profile's fp8_library 'te') times GEMMs and attention with the 'te' family ('te-linear':
    only the Linear layers are TE modules, the rest keeps the profile's kernels); torch.compile fuses
    elementwise ops ('fused' for time and memory); otherwise the profile's own families."""
    if kernel is not None:
        return kernel, "hf-eager" if kernel == "eager" else "fused"
    if fp8 and prof["fp8_library"] == "te":
        timing = "te"
    elif fp8 and prof["fp8_library"] == "te-linear" and not compile_:
        # Transformer Engine Linear layers only (fp8 GEMMs + casts, timed through the fp8 precision): attention and
        # the other elementwise ops stay the framework's own kernels (llm-foundry fc_type: te / te_ln_mlp)
        timing = prof["timing_kernel"]
    elif compile_:
        timing = "fused"
    else:
        timing = prof["timing_kernel"]
    return timing, "fused" if compile_ else prof["memory_kernel"]


def default_precision(gpu) -> str:
    """bf16-mixed, or fp16-mixed on GPUs without bf16 (V100, T4)."""
    if gpu is None or getattr(gpu, "vendor", "") == "generic" or gpu.supports_bf16:
        return "bf16-mixed"
    return "fp16-mixed"


def default_global_batch(tokens: float | None, seq: int, unit: int) -> tuple[int, str]:
    """(sequences per optimizer step, how it was chosen): ~1M tokens, at least DEFAULT_MIN_STEPS steps, a multiple of
    micro-batch x dp (`unit`)."""
    if tokens is None:
        return unit, "micro-batch x dp (no accumulation; no workload given)"
    target = min(DEFAULT_BATCH_TOKENS, tokens / DEFAULT_MIN_STEPS)
    seqs = max(1, int(target // seq))
    b = max(unit, (seqs // unit) * unit)
    return b, (f"min(1M tokens, tokens / {DEFAULT_MIN_STEPS} steps) = {target:,.0f} tokens -> {b} sequences "
               f"(a multiple of micro-batch x dp = {unit})")


# --------------------------------------------------------------------------- the parser


def build_job(values: dict[str, Any], catalog=None, *, need_gpu: bool = True, allow_memory_gpu: bool = False,
              need_workload: bool = False, model=None, command: str = "train"):
    """A validated Job from job-flag values (None = not given). Raises SizeupError (exit 2) on bad input.

    model: an already-resolved ModelArch (published points built from their fields); else values['model'].
    """
    from sizeup.catalog import load_catalog, resolve_model
    from sizeup.core.types import (
        Attention, ContextParallel, Offload, Optimizer, Peft, PipelineSchedule, Precision, Recompute, Sharding,
    )
    from sizeup.core.workload import Workload
    from sizeup.job.frameworks import framework_profile
    from sizeup.job.tree import (
        Batch, Cluster, Execution, Job, OffloadSpec, OptimizerSpec, Parallelism, PeftSpec, PrecisionSpec,
        PricingSpec, RecomputeSpec,
    )

    unknown = [k for k in values if k not in JOB_FLAG_NAMES and k not in ("model", "region")]
    if unknown:
        from sizeup.errors import did_you_mean

        raise SizeupError(f"unknown job field {unknown[0]!r}.{did_you_mean(unknown[0], JOB_FLAG_NAMES)}")
    catalog = catalog or load_catalog()
    v = values
    given = tuple(k for k in JOB_FLAG_NAMES if v.get(k) is not None)
    defaults: list[tuple[str, str]] = []

    # model
    arch = model
    if arch is None:
        if not v.get("model"):
            raise SizeupError("give a model: a preset id (see 'sizeup models'), a config.json path or a scenario .yaml")
        arch = resolve_model(str(v["model"]), catalog)
    positions = parse_count("positions", v.get("positions"))
    if positions is not None:
        from sizeup.core.types import PositionKind

        if arch.position != PositionKind.LEARNED:
            raise SizeupError(f"--positions sizes a learned position table; {arch.id} uses {arch.position.value} "
                              "positions")
        arch = arch.with_(num_position_embeddings=positions, max_seq_len=max(positions, arch.max_seq_len))

    # cluster
    gpu, gpu_mem = resolve_gpu(v.get("gpu"), catalog, allow_memory=allow_memory_gpu)
    if gpu is None and gpu_mem is None and need_gpu:
        raise SizeupError("give --gpu (e.g. h100-sxm, a100-80gb, t4); see 'sizeup gpus'")
    if gpu is not None and need_gpu and not allow_memory_gpu and gpu.vendor != "generic" \
            and max(gpu.peak("bf16"), gpu.peak("fp16"), gpu.peak("fp32")) <= 0:
        raise SizeupError(f"GPU {gpu.id} has no FLOP/s figures in the catalog; pick a GPU with peaks")
    gpus_v = v.get("gpus")
    if isinstance(gpus_v, (list, tuple)) or (isinstance(gpus_v, str) and "," in gpus_v):
        raise SizeupError(f"--gpus takes one count here, got {gpus_v!r}; 'sizeup compare' evaluates several")
    n_gpus = parse_count("gpus", gpus_v)
    if n_gpus is None:
        n_gpus = 1
        defaults.append(("gpus", "1"))
    node = parse_count("gpus-per-node", v.get("gpus_per_node")) or int(getattr(gpu, "node_size", 0) or 8)
    cluster = Cluster(gpu, n_gpus, node, gpu_mem)

    # execution (framework profile + overrides)
    prof = framework_profile(v.get("framework"))
    if v.get("framework") is None:
        defaults.append(("framework", "generic: fused kernels + flash attention"))
    overridden = []
    compile_ = C.parse_bool("--compile", v.get("compile"))
    if compile_ is None:
        compile_ = bool(prof["compile"])
    else:
        overridden.append("compile")

    # precision
    prec_text = v.get("precision")
    if prec_text is not None:
        key = C._key(prec_text)
        key = C.PRECISION_ALIASES.get(key, key)
        if key == "mixed":
            key = default_precision(gpu)
        prec = C.parse_choice("precision", key, Precision)
    else:
        prec = Precision(default_precision(gpu))
        defaults.append(("precision", f"{prec.value}" + ("" if prec == Precision.BF16_MIXED else " (no bf16 on this GPU)")))
    if gpu is not None and gpu.vendor != "generic":
        if prec in (Precision.BF16_MIXED, Precision.BF16) and not gpu.supports_bf16:
            raise SizeupError(f"{gpu.name} has no bf16 support; use --precision fp16-mixed (or fp32)")
        if prec == Precision.FP8 and gpu.peak("fp8") <= 0:
            from sizeup.core.timing import runnable_precisions

            ok = [p for p in runnable_precisions(gpu) if p != "fp8"] or ["bf16-mixed"]
            raise SizeupError(f"{gpu.name} has no fp8 tensor cores; use --precision {' or '.join(ok)}")
    from sizeup.core.types import Fp8Recipe, LoraImpl

    fp8_recipe = C.parse_choice("fp8 recipe", v.get("fp8_recipe"), Fp8Recipe, C.FP8_RECIPE_ALIASES)
    if fp8_recipe is None and prec == Precision.FP8:
        fp8_recipe = C.parse_choice("fp8 recipe", prof["fp8_recipe"], Fp8Recipe, C.FP8_RECIPE_ALIASES)
    kernel = C.parse_code("kernel", v.get("kernel"), C.TIMING_KERNELS, C.KERNEL_ALIASES)
    timing_kernel, memory_kernel = kernels_for(prof, prec == Precision.FP8, bool(compile_), kernel)
    job_notes: list[str] = []
    if "compile" in overridden and kernels_for(prof, prec == Precision.FP8, not compile_, kernel) == \
            (timing_kernel, memory_kernel):
        # a flag that changes no figure says so rather than passing silently
        job_notes.append(f"--{'compile' if compile_ else 'no-compile'} changes nothing here: "
                         + ("--kernel sets the kernels" if kernel is not None else
                            f"the {prof['name']} profile runs {timing_kernel} kernels either way")
                         + "; torch.compile matters for profiles with eager elementwise ops (e.g. --framework "
                           "hf-trainer)")
    if kernel is not None:
        overridden.append("kernel")
    attention = C.parse_choice("attention", v.get("attention"), Attention, C.ATTENTION_ALIASES)
    if attention is None:
        attention = Attention(prof["attention"])
    else:
        overridden.append("attention")
    from sizeup.core.memory import LOSS_IMPLS

    loss = C.parse_code("loss", v.get("loss"), tuple(LOSS_IMPLS), C.LOSS_ALIASES)
    if loss is None:
        loss = prof["loss"]
    else:
        overridden.append("loss")
    dp_overlap = _float("dp-overlap", v.get("dp_overlap"))
    tp_overlap = _float("tp-overlap", v.get("tp_overlap"))
    for name, x in (("dp-overlap", dp_overlap), ("tp-overlap", tp_overlap)):
        if x is not None and x > 1:
            raise SizeupError(f"--{name} must be in [0, 1], got {x}")
    dropout = _float("dropout", v.get("dropout"))
    if dropout is None and arch.dropout:
        # the model's config trains with dropout (BERT hidden/attention 0.1, T5 dropout_rate 0.1): transformers
        # modules apply it in train mode
        dropout = arch.dropout
        defaults.append(("dropout", f"{arch.dropout:g} (the model config's training dropout)"))
    fragmentation = _float("fragmentation", v.get("fragmentation"))

    # optimizer
    opt_text = v.get("optimizer")
    paged = False
    if opt_text is not None:
        key = C._key(opt_text)
        if key.startswith("paged"):  # PagedAdamW, PagedAdamW8bit, paged_adamw_8bit, paged-lion
            paged = True
            key = key[len("paged"):].lstrip("-") or "adamw"
            key = {"adamw-8bit": "adam8bit", "adamw-32bit": "adamw", "adam-8bit": "adam8bit"}.get(key, key)
            if key not in ("adamw", "adam8bit", "adamw8bit", "lion"):
                raise SizeupError(f"unknown paged optimizer {opt_text!r}; paged variants exist for: "
                                  "paged-adamw, paged-adamw8bit, paged-lion")
        opt = C.parse_choice("optimizer", key, Optimizer, C.OPTIMIZER_ALIASES)
    else:
        opt = Optimizer.ADAMW
        defaults.append(("optimizer", "adamw (fused step)"))
    foreach = C.parse_bool("--foreach", v.get("foreach")) or False
    in_bwd = C.parse_bool("--optimizer-in-backward", v.get("optimizer_in_backward")) or False

    # peft
    pft = C.parse_choice("peft", v.get("peft"), Peft, C.PEFT_ALIASES)
    targets = parse_lora_targets(v.get("lora_targets"), arch)
    rank = parse_count("lora-rank", v.get("lora_rank"))
    if pft is None:
        pft = Peft.LORA if (targets is not None or rank is not None) else Peft.NONE
    lora_impl = C.parse_choice("lora implementation", v.get("lora_impl"), LoraImpl, C.LORA_IMPL_ALIASES)
    if lora_impl is None:
        lora_impl = LoraImpl(prof["lora_impl"] if prof["lora_impl"] in ("peft", "fused") else "peft")
    elif pft == Peft.NONE:
        raise SizeupError("--lora-impl needs --peft lora or qlora")
    if pft != Peft.NONE and prof["lora_impl"] == "none" and v.get("lora_impl") is None:
        raise SizeupError(f"{prof['name']} has no LoRA support in its profile; pick a framework that has "
                          "(hf-trainer, torchtune, unsloth, nemo, ...) or give --lora-impl")
    kbit_prep = bool(prof.get("qlora_kbit_prep")) and pft == Peft.QLORA
    n_trained = _float("trainable-params", v.get("trainable_params"))
    nf4_inputs = _profile_bool(v, "nf4_saves_inputs", prof.get("nf4_saves_linear_inputs"))
    if pft == Peft.ADAPTER:
        if not n_trained:
            raise SizeupError("--peft adapter needs --trainable-params N (the method's trained parameter count)")
        if targets is not None or rank is not None:
            raise SizeupError("--lora-rank / --lora-targets apply to --peft lora or qlora, not adapter")
        nf4_base = bool(C.parse_bool("--nf4-base", v.get("nf4_base")))
        peft_spec = PeftSpec(pft, 16, (), lora_impl, False, float(n_trained), nf4_base=nf4_base,
                             nf4_saves_inputs=nf4_inputs and nf4_base,
                             adapter_linear_scales=bool(C.parse_bool("--adapter-linear-scales",
                                                                     v.get("adapter_linear_scales"))))
    else:
        if n_trained is not None:
            raise SizeupError("--trainable-params applies to --peft adapter")
        if v.get("nf4_base") is not None:
            raise SizeupError("--nf4-base applies to --peft adapter (QLoRA implies an NF4 base)")
        if v.get("adapter_linear_scales") is not None:
            raise SizeupError("--adapter-linear-scales applies to --peft adapter")
        fp32_ad = C.parse_bool("--lora-fp32-adapters", v.get("lora_fp32_adapters"))
        if fp32_ad is None:
            fp32_ad = bool(prof.get("lora_fp32_adapters")) and lora_impl == LoraImpl.PEFT
        peft_spec = PeftSpec(pft, rank or 16, targets or ("q", "k", "v", "o"), lora_impl, kbit_prep,
                             fp32_adapters=bool(fp32_ad) and pft in (Peft.LORA, Peft.QLORA),
                             nf4_saves_inputs=nf4_inputs and pft == Peft.QLORA)

    # recompute
    rec = C.parse_choice("recompute", v.get("recompute"), Recompute, C.RECOMPUTE_ALIASES)
    if rec is None:
        if kbit_prep:  # prepare_model_for_kbit_training(use_gradient_checkpointing=True) is PEFT's default
            rec = Recompute.FULL
            defaults.append(("recompute", "full (QLoRA via PEFT prepare_model_for_kbit_training turns on gradient "
                                          "checkpointing)"))
        else:
            rec = Recompute.NONE
            defaults.append(("recompute", "none"))
    elif rec == Recompute.SELECTIVE and prof["selective_recompute"] == "op-sac":
        rec = Recompute.OP_SAC  # what this framework calls selective (torchtitan: op-level SAC)
    layers = parse_recompute_layers(v.get("recompute_layers"), arch.num_layers)
    if layers is not None and layers < 1.0 and rec == Recompute.FULL:
        rec = Recompute.LAYER_FRACTION
    if rec == Recompute.LAYER_FRACTION and layers is None:
        raise SizeupError("--recompute layer-fraction needs --recompute-layers (0.5, 21/80 or every-2)")
    meaning = {Recompute.SELECTIVE: "Megatron core-attention recompute", Recompute.OP_SAC: "torchtitan op-level SAC",
               Recompute.FULL: "whole blocks", Recompute.NONE: ""}.get(rec, rec.value)
    rec_spec = RecomputeSpec(rec, layers if layers is not None else 1.0, meaning)

    # offload
    off_o = C.parse_choice("offload", v.get("offload_optimizer"), Offload, C.OFFLOAD_ALIASES) or Offload.NONE
    off_p = C.parse_choice("offload", v.get("offload_params"), Offload, C.OFFLOAD_ALIASES) or Offload.NONE
    off_a = C.parse_bool("--offload-activations", v.get("offload_activations")) or False
    off_cap = _float("offload-auto-cap", v.get("offload_auto_cap")) or 0.0
    if off_cap > 1.0:
        raise SizeupError(f"--offload-auto-cap must be a fraction of GPU memory in (0, 1], got {off_cap:g}")
    if off_cap and off_o == Offload.NONE:
        raise SizeupError("--offload-auto-cap needs --offload-optimizer cpu (what may move to the host)")

    # parallelism
    tp, pp, cp, ep = (parse_count(k, v.get(k)) or 1 for k in ("tp", "pp", "cp", "ep"))
    vpp = parse_count("virtual-pp", v.get("virtual_pp")) or 1
    sched = C.parse_choice("pipeline schedule", v.get("pp_schedule"), PipelineSchedule, C.PIPELINE_ALIASES)
    if sched is None:
        sched = PipelineSchedule.INTERLEAVED if vpp > 1 else PipelineSchedule.ONE_F_ONE_B
    zero = v.get("zero")
    shard = C.parse_choice("sharding (--zero)", None if zero is None else str(zero), Sharding, C.ZERO_ALIASES)
    if shard is None:
        if off_p != Offload.NONE:
            shard = Sharding.ZERO3
        elif off_o != Offload.NONE:
            shard = Sharding.ZERO2
        elif prof.get("default_sharding") and n_gpus > 1:
            shard = Sharding(prof["default_sharding"])
        else:
            shard = Sharding.NONE
        defaults.append(("zero", f"{shard.value}" + (" (the framework's)" if prof.get("default_sharding") else "")
                         + "; the least sharding that fits is chosen when this does not fit"))
    sp = C.parse_bool("--sequence-parallel", v.get("sequence_parallel"))
    if sp is None:
        sp = bool(prof["sequence_parallel_with_tp"]) and tp > 1
    cp_impl = C.parse_choice("cp-impl", v.get("cp_impl"), ContextParallel, C.CP_IMPL_ALIASES)
    if cp_impl is None:
        cp_impl = ContextParallel(prof.get("context_parallel") or "ring")
    qwz = bool(C.parse_bool("--zero-quantized-weights", v.get("zero_quantized_weights")))
    qgz = bool(C.parse_bool("--zero-quantized-gradients", v.get("zero_quantized_gradients")))
    par = Parallelism(n_gpus, tp, pp, cp, ep, vpp, sched, sp, shard, cp_impl, qwz, qgz)

    # workload
    workload = parse_workload(v)
    tps = _count("tokens-per-sample", v.get("tokens_per_sample"))
    if workload is None and need_workload:
        raise SizeupError("give the workload: --tokens 15M, or --samples 10000 --tokens-per-sample 500 [--epochs 3]")

    # batch
    seq = parse_count("seq", v.get("seq"))
    if seq is None:
        if tps is not None:
            seq = max(1, min(math.ceil(tps), arch.max_seq_len or math.ceil(tps)))
            defaults.append(("seq", f"{seq} (tokens per sample: one unpacked sample per sequence)"))
        else:
            seq = min(DEFAULT_SEQ, arch.max_seq_len or DEFAULT_SEQ)
            defaults.append(("seq", f"{seq}"))
    mb = parse_count("micro-batch", v.get("micro_batch"))
    gb = parse_count("global-batch", v.get("global_batch"))
    ga = parse_count("grad-accum", v.get("grad_accum"))
    dp = par.dp
    if mb is None:
        if gb is not None and ga is not None:
            if gb % (dp * ga):
                raise SizeupError(f"inconsistent batch: global batch {gb} is not a multiple of data-parallel {dp} x "
                                  f"grad accumulation {ga}")
            mb = gb // (dp * ga)
            if mb < 1:
                raise SizeupError(f"inconsistent batch: global batch {gb} < data-parallel {dp} x grad accumulation {ga}")
        else:
            mb = 1
            defaults.append(("micro_batch", "1"))
    if gb is None and ga is None:
        gb, how = default_global_batch(workload.total_tokens if workload else None, seq, mb * dp)
        defaults.append(("global_batch", how))
    if gb is not None:
        if gb % (mb * dp):
            near = max(1, round(gb / (mb * dp))) * mb * dp
            raise SizeupError(f"--global-batch ({gb}) must be a multiple of micro-batch x data-parallel ranks "
                              f"({mb} x {dp} = {mb * dp}); try --global-batch {near}")
        if ga is not None and gb != mb * dp * ga:
            raise SizeupError(f"inconsistent batch: global batch {gb} != micro-batch {mb} x data-parallel {dp} x "
                              f"grad accumulation {ga} = {mb * dp * ga}")
        ga = gb // (mb * dp)
    dec_seq = parse_count("decoder-seq", v.get("decoder_seq"))
    if dec_seq is not None and not arch.is_encoder_decoder:
        raise SizeupError(f"--decoder-seq sets the target length of an encoder-decoder model; {arch.id} is "
                          f"{arch.arch_kind.value} (give --seq only)")
    if arch.is_encoder_decoder and dec_seq is None:
        defaults.append(("decoder_seq", f"{seq} (= seq: target as long as the input)"))
    batch = Batch(seq, mb, ga, dp, parse_packed_doc_tokens(v.get("packed_doc_tokens")), dec_seq or 0)

    # pricing
    platform = v.get("platform")
    if isinstance(platform, (list, tuple)):
        platform = ",".join(map(str, platform))
    pricing_v = v.get("pricing")
    if isinstance(pricing_v, (list, tuple)):
        pricing_v = ",".join(map(str, pricing_v))
    retain = v.get("retain")
    retain_s = 0.0
    if retain is not None:
        from sizeup.units import parse_duration

        retain_s = float(parse_duration(str(retain)))
    catalogs = v.get("catalog") or ()
    if isinstance(catalogs, (str, bytes)):
        catalogs = (catalogs,)
    pricing = PricingSpec(
        platform=None if platform is None else str(platform),
        pricing=C.parse_pricing(pricing_v) if pricing_v is not None and "," not in str(pricing_v) else
        (str(pricing_v) if pricing_v is not None else "on-demand"),
        price_per_gpu_hour=_float("price-per-gpu-hour", v.get("price_per_gpu_hour")),
        billing_increment_s=_float("billing-increment-s", v.get("billing_increment_s")),
        min_billing_s=_float("min-billing-s", v.get("min_billing_s")),
        preemption_rate=_float("preemption-rate", v.get("preemption_rate")),
        restart_s=_float("restart-s", v.get("restart_s")),
        checkpoints_kept=None if v.get("checkpoints_kept") is None else int(_float("checkpoints-kept", v["checkpoints_kept"])),
        retain_s=retain_s, catalogs=tuple(str(c) for c in catalogs),
        max_price_age_days=int(_float("max-price-age-days", v.get("max_price_age_days")) or 180)
        if v.get("max_price_age_days") is not None else 180,
    )

    execution = Execution(
        framework=prof["id"], framework_name=prof["name"], timing_kernel=timing_kernel, memory_kernel=memory_kernel,
        attention=attention, loss=loss, compile=bool(compile_), fp8_library=prof["fp8_library"],
        selective_recompute=prof["selective_recompute"], dropout=dropout or 0.0, fragmentation=fragmentation,
        dp_overlap=dp_overlap if dp_overlap is not None else prof.get("dp_overlap"),
        tp_overlap=tp_overlap if tp_overlap is not None else prof.get("tp_overlap"),
        grads_set_to_none=bool(prof["grads_set_to_none"]), grad_reduce_dtype=str(prof.get("grad_reduce_dtype") or ""),
        fsdp_no_sync=_profile_bool(v, "fsdp_no_sync", prof.get("fsdp_no_sync_accumulation")),
        fsdp_mixed_units=_profile_bool(v, "fsdp_mixed_units", prof.get("fsdp_mixed_frozen_units")),
        overridden=tuple(overridden),
        sources=tuple((k, str(s)) for k, s in (prof.get("sources") or {}).items()),
    )
    return Job(
        model=arch, cluster=cluster, parallelism=par, batch=batch,
        precision=PrecisionSpec(prec, fp8_recipe), optimizer=OptimizerSpec(opt, not foreach, paged, in_bwd),
        recompute=rec_spec, offload=OffloadSpec(off_o, off_p, off_a, off_cap), peft=peft_spec, execution=execution,
        pricing=pricing, workload=workload, defaults=tuple(defaults), given=given,
        label=str(v.get("model") or arch.id), notes=tuple(job_notes),
    )


