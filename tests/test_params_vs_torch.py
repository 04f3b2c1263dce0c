"""count_params(arch) == sum(p.numel()) of the transformers model built on the meta device.

Every preset whose architecture transformers implements is built from `to_hf_config_dict(arch)`
(GPT-2-shaped presets without an HF release -- GPT-3, Megatron GPT, NeMo GPT3, llm-foundry MPT -- are
built as their exact structural twin `gpt2`). Layers are reduced to the smallest count that keeps the
layer pattern (dense prefix + one MoE period, sliding/global alternation) so the test stays fast; the
count is linear in the number of layers, so this checks the per-layer and non-layer terms exactly.

Not verifiable here (no transformers architecture), checked by hand-derived tests instead:
  gpt3-13b (d_model 5140 != 40 heads x 128: not expressible as GPT-2), palm-540b (parallel SwiGLU +
  MQA, no HF class), mpt-1b-redpajama (custom mosaic_gpt code).
"""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from sizeup.catalog import load_catalog  # noqa: E402
from sizeup.catalog.hf_config import arch_from_hf_dict, to_hf_config_dict  # noqa: E402
from sizeup.core.params import count_params  # noqa: E402
from sizeup.core.types import ModelArch, NormKind, PositionKind  # noqa: E402

NOT_VERIFIABLE = {
    "gpt3-13b": "d_model 5140 with 40 heads of 128: HF GPT-2 needs heads*head_dim == hidden",
    "palm-540b": "no transformers architecture (parallel SwiGLU block + MQA, no biases)",
    "mpt-1b-redpajama": "custom mosaic_gpt code (attn_qk_ln) not in transformers",
    # sizeup's HF config export has no gpt_oss writer yet (attention sinks, alternating sliding window, MXFP4
    # experts); their totals are checked against the model cards in tests/test_offload_timing.py
    "gpt-oss-20b": "no gpt_oss config export yet (totals checked against the model card elsewhere)",
    "gpt-oss-120b": "no gpt_oss config export yet (totals checked against the model card elsewhere)",
}


def gpt2_twin(m: ModelArch) -> bool:
    """True when the arch is exactly a GPT-2 layer stack (learned positions, biases, LayerNorm, 4h GELU)."""
    return (m.position == PositionKind.LEARNED and m.norm_kind == NormKind.LAYERNORM and m.norm_bias
            and m.qkv_bias and m.out_bias and m.mlp_bias and m.norms_per_layer == 2 and not m.parallel_block
            and not m.is_moe and not m.embed_norm and m.num_heads * m.head_dim == m.hidden_size
            and m.num_kv_heads == m.num_heads and m.mlp_kind == "gelu")


def hf_type(m: ModelArch) -> str:
    if m.hf_model_type:
        return m.hf_model_type
    return "gpt2" if gpt2_twin(m) else ""


def reduced(m: ModelArch) -> ModelArch:
    """Fewest layers keeping the pattern: dense prefix + 2 MoE periods (or 2 layers when dense)."""
    if m.is_moe:
        first = min(m.first_k_dense_layers, 1)
        layers = first + 2 * m.moe_layer_freq
    else:
        first, layers = 0, 2
    layers = min(layers, m.num_layers)
    if m.is_encoder_decoder:
        return m.with_(num_layers=layers, num_decoder_layers=min(3, m.num_decoder_layers))
    window_layers = 0
    if m.sliding_window_layers:  # all layers windowed, or every other one (Gemma 2)
        window_layers = layers if m.sliding_window_layers == m.num_layers else (layers + 1) // 2
    return m.with_(num_layers=layers, first_k_dense_layers=first, sliding_window_layers=window_layers)


def torch_count(m: ModelArch) -> int:
    cfg_dict = to_hf_config_dict(m, hf_type(m))
    model_type = cfg_dict.pop("model_type")
    cfg = transformers.AutoConfig.for_model(model_type, **cfg_dict)
    cfg._attn_implementation = "eager"
    auto = transformers.AutoModelForCausalLM
    if m.is_encoder_decoder:
        auto = transformers.AutoModelForSeq2SeqLM  # T5ForConditionalGeneration / MT5ForConditionalGeneration
    elif m.arch_kind == "encoder":
        auto = transformers.AutoModelForSequenceClassification if m.head == "classifier" else transformers.AutoModel
    with torch.device("meta"):
        model = auto.from_config(cfg)
    untied_head = 0
    if m.is_encoder_decoder and not m.tie_embeddings and cfg.tie_word_embeddings:
        # transformers 5.x T5Config.__post_init__ forces tie_word_embeddings = True (it keeps the config's False only
        # as `scale_decoder_outputs`) and T5ForConditionalGeneration ties lm_head.weight to shared.weight; the T5
        # v1.1 / mT5 / T0 checkpoints carry their own lm_head (T0_3B's fp32 pytorch_model.bin is 11.4 GB = 2.85e9
        # x 4 B, i.e. with the untied V x h head), as transformers 4.x built them: add that head back
        untied_head = m.vocab_size * m.hidden_size
    return sum(p.numel() for p in model.parameters()) + untied_head


CATALOG = load_catalog()
CASES = sorted(k for k, m in CATALOG.models.items() if k not in NOT_VERIFIABLE)


def test_every_preset_is_classified():
    for model_id, m in CATALOG.models.items():
        assert model_id in NOT_VERIFIABLE or hf_type(m), f"{model_id}: no transformers twin and not listed"


@pytest.mark.parametrize("model_id", CASES)
def test_preset_matches_torch(model_id):
    m = reduced(CATALOG.models[model_id])
    assert count_params(m).total == torch_count(m)


@pytest.mark.parametrize("model_id", ["gpt2", "llama-2-7b", "qwen2.5-0.5b", "gemma-2-2b", "pythia-1b", "llama-3.2-1b"])
def test_small_presets_full_size(model_id):
    m = CATALOG.models[model_id]
    assert count_params(m).total == torch_count(m)


@pytest.mark.parametrize("model_id", ["mixtral-8x7b", "deepseek-v3", "llama-4-maverick"])
def test_moe_active_is_total_minus_unused_experts(model_id):
    m = reduced(CATALOG.models[model_id])
    pc = count_params(m)
    assert pc.active < pc.total
    # the torch model's parameter count of one routed expert times the unused ones
    one_expert = (3 * m.hidden_size * m.expert_ffn_size)
    assert pc.total - pc.active == m.num_moe_layers * (m.num_experts - m.experts_per_token) * one_expert


@pytest.mark.parametrize("model_id", CASES)
def test_export_import_roundtrip(model_id):
    m = reduced(CATALOG.models[model_id])
    back = arch_from_hf_dict(to_hf_config_dict(m, hf_type(m)), model_id)
    assert count_params(back).total == count_params(m).total


@pytest.mark.parametrize("model_id,total_b", [("gpt-oss-20b", 20.91), ("gpt-oss-120b", 116.83)])
def test_gpt_oss_totals_match_the_model_card(model_id, total_b):
    # OpenAI gpt-oss model card (Aug 2025), Table 1 "Total parameters": 20.91B and 116.83B. The presets cannot be
    # checked against transformers here (no gpt_oss export, see NOT_VERIFIABLE), so the card is the reference.
    from sizeup.core.params import count_params

    assert count_params(CATALOG.model(model_id)).total / 1e9 == pytest.approx(total_b, abs=0.01)


# encoder and encoder-decoder models: the full-size presets and variants (tied T5 v1.0 head, plain ReLU MLP, a
# classifier head on BERT) against transformers' own modules
@pytest.mark.parametrize("model_id", ["bert-base-cased", "bert-large-uncased", "t0-3b"])
def test_encoder_presets_full_size(model_id):
    m = CATALOG.models[model_id]
    assert count_params(m).total == torch_count(m)


def test_t5_v10_tied_relu_and_bert_classifier_match_torch():
    from sizeup.core.types import HeadKind, MlpKind

    t0 = CATALOG.models["t0-3b"]
    t5_v10 = reduced(t0).with_(mlp_kind=MlpKind.RELU, tie_embeddings=True, num_decoder_layers=1, num_layers=2)
    assert count_params(t5_v10).total == torch_count(t5_v10)
    bert = CATALOG.models["bert-large-uncased"].with_(head=HeadKind.CLASSIFIER, num_labels=3, num_layers=2)
    assert count_params(bert).total == torch_count(bert)


def test_t5_and_bert_config_json_read_back():
    # the published config.json of mt0-xxl (huggingface.co/bigscience/mt0-xxl, commit b5461b4) and bert-base-cased
    mt0 = arch_from_hf_dict({"model_type": "mt5", "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64,
                             "num_layers": 24, "num_decoder_layers": 24, "feed_forward_proj": "gated-gelu",
                             "relative_attention_num_buckets": 32, "tie_word_embeddings": False,
                             "vocab_size": 250112, "is_encoder_decoder": True}, "mt0")
    assert count_params(mt0).total == count_params(CATALOG.models["mt0-xxl"]).total
    bert = arch_from_hf_dict({"model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12,
                              "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
                              "type_vocab_size": 2, "vocab_size": 28996}, "bert")
    # BertModel of bert-base-cased: 108,310,272 parameters (accelerate docs: 413.18 MB in fp32 = 108.3M x 4 B)
    assert count_params(bert).total == 108_310_272
