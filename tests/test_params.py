"""Exact parameter counts: hand-checked configs, published totals, invariants, preset lookup."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sizeup.catalog import load_catalog
from sizeup.cli import main
from sizeup.core.params import count_params, gpt2_seed_formula
from sizeup.core.types import MlpKind, ModelArch, NormKind, PositionKind, QkNorm
from sizeup.errors import SizeupError

CAT = load_catalog()


# --------------------------------------------------------------------------- hand-checked


def test_gpt2_small_by_hand():
    """GPT-2 124M (Radford et al. 2019; HF GPT2Model): V=50257 h=768 L=12 P=1024, tied head.

    tokens V*h = 38,597,376; positions P*h = 786,432
    layer: c_attn h*3h+3h = 1,771,776; c_proj h*h+h = 590,592; c_fc h*4h+4h = 2,362,368;
           mlp c_proj 4h*h+h = 2,360,064; ln_1 + ln_2 = 4h = 3,072  -> 7,087,872
    total = 38,597,376 + 786,432 + 12*7,087,872 + ln_f 2h (1,536) = 124,439,808
    """
    pc = count_params(CAT.model("gpt2"))
    assert pc.breakdown["embedding/token"] == 38_597_376
    assert pc.breakdown["embedding/position"] == 786_432
    assert sum(pc.per_layer.values()) == 7_087_872
    assert pc.total == 124_439_808
    assert "output_head" not in pc.breakdown


def test_llama2_7b_by_hand():
    """Llama 2 7B (Touvron et al. 2023; HF LlamaForCausalLM): V=32000 h=4096 L=32 f=11008, untied, no biases.

    embed = head = V*h = 131,072,000
    layer: q,k,v,o 4*h^2 = 67,108,864; mlp 3*h*f = 135,266,304; 2 RMSNorms 2h = 8,192 -> 202,383,360
    total = 2*131,072,000 + 32*202,383,360 + h = 6,738,415,616
    """
    pc = count_params(CAT.model("llama-2-7b"))
    assert sum(pc.per_layer.values()) == 202_383_360
    assert pc.total == 6_738_415_616 == pc.active


def test_seed_002_textbook_formula():
    """Seed 002's worked example: no biases, untied head, 256 positions, 2h of norm per block."""
    seed = gpt2_seed_formula(50257, 256, 768, 12)
    assert seed["tok_emb"] == 38_597_376
    assert seed["pos_emb"] == 196_608
    assert seed["block"] == 7_079_424
    # the seed prints 162.6M by adding rounded parts (38.6 + 0.2 + 85.2 + 38.6); the exact sum is:
    assert seed["total"] == 162_344_448
    gpt2 = count_params(CAT.model("gpt2")).total
    # reconciliation: - tied head + 768 more positions + biases (8,448 per layer) + final LayerNorm (1,536)
    assert seed["total"] - seed["output_head"] + (1024 - 256) * 768 + 12 * 8_448 + 1_536 == gpt2


def test_params_cli_explains_gpt2_gap(capsys):
    assert main(["params", "gpt2", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["total_params"] == 124_439_808
    assert data["seed_002_formula"]["total"] == 162_344_448
    assert main(["params", "gpt2"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "seed 002" in text and "ties the output head" in text and "1024 learned positions" in text
    assert "biases" in text


# --------------------------------------------------------------------------- published totals

# Totals the model publishers report (HF safetensors metadata / model cards), reproduced exactly.
PUBLISHED = {
    "gpt2-xl": 1_557_611_200,
    "llama-3-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "llama-3.1-405b": 405_853_388_800,
    "mistral-7b": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
    "gemma-2-2b": 2_614_341_888,
    "gemma-2-9b": 9_241_705_984,
    "qwen2.5-7b": 7_615_616_512,
    "phi-3-mini": 3_821_079_552,
    "tinyllama-1.1b": 1_100_048_384,
    "pythia-1b": 1_011_781_632,
    "bloom-176b": 176_247_271_424,
    "deepseek-v3": 671_026_404_352,
}


@pytest.mark.parametrize("model_id,total", sorted(PUBLISHED.items()))
def test_published_totals(model_id, total):
    assert count_params(CAT.model(model_id)).total == total


# Model cards' "Number of Parameters" / "Number of Paramaters (Non-Embedding)" lines (Qwen/Qwen3-*; rounded to
# the cards' 0.1B, 0.01B for 8B's 6.95B), and Qwen3-235B-A22B's "235B in total and 22B activated": the presets carry
# the configs' dimensions (LitGPT's mirror of the HF config.json), the counts must land on the cards' figures.
# Non-embedding = total minus the input embedding and, when untied, the output head.
QWEN3_CARDS = {"qwen3-0.6b": (0.6, 0.44), "qwen3-1.7b": (1.7, 1.4), "qwen3-4b": (4.0, 3.6), "qwen3-8b": (8.2, 6.95),
               "qwen3-14b": (14.8, 13.2), "qwen3-32b": (32.8, 31.2)}


@pytest.mark.parametrize("model_id,card", sorted(QWEN3_CARDS.items()))
def test_qwen3_presets_match_their_model_cards(model_id, card):
    m = CAT.model(model_id)
    total = count_params(m).total
    emb = m.vocab_size * m.hidden_size * (1 if m.tie_embeddings else 2)
    digits = 2 if card[1] == 6.95 or card[1] == 0.44 else 1
    assert round(total / 1e9, 1) == card[0]
    assert round((total - emb) / 1e9, digits) == card[1]


@pytest.mark.parametrize("model_id,billions", [("mistral-large-2", 123), ("codellama-34b", 34), ("phi-4", 15),
                                               ("gemma-3-1b", 1)])
def test_presets_land_on_their_announced_size(model_id, billions):
    """Mistral AI's 'Mistral Large 2 ... 123 billion parameters', Code Llama's 34B, Phi-4's 14.7B (HF model
    page; 15 at whole-billion rounding), Gemma 3 1B."""
    assert round(count_params(CAT.model(model_id)).total / 1e9) == billions


def test_qwen3_moe_preset_matches_235b_total_22b_active():
    p = count_params(CAT.model("qwen3-235b-a22b"))
    assert round(p.total / 1e9) == 235 and round(p.active / 1e9) == 22


# llm-foundry scripts/train/benchmarking/README.md NumParams column (dev set): MPT with learned positions of
# seq_len rows, so the count grows by seq*d_model; (size, seq_len, NumParams)
LLM_FOUNDRY = [("125m", 512, 124_131_840), ("125m", 65536, 174_070_272), ("350m", 1024, 354_936_832),
               ("760m", 512, 758_111_232), ("1b", 4096, 1_320_144_896), ("3b", 16384, 2_688_537_600),
               ("7b", 65536, 6_918_905_856), ("13b", 32768, 13_011_240_960), ("30b", 8192, 30_019_254_272),
               ("70b", 2048, 64_862_437_376)]


@pytest.mark.parametrize("size,seq,total", LLM_FOUNDRY)
def test_llm_foundry_benchmark_param_counts(size, seq, total):
    m = CAT.model(f"llmfoundry-mpt-{size}").with_(num_position_embeddings=seq, max_seq_len=seq)
    assert count_params(m).total == total


# Narayanan et al. 2021 Table 1 "Number of parameters (billion)", to the table's 0.1B rounding
NARAYANAN = {"1.7b": 1.7, "3.6b": 3.6, "7.5b": 7.5, "18.4b": 18.4, "39.1b": 39.1, "76.1b": 76.1,
             "145.6b": 145.6, "310.1b": 310.1, "529.6b": 529.6, "1t": 1008.0}


@pytest.mark.parametrize("size,billions", sorted(NARAYANAN.items()))
def test_megatron_table1_sizes(size, billions):
    assert round(count_params(CAT.model(f"megatron-gpt-{size}")).total / 1e9, 1) == billions


def test_moe_active_below_total():
    """Mixtral 8x7B: active = total - 32 layers * 6 idle experts * 3*h*f = 12,879,925,248 (Jiang et al. 2024: 13B)."""
    pc = count_params(CAT.model("mixtral-8x7b"))
    assert pc.active == 46_702_792_704 - 32 * 6 * 3 * 4096 * 14336 == 12_879_925_248
    ds = count_params(CAT.model("deepseek-v3"))
    assert ds.active < ds.total
    assert round(ds.active / 1e9) == 38  # DeepSeek-V3 report: 37B activated (+ embedding and head: 37.55B)


# --------------------------------------------------------------------------- invariants

@st.composite
def archs(draw):
    kv = draw(st.integers(1, 4))
    heads = kv * draw(st.integers(1, 4))
    head_dim = draw(st.integers(1, 16))
    hidden = draw(st.integers(1, 96))
    moe = draw(st.booleans())
    mla = draw(st.booleans())
    layers = draw(st.integers(1, 6))
    experts = draw(st.integers(1, 8)) if moe else 0
    position = draw(st.sampled_from(list(PositionKind)))
    return ModelArch(
        id="r", name="r", vocab_size=draw(st.integers(1, 500)), hidden_size=hidden, num_layers=layers,
        num_heads=heads, num_kv_heads=kv, head_dim=head_dim, ffn_size=draw(st.integers(0, 200)),
        mlp_kind=draw(st.sampled_from(list(MlpKind))), norm_kind=draw(st.sampled_from(list(NormKind))),
        norm_bias=draw(st.booleans()), norms_per_layer=draw(st.integers(0, 4)), final_norm=draw(st.booleans()),
        embed_norm=draw(st.booleans()), qk_norm=draw(st.sampled_from(list(QkNorm))),
        qkv_bias=draw(st.booleans()), out_bias=draw(st.booleans()), mlp_bias=draw(st.booleans()),
        lm_head_bias=draw(st.booleans()), position=position,
        num_position_embeddings=draw(st.integers(1, 64)) if position == PositionKind.LEARNED else 0,
        tie_embeddings=draw(st.booleans()),
        num_experts=experts, experts_per_token=draw(st.integers(1, experts)) if moe else 0,
        num_shared_experts=draw(st.integers(0, 2)) if moe else 0,
        expert_ffn_size=draw(st.integers(1, 64)) if moe else 0,
        shared_expert_gate=draw(st.booleans()) if moe else False,
        first_k_dense_layers=draw(st.integers(0, layers)) if moe else 0,
        moe_layer_freq=draw(st.integers(1, 3)),
        q_lora_rank=draw(st.integers(0, 16)) if mla else 0, kv_lora_rank=draw(st.integers(1, 16)) if mla else 0,
        qk_rope_head_dim=draw(st.integers(1, 8)) if mla else 0, qk_nope_head_dim=draw(st.integers(1, 8)) if mla else 0,
        v_head_dim=draw(st.integers(1, 8)) if mla else 0,
    )


@settings(max_examples=200, deadline=None)
@given(archs())
def test_breakdown_sums_to_total(m):
    pc = count_params(m)
    assert sum(pc.breakdown.values()) == pc.total
    assert all(v >= 0 for v in pc.breakdown.values())
    assert 0 < pc.active <= pc.total
    if m.num_moe_layers == 0:
        assert pc.active == pc.total


@settings(max_examples=100, deadline=None)
@given(archs())
def test_one_more_layer_adds_one_layer(m):
    """Adding a dense layer adds exactly the dense per-layer count; untying adds exactly the head."""
    dense = m.with_(num_experts=0, experts_per_token=0, num_shared_experts=0, expert_ffn_size=0)
    pc = count_params(dense)
    assert count_params(dense.with_(num_layers=dense.num_layers + 1)).total - pc.total == sum(pc.per_layer.values())
    tied, untied = count_params(m.with_(tie_embeddings=True)), count_params(m.with_(tie_embeddings=False))
    assert untied.total - tied.total == m.vocab_size * m.hidden_size + (m.vocab_size if m.lm_head_bias else 0)


# --------------------------------------------------------------------------- lookup and CLI


def test_unknown_preset_exit_2_did_you_mean(capsys):
    assert main(["params", "llama-2-7c"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean" in err and "llama-2-7b" in err and err.strip().count("\n") == 0


@pytest.mark.parametrize("name,model_id", [
    ("LLAMA-2-7B", "llama-2-7b"),
    ("meta-llama/Llama-2-7b-hf", "llama-2-7b"),
    ("Llama-2-7b-hf", "llama-2-7b"),
    ("Llama 2 7B", "llama-2-7b"),
    ("LLaMA 7B", "llama-7b"),
    ("mistralai/mixtral-8x7b-v0.1", "mixtral-8x7b"),
    ("Qwen2.5-7B-Instruct", "qwen2.5-7b"),
    ("MPT-1b", "llmfoundry-mpt-1b"),
    ("MPT-70b", "llmfoundry-mpt-70b"),
    ("GPT3-175B", "gpt3-175b"),
    ("GPT-3 175B", "gpt3-175b"),
    ("GPT 22B (Korthikanti et al. 2022)", "korthikanti-gpt-22b"),
    ("GPT 1T (Megatron Table 1, 1008B)", "megatron-gpt-1t"),
    ("GPT 1.7B (Megatron Table 1)", "megatron-gpt-1.7b"),
    ("7.5B model (ZeRO paper example)", "megatron-gpt-7.5b"),
    ("Llama 3/3.1 70B", "llama-3-70b"),
    ("Llama 3.1 8B Instruct (FP8)", "llama-3.1-8b"),
    ("Llama 3.3 70B Instruct (FP8)", "llama-3.3-70b"),
    ("Nemotron-340B", "nemotron-340b"),
    ("GPT3-20B", "nemo-gpt3-20b"),
    ("GPT-2 1.2B (Megatron)", "megatron-gpt2-1.2b"),
    ("OPT-175B", "opt-175b"),
    ("PaLM 540B", "palm-540b"),
    ("TinyLlama 1.1B", "tinyllama-1.1b"),
    ("Pythia-1B", "pythia-1b"),
    ("bigscience/bloomz-7b1", "bloom-7b1"),
    ("Llama 4 Maverick (MoE, 17B active)", "llama-4-maverick"),
    ("deepseek-ai/DeepSeek-V3", "deepseek-v3"),
])
def test_lookup_is_forgiving(name, model_id):
    assert CAT.model(name).id == model_id


def test_aliases_do_not_collide():
    """Every alias resolves to the preset that declares it (no alias silently shadowed by another)."""
    from sizeup.catalog import normalize

    owners: dict[str, set[str]] = {}
    for model_id, arch in CAT.models.items():
        for key in (model_id, *arch.aliases):
            owners.setdefault(normalize(key), set()).add(model_id)
    clashes = {k: v for k, v in owners.items() if len(v) > 1}
    assert not clashes, clashes


def test_every_preset_has_a_source_and_counts():
    for model_id, arch in CAT.models.items():
        assert len(arch.source) > 10, model_id
        pc = count_params(arch)
        assert pc.total > 0 and sum(pc.breakdown.values()) == pc.total


def test_unknown_model_error_is_sizeup_error():
    with pytest.raises(SizeupError, match="Did you mean"):
        CAT.model("mixtral-8x8b")
