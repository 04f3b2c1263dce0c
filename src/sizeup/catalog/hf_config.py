"""Import a Hugging Face `config.json` as a `ModelArch` (and export one back).

Each supported `model_type` maps its keys onto `sizeup.schema.ModelFile` fields, so the same range
and consistency checks apply as for catalog presets. The mapping mirrors how `transformers` builds
each architecture (which modules carry biases, how many norms a layer has, whether the output head
is tied); `tests/test_params_vs_torch.py` checks the resulting counts against `sum(p.numel())`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

from sizeup.core.types import ArchKind, HeadKind, MlpKind, ModelArch, NormKind, PositionKind, QkNorm
from sizeup.errors import SizeupError, pydantic_message

# encoder and encoder-decoder model types sizeup does not read (t5, mt5 and bert have mappers below)
ENCODER_DECODER_TYPES = frozenset({
    "umt5", "longt5", "switch_transformers", "bart", "mbart", "pegasus", "pegasus_x", "marian",
    "blenderbot", "blenderbot-small", "prophetnet", "led", "whisper", "encoder-decoder", "fsmt", "m2m_100",
    "nllb-moe", "plbart", "bigbird_pegasus", "seamless_m4t",
    "roberta", "xlm-roberta", "deberta", "deberta-v2", "electra", "distilbert", "albert", "camembert",
    "modernbert", "mpnet", "ernie",
})

# tie_word_embeddings default of each transformers config class (used when the key is absent)
_TIED_DEFAULT = {
    "llama": False, "llama4_text": False, "mistral": False, "mixtral": False, "qwen2": False, "qwen2_moe": False,
    "qwen3": False, "qwen3_moe": False, "gemma": True, "gemma2": True, "gemma3_text": True, "phi3": False, "olmo2": False,
    "deepseek_v3": False, "nemotron": False, "gpt2": True, "gpt_neox": False, "gptj": False, "falcon": True,
    "mpt": True, "opt": True, "bloom": True,
}


# How each config.json key read below is checked (a value of the wrong kind is refused, never coerced:
# `hidden_size: 4096.7` is not 4096, `num_hidden_layers: true` is not 1, `attention_bias: "false"` is not true).
_BOOL_KEYS = frozenset({
    "tie_word_embeddings", "attention_bias", "mlp_bias", "use_sliding_window", "use_parallel_residual",
    "parallel_attn", "no_bias", "new_decoder_architecture", "multi_query", "enable_bias", "do_layer_norm_before",
    "bias", "alibi", "learned_pos_emb", "_remove_final_layer_norm",
})
_FLOAT_KEYS = frozenset({"expansion_ratio"})
_STRUCT_KEYS = frozenset({"attn_config", "ffn_config", "mlp_only_layers", "moe_layers", "text_config"})
# integers that must be >= 1 when present (sizes, counts of heads, layers and experts)
_POSITIVE_KEYS = frozenset({
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "n_layer",
    "n_head", "n_heads", "n_embd", "d_model", "n_layers", "num_local_experts", "num_experts", "n_routed_experts",
    "num_experts_per_tok", "num_key_value_heads", "num_kv_heads", "head_dim", "moe_intermediate_size", "ffn_dim",
    "v_head_dim", "kv_lora_rank", "max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
    "intermediate_size_mlp", "decoder_sparse_step", "interleave_moe_layer_step", "moe_layer_freq", "n_inner",
    "ffn_hidden_size", "word_embed_proj_dim", "qk_rope_head_dim", "d_kv", "d_ff", "num_decoder_layers",
    "relative_attention_num_buckets", "num_labels",
})
_LAYER_KEYS = frozenset({"num_hidden_layers", "n_layer", "n_layers", "num_decoder_layers"})
_EXPERT_KEYS = frozenset({"num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok",
                          "n_shared_experts"})
# Bounds far above any published model (the deepest have ~10^2 layers, widest ~10^5 hidden units, vocabularies
# ~10^6, contexts ~10^7 tokens) that keep every estimate fast and every product of sizes exact in int64.
MAX_LAYERS = 1 << 14
MAX_EXPERTS = 1 << 16
MAX_CONFIG_INT = 1 << 26


class _Cfg:
    """Key access that fails with one line naming the file and the key (missing, wrong type, out of range)."""

    def __init__(self, data: Mapping[str, Any], where: str, model_type: str):
        self.data, self.where, self.model_type = data, where, model_type

    def req(self, *keys: str) -> Any:
        for key in keys:
            if self.data.get(key) is not None:
                return self._checked(key, self.data[key])
        raise SizeupError(
            f"{self.where}: {self.model_type} config is missing key {keys[0]!r}"
            + (f" (or {', '.join(repr(k) for k in keys[1:])})" if len(keys) > 1 else "")
        )

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else self._checked(key, value)

    def _checked(self, key: str, value: Any) -> Any:
        def bad(what: str) -> SizeupError:
            return SizeupError(f"{self.where}: {key} must be {what}, got {json.dumps(value)[:60]}")

        if key in _STRUCT_KEYS:
            return value
        if key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise bad("true or false")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        if key in _FLOAT_KEYS:
            if not (math.isfinite(value) and 0 < value <= MAX_CONFIG_INT):
                raise bad(f"a finite number in (0, {MAX_CONFIG_INT}]")
            return value
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise bad("a whole number")
            value = int(value)
        low = 1 if key in _POSITIVE_KEYS else 0
        high = MAX_LAYERS if key in _LAYER_KEYS else MAX_EXPERTS if key in _EXPERT_KEYS else MAX_CONFIG_INT
        if not low <= value <= high:
            raise bad(f"a whole number from {low} to {high:,}")
        return value


def _llama_like(c: _Cfg, **overrides: Any) -> dict[str, Any]:
    """Fields shared by Llama-style decoders (RMSNorm, gated MLP, RoPE, untied unless stated)."""
    heads = int(c.req("num_attention_heads"))
    hidden = int(c.req("hidden_size"))
    out: dict[str, Any] = dict(
        vocab_size=c.req("vocab_size"),
        hidden_size=hidden,
        num_layers=c.req("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=c.get("num_key_value_heads", heads),
        head_dim=c.get("head_dim", hidden // heads),
        ffn_size=c.req("intermediate_size"),
        qkv_bias=bool(c.get("attention_bias", False)),
        out_bias=bool(c.get("attention_bias", False)),
        mlp_bias=bool(c.get("mlp_bias", False)),
        max_seq_len=c.get("max_position_embeddings", 2048),
        tie_embeddings=bool(c.get("tie_word_embeddings", _TIED_DEFAULT.get(c.model_type, False))),
    )
    out.update(overrides)
    return out


def _sliding(c: _Cfg) -> dict[str, Any]:
    window = c.get("sliding_window", 0) or 0
    if c.model_type in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe") and not c.get("use_sliding_window", False):
        window = 0
    return {"sliding_window": int(window)} if window else {}


def _llama(c: _Cfg) -> dict[str, Any]:
    return _llama_like(c, **_sliding(c))


def _mixtral(c: _Cfg) -> dict[str, Any]:
    ffn = c.req("intermediate_size")
    return _llama_like(c, num_experts=c.req("num_local_experts"), experts_per_token=c.req("num_experts_per_tok"),
                       expert_ffn_size=ffn, **_sliding(c))


def _qwen2(c: _Cfg) -> dict[str, Any]:
    # Qwen2 attention: q/k/v projections always carry a bias, o_proj never does.
    return _llama_like(c, qkv_bias=True, out_bias=False, **_sliding(c))


def _moe_schedule(c: _Cfg, num_layers: int) -> dict[str, Any]:
    """Qwen-MoE layer i is sparse when (i+1) % decoder_sparse_step == 0 and i not in mlp_only_layers."""
    step = int(c.get("decoder_sparse_step", 1))
    only_dense = sorted(int(i) for i in c.get("mlp_only_layers", []) or [])
    if only_dense and only_dense != list(range(len(only_dense))):
        raise SizeupError(f"{c.where}: mlp_only_layers {only_dense} is not a leading block of layers; not supported")
    first = max(step - 1, len(only_dense))
    if only_dense and step > 1:
        raise SizeupError(f"{c.where}: mlp_only_layers together with decoder_sparse_step > 1 is not supported")
    return {"first_k_dense_layers": min(first, num_layers), "moe_layer_freq": step}


def _qwen2_moe(c: _Cfg) -> dict[str, Any]:
    out = _llama_like(c, qkv_bias=True, out_bias=False, **_sliding(c))
    shared = int(c.get("shared_expert_intermediate_size", 0))
    out.update(num_experts=c.req("num_experts"), experts_per_token=c.req("num_experts_per_tok"),
               expert_ffn_size=c.req("moe_intermediate_size"), **_moe_schedule(c, int(out["num_layers"])))
    if shared:
        out.update(num_shared_experts=1, shared_expert_ffn_size=shared, shared_expert_gate=True)
    return out


def _qwen3(c: _Cfg) -> dict[str, Any]:
    return _llama_like(c, qk_norm=QkNorm.HEAD, **_sliding(c))


def _qwen3_moe(c: _Cfg) -> dict[str, Any]:
    out = _llama_like(c, qk_norm=QkNorm.HEAD, **_sliding(c))
    out.update(num_experts=c.req("num_experts"), experts_per_token=c.req("num_experts_per_tok"),
               expert_ffn_size=c.req("moe_intermediate_size"), **_moe_schedule(c, int(out["num_layers"])))
    return out


def _gemma(c: _Cfg) -> dict[str, Any]:
    return _llama_like(c, mlp_kind=MlpKind.GEGLU)


def _gemma2(c: _Cfg) -> dict[str, Any]:
    out = _llama_like(c, mlp_kind=MlpKind.GEGLU, norms_per_layer=4)
    window = int(c.get("sliding_window", 0) or 0)
    if window:
        # transformers Gemma2: layer i uses the local window when i is even
        out.update(sliding_window=window, sliding_window_layers=(int(out["num_layers"]) + 1) // 2)
    return out


def _gemma3(c: _Cfg) -> dict[str, Any]:
    out = _llama_like(c, mlp_kind=MlpKind.GEGLU, norms_per_layer=4, qk_norm=QkNorm.HEAD)
    window = int(c.get("sliding_window", 0) or 0)
    if window:
        # transformers Gemma3: layer_types, else every `sliding_window_pattern`-th layer (default 6) is global
        layers = int(out["num_layers"])
        types = c.get("layer_types")
        if isinstance(types, list) and types:
            local = sum(1 for t in types if str(t) == "sliding_attention")
        else:
            pattern = int(c.get("sliding_window_pattern", 6) or 6)
            local = sum(1 for i in range(layers) if (i + 1) % pattern)
        out.update(sliding_window=window, sliding_window_layers=local)
    return out


def _phi3(c: _Cfg) -> dict[str, Any]:
    return _llama_like(c, **_sliding(c))


def _olmo2(c: _Cfg) -> dict[str, Any]:
    return _llama_like(c, qk_norm=QkNorm.FULL)


def _nemotron(c: _Cfg) -> dict[str, Any]:
    # NemotronLayerNorm1P carries weight and bias; MLP is up/down with squared ReLU (2 matrices)
    return _llama_like(c, mlp_kind=MlpKind.RELU, norm_kind=NormKind.LAYERNORM, norm_bias=True)


def _llama4(c: _Cfg) -> dict[str, Any]:
    out = _llama_like(c, ffn_size=c.req("intermediate_size_mlp"))
    layers = int(out["num_layers"])
    step = int(c.get("interleave_moe_layer_step", 1))
    moe_layers = c.get("moe_layers")
    expected = list(range(step - 1, layers, step))
    if moe_layers is not None and [int(i) for i in moe_layers] != expected:
        raise SizeupError(f"{c.where}: llama4 moe_layers {moe_layers} is not a regular interleave; not supported")
    out.update(num_experts=c.req("num_local_experts"), experts_per_token=c.get("num_experts_per_tok", 1),
               expert_ffn_size=c.req("intermediate_size"), num_shared_experts=1,
               first_k_dense_layers=step - 1, moe_layer_freq=step)
    return out


def _deepseek_v3(c: _Cfg) -> dict[str, Any]:
    out = _llama_like(c)
    out.update(
        num_kv_heads=out["num_heads"], head_dim=None,
        num_experts=c.get("n_routed_experts", 0), experts_per_token=c.get("num_experts_per_tok", 0),
        num_shared_experts=c.get("n_shared_experts", 0), expert_ffn_size=c.get("moe_intermediate_size", 0),
        first_k_dense_layers=c.get("first_k_dense_replace", 0), moe_layer_freq=c.get("moe_layer_freq", 1),
        q_lora_rank=c.get("q_lora_rank", 0), kv_lora_rank=c.req("kv_lora_rank"),
        qk_rope_head_dim=c.req("qk_rope_head_dim"), qk_nope_head_dim=c.req("qk_nope_head_dim"),
        v_head_dim=c.req("v_head_dim"),
    )
    out.pop("head_dim")
    return out


def _gpt2(c: _Cfg) -> dict[str, Any]:
    hidden = int(c.req("n_embd", "hidden_size"))
    positions = int(c.req("n_positions", "max_position_embeddings"))
    return dict(
        vocab_size=c.req("vocab_size"), hidden_size=hidden, num_layers=c.req("n_layer", "num_hidden_layers"),
        num_heads=c.req("n_head", "num_attention_heads"), ffn_size=c.get("n_inner") or 4 * hidden,
        mlp_kind=MlpKind.GELU, norm_kind=NormKind.LAYERNORM, norm_bias=True, qkv_bias=True, out_bias=True,
        mlp_bias=True, position=PositionKind.LEARNED, num_position_embeddings=positions, max_seq_len=positions,
        tie_embeddings=bool(c.get("tie_word_embeddings", True)),
    )


def _t5(c: _Cfg) -> dict[str, Any]:
    """T5 / mT5 (transformers modeling_t5.py, configuration_t5.py): q, k, v, o of inner width num_heads x d_kv
    without biases, T5LayerNorm (weight only), DenseReluDense wi/wo or gated wi_0/wi_1/wo ('gated-gelu'), a relative
    attention bias in the first layer of each stack, tie_word_embeddings default true (T5Config)."""
    act = str(c.data.get("feed_forward_proj") or "relu")
    gated = act.startswith("gated-") or bool(c.data.get("is_gated_act"))
    base = act.split("-")[-1]
    layers = int(c.req("num_layers"))
    return dict(
        architecture=ArchKind.ENCODER_DECODER, vocab_size=c.req("vocab_size"), hidden_size=c.req("d_model"),
        num_layers=layers, num_decoder_layers=int(c.get("num_decoder_layers") or layers),
        num_heads=c.req("num_heads"), head_dim=c.req("d_kv"), ffn_size=c.req("d_ff"),
        mlp_kind=(MlpKind.GEGLU if gated else MlpKind.GELU) if "gelu" in base else
        (MlpKind.SWIGLU if gated else MlpKind.RELU),
        norm_kind=NormKind.RMSNORM, position=PositionKind.RELATIVE,
        relative_attention_buckets=int(c.get("relative_attention_num_buckets") or 32),
        tie_embeddings=bool(c.get("tie_word_embeddings", True)), max_seq_len=int(c.get("n_positions") or 512),
        dropout=_prob(c, "dropout_rate", 0.1),
    )


def _bert(c: _Cfg) -> dict[str, Any]:
    """BERT (transformers modeling_bert.py): word + absolute position + token-type embeddings and a LayerNorm,
    post-LN layers with biases everywhere, 2-matrix GELU MLP, pooler; read as the bare BertModel (AutoModel)."""
    positions = int(c.req("max_position_embeddings"))
    return dict(
        architecture=ArchKind.ENCODER, vocab_size=c.req("vocab_size"), hidden_size=c.req("hidden_size"),
        num_layers=c.req("num_hidden_layers"), num_heads=c.req("num_attention_heads"),
        ffn_size=c.req("intermediate_size"), mlp_kind=MlpKind.GELU, norm_kind=NormKind.LAYERNORM, norm_bias=True,
        qkv_bias=True, out_bias=True, mlp_bias=True, final_norm=False, embed_norm=True,
        position=PositionKind.LEARNED, num_position_embeddings=positions, max_seq_len=positions,
        type_vocab_size=int(c.get("type_vocab_size", 2)), pooler=True, head=HeadKind.NONE, tie_embeddings=False,
        dropout=_prob(c, "hidden_dropout_prob", 0.1),
    )


def _prob(c: _Cfg, key: str, default: float) -> float:
    """A dropout probability of the config (the transformers config class default when absent)."""
    value = c.data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise SizeupError(f"{c.where}: {key} must be a number in [0, 1), got {json.dumps(value)[:60]}")
    return float(value)


def _gpt_neox(c: _Cfg) -> dict[str, Any]:
    bias = bool(c.get("attention_bias", True))
    return dict(
        vocab_size=c.req("vocab_size"), hidden_size=c.req("hidden_size"), num_layers=c.req("num_hidden_layers"),
        num_heads=c.req("num_attention_heads"), ffn_size=c.req("intermediate_size"), mlp_kind=MlpKind.GELU,
        norm_kind=NormKind.LAYERNORM, norm_bias=True, qkv_bias=bias, out_bias=bias, mlp_bias=True,
        parallel_block=bool(c.get("use_parallel_residual", True)), max_seq_len=c.get("max_position_embeddings", 2048),
        tie_embeddings=bool(c.get("tie_word_embeddings", False)),
    )


def _gptj(c: _Cfg) -> dict[str, Any]:
    hidden = int(c.req("n_embd", "hidden_size"))
    # GPT-J: q/k/v/out without bias, fc_in/fc_out with bias, one LayerNorm per (parallel) block, lm_head with bias
    return dict(
        vocab_size=c.req("vocab_size"), hidden_size=hidden, num_layers=c.req("n_layer", "num_hidden_layers"),
        num_heads=c.req("n_head", "num_attention_heads"), ffn_size=c.get("n_inner") or 4 * hidden,
        mlp_kind=MlpKind.GELU, norm_kind=NormKind.LAYERNORM, norm_bias=True, mlp_bias=True, norms_per_layer=1,
        parallel_block=True, lm_head_bias=True, max_seq_len=c.get("n_positions", 2048),
        tie_embeddings=bool(c.get("tie_word_embeddings", False)),
    )


def _falcon(c: _Cfg) -> dict[str, Any]:
    hidden = int(c.req("hidden_size", "n_embed"))
    heads = int(c.req("num_attention_heads", "n_head"))
    new_arch = bool(c.get("new_decoder_architecture", False))
    parallel = bool(c.get("parallel_attn", True))
    if new_arch:
        kv = int(c.get("num_kv_heads", heads))
        norms = 2 if int(c.get("num_ln_in_parallel_attn", 2)) == 2 else 1
    else:
        kv = 1 if c.get("multi_query", True) else heads
        norms = 1 if parallel else 2
    bias = bool(c.get("bias", False))
    alibi = bool(c.get("alibi", False))
    return dict(
        vocab_size=c.req("vocab_size"), hidden_size=hidden, num_layers=c.req("num_hidden_layers", "n_layer"),
        num_heads=heads, num_kv_heads=kv, ffn_size=c.get("ffn_hidden_size") or 4 * hidden, mlp_kind=MlpKind.GELU,
        norm_kind=NormKind.LAYERNORM, norm_bias=True, qkv_bias=bias, out_bias=bias, mlp_bias=bias,
        norms_per_layer=norms, parallel_block=new_arch or parallel,
        position=PositionKind.ALIBI if alibi else PositionKind.ROTARY,
        max_seq_len=c.get("max_position_embeddings", 2048), tie_embeddings=bool(c.get("tie_word_embeddings", True)),
    )


def _mpt(c: _Cfg) -> dict[str, Any]:
    # llm-foundry semantics (the config.json of mosaicml/* checkpoints is an llm-foundry MPTConfig)
    hidden = int(c.req("d_model"))
    attn = c.get("attn_config", {}) or {}
    alibi = bool(attn.get("alibi", False))
    learned = bool(c.get("learned_pos_emb", True)) and not alibi
    seq = int(c.get("max_seq_len", 2048))
    bias = not bool(c.get("no_bias", False))
    ffn_cfg = c.get("ffn_config", {}) or {}
    ffn = ffn_cfg.get("ffn_hidden_size") or int(float(c.get("expansion_ratio", 4)) * hidden)
    out = dict(
        vocab_size=c.req("vocab_size"), hidden_size=hidden, num_layers=c.req("n_layers"), num_heads=c.req("n_heads"),
        num_kv_heads=attn.get("kv_n_heads") or c.req("n_heads"), ffn_size=ffn, mlp_kind=MlpKind.GELU,
        norm_kind=NormKind.LAYERNORM, norm_bias=bias, qkv_bias=bias, out_bias=bias, mlp_bias=bias,
        qk_norm=QkNorm.FULL if attn.get("qk_ln") else QkNorm.NONE,
        position=PositionKind.ALIBI if alibi else (PositionKind.LEARNED if learned else PositionKind.NONE),
        max_seq_len=seq, tie_embeddings=bool(c.get("tie_word_embeddings", True)),
    )
    if learned:
        out["num_position_embeddings"] = seq
    return out


def _opt(c: _Cfg) -> dict[str, Any]:
    hidden = int(c.req("hidden_size"))
    proj = c.get("word_embed_proj_dim", hidden)
    if int(proj) != hidden:
        raise SizeupError(f"{c.where}: OPT with word_embed_proj_dim ({proj}) != hidden_size ({hidden}) "
                          "(project_in/project_out, e.g. opt-350m) is not supported")
    positions = int(c.get("max_position_embeddings", 2048))
    bias = bool(c.get("enable_bias", True))
    return dict(
        vocab_size=c.req("vocab_size"), hidden_size=hidden, num_layers=c.req("num_hidden_layers"),
        num_heads=c.req("num_attention_heads"), ffn_size=c.req("ffn_dim"), mlp_kind=MlpKind.RELU,
        norm_kind=NormKind.LAYERNORM, norm_bias=True, qkv_bias=bias, out_bias=bias, mlp_bias=bias,
        final_norm=bool(c.get("do_layer_norm_before", True)) and not bool(c.get("_remove_final_layer_norm", False)),
        # OPTLearnedPositionalEmbedding keeps 2 extra rows (padding offset)
        position=PositionKind.LEARNED, num_position_embeddings=positions + 2, max_seq_len=positions,
        tie_embeddings=bool(c.get("tie_word_embeddings", True)),
    )


def _bloom(c: _Cfg) -> dict[str, Any]:
    hidden = int(c.req("hidden_size", "n_embed"))
    return dict(
        vocab_size=c.req("vocab_size"), hidden_size=hidden, num_layers=c.req("n_layer", "num_hidden_layers"),
        num_heads=c.req("n_head", "num_attention_heads"), ffn_size=4 * hidden, mlp_kind=MlpKind.GELU,
        norm_kind=NormKind.LAYERNORM, norm_bias=True, qkv_bias=True, out_bias=True, mlp_bias=True, embed_norm=True,
        position=PositionKind.ALIBI, max_seq_len=c.get("seq_length", 2048),
        tie_embeddings=bool(c.get("tie_word_embeddings", True)),
    )


MAPPERS: dict[str, Callable[[_Cfg], dict[str, Any]]] = {
    "llama": _llama, "mistral": _llama, "mixtral": _mixtral, "qwen2": _qwen2, "qwen2_moe": _qwen2_moe,
    "qwen3": _qwen3, "qwen3_moe": _qwen3_moe, "gemma": _gemma, "gemma2": _gemma2, "gemma3_text": _gemma3, "phi3": _phi3,
    "olmo2": _olmo2, "nemotron": _nemotron, "llama4_text": _llama4, "deepseek_v3": _deepseek_v3, "gpt2": _gpt2,
    "gpt_neox": _gpt_neox, "gptj": _gptj, "falcon": _falcon, "mpt": _mpt, "opt": _opt, "bloom": _bloom,
    "t5": _t5, "mt5": _t5, "bert": _bert,
}
SUPPORTED_MODEL_TYPES = tuple(sorted(MAPPERS))


def _read_json(path: Path) -> dict[str, Any]:
    from sizeup.catalog import parse_json_text, read_user_text

    data = parse_json_text(read_user_text(path, "config file"), str(path))
    if not isinstance(data, dict):
        raise SizeupError(f"{path} is not a Hugging Face config: expected a JSON object, got {type(data).__name__}")
    return data


_SPLIT_HIDDEN_TYPES = frozenset({"gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "mpt"})
def _numerics(data: Mapping[str, Any]) -> dict[str, Any]:
    """RoPE base / scaling and norm epsilon as config.json spells them (transformers v4 `rope_theta` +
    `rope_scaling`; v5 `rope_parameters`; `rms_norm_eps` / `layer_norm_eps` / `layer_norm_epsilon`)."""
    params = data.get("rope_parameters") if isinstance(data.get("rope_parameters"), dict) else {}
    theta = data.get("rope_theta", params.get("rope_theta"))
    scaling = data.get("rope_scaling") if isinstance(data.get("rope_scaling"), dict) else {
        k: v for k, v in params.items() if k != "rope_theta"}
    scaling = {str(k): v for k, v in (scaling or {}).items()
               if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    if scaling.get("rope_type", scaling.get("type")) == "default":
        scaling = {}
    eps = next((data[k] for k in ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_epsilon",
                                  "norm_eps") if isinstance(data.get(k), (int, float))), None)
    return {"rope_theta": float(theta) if isinstance(theta, (int, float)) and theta > 0 else None,
            "norm_eps": float(eps) if eps else None, "rope_scaling": scaling or None}


def arch_from_hf_dict(data: Mapping[str, Any], model_id: str = "", where: str = "config.json") -> ModelArch:
    """Build a ModelArch from an already-parsed config.json dict (validated through ModelFile)."""
    from pydantic import ValidationError

    from sizeup.catalog import check_shape
    from sizeup.schema import ModelFile

    if not isinstance(data, Mapping):
        raise SizeupError(f"{where}: expected a JSON object (a Hugging Face config), got {type(data).__name__}")
    check_shape(data, where)

    model_type = str(data.get("model_type") or "")
    if not model_type:
        raise SizeupError(f"{where}: missing key 'model_type' (supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    text_config = data.get("text_config")
    if model_type not in MAPPERS and isinstance(text_config, dict) and text_config.get("model_type") in MAPPERS:
        # multimodal wrapper (e.g. llama4): the language model lives in text_config
        merged = dict(text_config)
        merged.setdefault("tie_word_embeddings", data.get("tie_word_embeddings"))
        return arch_from_hf_dict(merged, model_id or str(data.get("_name_or_path") or ""), where)
    if model_type in ENCODER_DECODER_TYPES or (data.get("is_encoder_decoder") and model_type not in MAPPERS):
        raise SizeupError(f"{where}: model_type {model_type!r} is an encoder or encoder-decoder model sizeup does not "
                          "read (supported encoder kinds: bert, t5, mt5)")
    mapper = MAPPERS.get(model_type)
    if mapper is None:
        from sizeup.errors import did_you_mean

        raise SizeupError(f"{where}: unsupported model_type {model_type!r}.{did_you_mean(model_type, MAPPERS)} "
                          f"Supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    cfg = _Cfg(data, where, model_type)
    try:
        fields = mapper(cfg)
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, KeyError, IndexError) as exc:
        raise SizeupError(f"{where}: a {model_type} config value has the wrong type or range "
                          f"({type(exc).__name__}: {str(exc)[:120]})") from None
    ident = model_id or str(data.get("_name_or_path") or "") or "config"
    fields.update(_numerics(data))
    fields = {k: v for k, v in fields.items() if v is not None}
    hidden, heads = fields.get("hidden_size"), fields.get("num_heads")
    if model_type in _SPLIT_HIDDEN_TYPES and isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        # these transformers classes derive head_dim = hidden / heads and refuse a remainder
        raise SizeupError(f"{where}: hidden size {hidden} is not divisible by {heads} attention heads "
                          f"({model_type} derives the head size from them)")
    try:
        mf = ModelFile.model_validate(dict(
            name=ident, source=f"Hugging Face config.json ({where})", aliases=[], hf_model_type=model_type, **fields))
    except ValidationError as exc:
        raise SizeupError(f"{where}: {pydantic_message(exc)}") from None
    except (TypeError, ValueError) as exc:
        raise SizeupError(f"{where}: {exc}") from None
    return mf.to_core(ident)


def load_hf_config(path: str | Path) -> ModelArch:
    """A ModelArch from a Hugging Face config.json (id = `_name_or_path` or the parent folder / file stem)."""
    path = Path(path)
    data = _read_json(path)
    stem = path.parent.name if path.stem == "config" and path.parent.name else path.stem
    return arch_from_hf_dict(data, str(data.get("_name_or_path") or "") or stem, str(path))


# --------------------------------------------------------------------------- export


def to_hf_config_dict(m: ModelArch, model_type: str | None = None) -> dict[str, Any]:
    """A transformers config dict that builds the same architecture (inverse of `arch_from_hf_dict`).

    Raises SizeupError when the architecture cannot be expressed by that model_type.
    """
    mt = model_type or m.hf_model_type
    if not mt:
        raise SizeupError(f"model {m.id!r} has no Hugging Face model_type; pass one of: {', '.join(SUPPORTED_MODEL_TYPES)}")
    d: dict[str, Any] = {"model_type": mt, "vocab_size": m.vocab_size, "tie_word_embeddings": m.tie_embeddings}
    llama_like = {
        "hidden_size": m.hidden_size, "num_hidden_layers": m.num_layers, "num_attention_heads": m.num_heads,
        "num_key_value_heads": m.num_kv_heads, "head_dim": m.head_dim, "intermediate_size": m.ffn_size,
        "max_position_embeddings": m.max_seq_len,
    }

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise SizeupError(f"model {m.id!r} cannot be expressed as Hugging Face {mt!r}: {what}")

    if mt in ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
              "gemma3_text", "phi3", "olmo2", "nemotron", "llama4_text"):
        d.update(llama_like)
        if mt in ("llama", "olmo2", "nemotron", "llama4_text"):
            need(m.qkv_bias == m.out_bias, "q/k/v and o biases must match")
            d["attention_bias"] = m.qkv_bias
        if mt in ("llama", "nemotron"):
            d["mlp_bias"] = m.mlp_bias
        if m.sliding_window and mt in ("mistral", "mixtral", "gemma2", "gemma3_text"):
            d["sliding_window"] = m.sliding_window
        if mt == "mixtral":
            d.update(num_local_experts=m.num_experts, num_experts_per_tok=m.experts_per_token,
                     intermediate_size=m.expert_ffn_size)
        if mt in ("qwen2_moe", "qwen3_moe"):
            d.update(num_experts=m.num_experts, num_experts_per_tok=m.experts_per_token,
                     moe_intermediate_size=m.expert_ffn_size, decoder_sparse_step=m.moe_layer_freq,
                     mlp_only_layers=list(range(m.first_k_dense_layers)) if m.moe_layer_freq == 1 else [])
            if mt == "qwen2_moe":
                d["shared_expert_intermediate_size"] = (m.shared_expert_ffn_size or m.expert_ffn_size) if m.num_shared_experts else 0
        if mt == "llama4_text":
            d.update(intermediate_size=m.expert_ffn_size, intermediate_size_mlp=m.ffn_size,
                     num_local_experts=m.num_experts, num_experts_per_tok=m.experts_per_token,
                     interleave_moe_layer_step=m.moe_layer_freq)
        if mt == "nemotron":
            d["hidden_act"] = "relu2"
        if mt in ("gemma", "gemma2", "gemma3_text"):
            d["hidden_act"] = "gelu_pytorch_tanh"
            d["hidden_activation"] = "gelu_pytorch_tanh"
    elif mt == "deepseek_v3":
        d.update(hidden_size=m.hidden_size, num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
                 num_key_value_heads=m.num_heads, intermediate_size=m.ffn_size,
                 moe_intermediate_size=m.expert_ffn_size, n_routed_experts=m.num_experts,
                 num_experts_per_tok=m.experts_per_token, n_shared_experts=m.num_shared_experts,
                 first_k_dense_replace=m.first_k_dense_layers, moe_layer_freq=m.moe_layer_freq,
                 q_lora_rank=m.q_lora_rank or None, kv_lora_rank=m.kv_lora_rank, qk_rope_head_dim=m.qk_rope_head_dim,
                 qk_nope_head_dim=m.qk_nope_head_dim, v_head_dim=m.v_head_dim, head_dim=m.qk_rope_head_dim,
                 max_position_embeddings=m.max_seq_len, attention_bias=m.qkv_bias, n_group=1, topk_group=1)
    elif mt == "gpt2":
        need(m.num_heads * m.head_dim == m.hidden_size, "heads x head_dim must equal hidden_size")
        need(m.position == PositionKind.LEARNED, "GPT-2 uses learned positions")
        d.update(n_embd=m.hidden_size, n_layer=m.num_layers, n_head=m.num_heads, n_inner=m.ffn_size,
                 n_positions=m.num_position_embeddings)
    elif mt == "gpt_neox":
        d.update(hidden_size=m.hidden_size, num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
                 intermediate_size=m.ffn_size, max_position_embeddings=m.max_seq_len,
                 use_parallel_residual=m.parallel_block, attention_bias=m.qkv_bias)
    elif mt == "gptj":
        d.update(n_embd=m.hidden_size, n_layer=m.num_layers, n_head=m.num_heads, n_inner=m.ffn_size,
                 n_positions=m.max_seq_len, rotary_dim=m.head_dim // 2)
    elif mt == "falcon":
        new_arch = m.norms_per_layer == 2 and m.parallel_block
        d.update(hidden_size=m.hidden_size, num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
                 ffn_hidden_size=m.ffn_size, bias=m.qkv_bias, alibi=m.position == PositionKind.ALIBI,
                 parallel_attn=m.parallel_block, new_decoder_architecture=new_arch,
                 multi_query=m.num_kv_heads == 1, num_kv_heads=m.num_kv_heads, max_position_embeddings=m.max_seq_len)
    elif mt == "mpt":
        d.update(d_model=m.hidden_size, n_layers=m.num_layers, n_heads=m.num_heads,
                 expansion_ratio=(m.ffn_size // m.hidden_size if m.ffn_size % m.hidden_size == 0
                                  else m.ffn_size / m.hidden_size), max_seq_len=m.max_seq_len,
                 no_bias=not m.qkv_bias, attn_config={"alibi": m.position == PositionKind.ALIBI})
    elif mt == "opt":
        need(m.position == PositionKind.LEARNED, "OPT uses learned positions")
        d.update(hidden_size=m.hidden_size, num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
                 ffn_dim=m.ffn_size, max_position_embeddings=m.num_position_embeddings - 2,
                 word_embed_proj_dim=m.hidden_size, enable_bias=m.qkv_bias, do_layer_norm_before=m.final_norm)
    elif mt == "bloom":
        d.update(hidden_size=m.hidden_size, n_layer=m.num_layers, n_head=m.num_heads)
    elif mt in ("t5", "mt5"):
        need(m.is_encoder_decoder, "T5 is an encoder-decoder")
        need(m.mlp_kind in (MlpKind.GELU, MlpKind.GEGLU, MlpKind.RELU), "T5 MLPs are relu, gelu or gated-gelu")
        d.update(d_model=m.hidden_size, num_layers=m.num_layers, num_decoder_layers=m.num_decoder_layers,
                 num_heads=m.num_heads, d_kv=m.head_dim, d_ff=m.ffn_size,
                 feed_forward_proj={MlpKind.GEGLU: "gated-gelu", MlpKind.GELU: "gelu"}.get(m.mlp_kind, "relu"),
                 relative_attention_num_buckets=m.relative_attention_buckets, is_encoder_decoder=True)
    elif mt == "bert":
        need(m.arch_kind == ArchKind.ENCODER, "BERT is an encoder")
        d.update(hidden_size=m.hidden_size, num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
                 intermediate_size=m.ffn_size, max_position_embeddings=m.num_position_embeddings,
                 type_vocab_size=m.type_vocab_size)
        if m.head == HeadKind.CLASSIFIER:
            d["num_labels"] = m.num_labels
    else:
        raise SizeupError(f"cannot export model_type {mt!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return d
