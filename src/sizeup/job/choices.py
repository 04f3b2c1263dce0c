"""The one alias table: every spelling a user, a scenario file, a claim or a published point may use for a
choice-valued job field, mapped to its canonical value (the value of the core enum, or a string code).

`parse_choice(field, text)` is the only way job fields turn text into a value; a value that is neither a
canonical value nor an alias is refused with one line listing what is allowed (never guessed).
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from sizeup.errors import SizeupError, choice_error

# "mixed" means bf16-mixed, or fp16-mixed on GPUs without bf16 (resolved where the GPU is known).
PRECISION_ALIASES = {
    "fp16": "fp16-mixed", "amp": "mixed", "mixed": "mixed", "fp16mixed": "fp16-mixed", "bf16mixed": "bf16-mixed",
    "amp-bf16": "bf16-mixed", "amp-fp16": "fp16-mixed", "bf16-amp": "bf16-mixed", "fp16-amp": "fp16-mixed",
    "float32": "fp32", "float16": "fp16-mixed", "bfloat16": "bf16", "half": "fp16-mixed", "32": "fp32",
    "16-mixed": "fp16-mixed", "bf16-true": "bf16", "pure-bf16": "bf16", "16": "fp16-mixed", "float8": "fp8",
}
ZERO_ALIASES = {
    "0": "none", "no": "none", "off": "none", "ddp": "none", "false": "none",
    "1": "zero1", "2": "zero2", "3": "zero3", "zero-1": "zero1", "zero-2": "zero2", "zero-3": "zero3",
    "fsdp": "fsdp-full", "fsdp2": "fsdp-full", "full-shard": "fsdp-full", "fsdp-full-shard": "fsdp-full",
    "shard-grad-op": "fsdp-grad-op", "hybrid": "fsdp-hybrid", "hsdp": "fsdp-hybrid", "hybrid-shard": "fsdp-hybrid",
    "distopt": "megatron-distopt", "distributed-optimizer": "megatron-distopt", "megatron": "megatron-distopt",
}
PEFT_ALIASES = {"yes": "lora", "true": "lora", "on": "lora", "no": "none", "false": "none", "off": "none",
                "full": "none", "4bit": "qlora", "q-lora": "qlora"}
OPTIMIZER_ALIASES = {"adam": "adamw", "adam-w": "adamw", "adamw8bit": "adam8bit", "adam-8bit": "adam8bit",
                     "adamw-8bit": "adam8bit", "8bit": "adam8bit", "momentum": "sgd"}
RECOMPUTE_ALIASES = {"no": "none", "off": "none", "0": "none", "false": "none", "yes": "full", "on": "full",
                     "true": "full", "checkpointing": "full", "gradient-checkpointing": "full", "ac": "full",
                     "full-ac": "full", "megatron-selective": "selective", "sac": "op-sac", "op": "op-sac",
                     "op-level": "op-sac", "attention": "attention-only", "attn": "attention-only",
                     "every-n": "layer-fraction", "partial": "layer-fraction"}
FP8_RECIPE_ALIASES = {"mx": "blockwise", "mxfp8": "blockwise", "block": "blockwise", "current": "tensorwise",
                      "row": "rowwise", "tensor": "tensorwise", "per-tensor": "tensorwise", "per-row": "rowwise"}
LORA_IMPL_ALIASES = {"eager": "peft", "hf": "peft", "unsloth": "fused", "kernels": "fused"}
OFFLOAD_ALIASES = {"no": "none", "off": "none", "false": "none", "host": "cpu", "yes": "cpu", "disk": "nvme",
                   "ssd": "nvme"}
ATTENTION_ALIASES = {"cudnn-attention": "cudnn", "cudnn_attention": "cudnn", "sdpa": "flash", "fa2": "flash", "fa3": "flash", "flash-attention": "flash", "eager": "math"}
CP_IMPL_ALIASES = {"ring-attention": "ring", "p2p": "ring", "megatron": "ring", "all-to-all": "ulysses",
                   "a2a": "ulysses", "deepspeed-ulysses": "ulysses", "ds-ulysses": "ulysses"}
PIPELINE_ALIASES = {"one-f-one-b": "1f1b", "interleaved-1f1b": "interleaved"}
PRICING_ALIASES = {
    "ondemand": "on-demand", "od": "on-demand", "serverless": "on-demand", "on demand": "on-demand",
    "preemptible": "spot", "interruptible": "spot", "reserved-1y": "reserved", "committed": "reserved",
}
# timing kernel families (core.timing.KERNELS) and memory kernel profiles (core.memory.KERNELS)
TIMING_KERNELS = ("fused", "te", "eager")
KERNEL_ALIASES = {"hf-eager": "eager", "hf": "eager", "huggingface": "eager", "megatron": "fused",
                  "transformer-engine": "te", "compiled": "fused", "torch-compile": "fused"}
LOSS_ALIASES = {"hf": "full", "megatron": "vocab-parallel", "liger": "fused-linear", "cce": "fused-linear",
                "chunk": "chunked", "chunked-ce": "chunked"}

E = TypeVar("E", bound=Enum)


def _key(value) -> str:
    return str(value).strip().lower().replace("_", "-")


def parse_choice(kind: str, value, enum: type[E], aliases: dict[str, str] | None = None) -> E | None:
    """Case-insensitive enum parse with aliases; a bad value is one clear line with the allowed ones."""
    if value is None:
        return None
    if isinstance(value, bool):
        value = "true" if value else "false"
    key = _key(value)
    key = (aliases or {}).get(key, key)
    try:
        return enum(key)
    except ValueError:
        raise choice_error(kind, value, [e.value for e in enum]) from None


def parse_code(kind: str, value, allowed: tuple[str, ...] | list[str], aliases: dict[str, str] | None = None) -> str | None:
    """A string code from a fixed list (kernel families, loss implementations, ...)."""
    if value is None:
        return None
    key = _key(value)
    key = (aliases or {}).get(key, key)
    if key not in allowed:
        raise choice_error(kind, value, list(allowed))
    return key


def parse_pricing(value) -> str:
    key = _key(value).replace(" ", "-")
    key = PRICING_ALIASES.get(key, key)
    allowed = ("on-demand", "spot", "reserved", "reserved-3y")
    if key not in allowed:
        raise choice_error("pricing", value, list(allowed))
    return key


def parse_bool(kind: str, value) -> bool | None:
    """true/false, yes/no, on/off, 1/0 (a YAML bool passes through); anything else is refused."""
    if value is None or isinstance(value, bool):
        return value
    key = _key(value)
    if key in ("true", "yes", "on", "1"):
        return True
    if key in ("false", "no", "off", "0"):
        return False
    raise SizeupError(f"{kind} must be true or false, got {value!r}")
