"""ModelArch -> Hugging Face `config.json` dict, so exact mode can build the real transformers module.

Pure Python (no torch): the dict is what `transformers.AutoConfig.for_model(**d)` takes.
Supported families: GPT-2 (learned positions, LayerNorm, GELU MLP), Llama-style decoders
(RoPE, RMSNorm, gated/plain MLP, GQA, optional qkv bias or per-head qk-norm: llama / qwen2 / qwen3),
Mixtral-style MoE (no shared expert) and Qwen2-MoE (shared expert with a sigmoid gate).
Field names follow each family's `configuration_*.py` in transformers 5.x.
"""

from __future__ import annotations

from sizeup.core.types import MlpKind, ModelArch, NormKind, PositionKind, QkNorm
from sizeup.errors import SizeupError

_ACT = {MlpKind.SWIGLU: "silu", MlpKind.GEGLU: "gelu_pytorch_tanh", MlpKind.GELU: "gelu_new", MlpKind.RELU: "relu"}


def _unsupported(arch: ModelArch, why: str) -> SizeupError:
    return SizeupError(
        f"exact mode cannot build {arch.id!r} from its architecture: {why}; "
        "pass the model's Hugging Face config.json instead"
    )


def arch_to_hf_config(arch: ModelArch, dropout: float = 0.0) -> dict:
    """A transformers config dict that builds a module with exactly `count_params(arch)` parameters."""
    if arch.is_mla:
        raise _unsupported(arch, "multi-head latent attention (MLA) is not converted")
    if arch.parallel_block or arch.embed_norm:
        raise _unsupported(arch, "parallel blocks / embedding norms are not converted")
    common = {
        "vocab_size": arch.vocab_size,
        "tie_word_embeddings": arch.tie_embeddings,
        "use_cache": False,
    }
    if arch.position == PositionKind.LEARNED:
        # GPT-2 family: configuration_gpt2.py (n_embd, n_layer, n_head, n_inner, n_positions, *_pdrop)
        if arch.norm_kind != NormKind.LAYERNORM or arch.mlp_kind.gated or arch.num_kv_heads != arch.num_heads:
            raise _unsupported(arch, "learned positions are only converted for GPT-2-style blocks")
        if not (arch.qkv_bias and arch.out_bias and arch.mlp_bias and arch.norm_bias):
            raise _unsupported(arch, "GPT-2 modules always carry biases")
        return {
            **common,
            "model_type": "gpt2",
            "n_embd": arch.hidden_size,
            "n_layer": arch.num_layers,
            "n_head": arch.num_heads,
            "n_inner": arch.ffn_size,
            "n_positions": arch.num_position_embeddings,
            "activation_function": _ACT[arch.mlp_kind],
            "resid_pdrop": dropout,
            "embd_pdrop": dropout,
            "attn_pdrop": dropout,
            "layer_norm_epsilon": 1e-5,
        }
    if arch.position != PositionKind.ROTARY or arch.norm_kind != NormKind.RMSNORM:
        raise _unsupported(arch, f"position {arch.position.value} with {arch.norm_kind.value} is not converted")
    llama_like = {
        **common,
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "num_key_value_heads": arch.num_kv_heads,
        "head_dim": arch.head_dim,
        "hidden_act": _ACT[arch.mlp_kind],
        "max_position_embeddings": max(arch.max_seq_len, 1),
        "attention_dropout": dropout,
        "rms_norm_eps": 1e-6,
    }
    if arch.is_moe:
        if arch.moe_layer_freq != 1:
            raise _unsupported(arch, "MoE every n-th layer (moe_layer_freq > 1) is not converted")
        if arch.num_shared_experts:
            # configuration_qwen2_moe.py: one shared expert of shared_expert_intermediate_size + sigmoid gate
            if not arch.shared_expert_gate or not arch.qkv_bias or arch.out_bias:
                raise _unsupported(arch, "shared experts are converted as Qwen2-MoE (qkv bias, gated shared expert)")
            return {
                **llama_like,
                "model_type": "qwen2_moe",
                "intermediate_size": arch.ffn_size or arch.expert_ffn_size,
                "moe_intermediate_size": arch.expert_ffn_size,
                "shared_expert_intermediate_size": arch.shared_expert_ffn_size
                or arch.expert_ffn_size * arch.num_shared_experts,
                "num_experts": arch.num_experts,
                "num_experts_per_tok": arch.experts_per_token,
                "decoder_sparse_step": 1,
                "mlp_only_layers": list(range(arch.first_k_dense_layers)),
                "norm_topk_prob": True,
                "router_aux_loss_coef": 0.0,
                "output_router_logits": False,
            }
        # configuration_mixtral.py: num_local_experts experts of intermediate_size, no biases
        if arch.first_k_dense_layers or arch.qkv_bias or arch.out_bias or arch.mlp_bias or arch.router_bias:
            raise _unsupported(arch, "Mixtral-style MoE has no dense layers and no biases")
        return {
            **llama_like,
            "model_type": "mixtral",
            "intermediate_size": arch.expert_ffn_size,
            "num_local_experts": arch.num_experts,
            "num_experts_per_tok": arch.experts_per_token,
            "router_aux_loss_coef": 0.0,
            "output_router_logits": False,
            "router_jitter_noise": 0.0,
        }
    if not arch.mlp_kind.gated:
        raise _unsupported(arch, "RoPE + RMSNorm models are converted with a gated MLP only")
    if arch.qk_norm == QkNorm.HEAD:
        # configuration_qwen3.py: per-head q/k RMSNorm, optional attention_bias on q, k, v and o
        if arch.qkv_bias != arch.out_bias:
            raise _unsupported(arch, "qk-norm models take one attention_bias for q, k, v and o")
        return {**llama_like, "model_type": "qwen3", "intermediate_size": arch.ffn_size,
                "attention_bias": arch.qkv_bias}
    if arch.qk_norm != QkNorm.NONE:
        raise _unsupported(arch, "full-width qk-norm is not converted")
    if arch.qkv_bias and not arch.out_bias:
        if arch.mlp_bias:
            raise _unsupported(arch, "qkv bias with mlp bias is not converted")
        # configuration_qwen2.py: bias on q, k, v only
        return {**llama_like, "model_type": "qwen2", "intermediate_size": arch.ffn_size}
    if arch.qkv_bias != arch.out_bias:
        raise _unsupported(arch, "an output-projection bias without qkv bias is not converted")
    # configuration_llama.py: attention_bias (q, k, v, o) and mlp_bias
    return {**llama_like, "model_type": "llama", "intermediate_size": arch.ffn_size,
            "attention_bias": arch.qkv_bias, "mlp_bias": arch.mlp_bias}
