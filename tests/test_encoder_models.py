"""Encoder-only (BERT) and encoder-decoder (T5) models: FLOPs against hand derivations, memory against
independently known figures, the job parser (flags, scenario YAML, published points) and bad input.

Parameter counts against transformers' own modules are in tests/test_params_vs_torch.py; the measured rows
(HF "Model training anatomy" BERT-large, accelerate's bert-base-cased load) run through `sizeup validate`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sizeup.catalog import load_catalog
from sizeup.core.flops import flops_per_step, stack_flops_per_sequence
from sizeup.core.memory import estimate_memory
from sizeup.core.params import count_params
from sizeup.core.types import ArchKind, HeadKind, Precision, TrainSetup
from sizeup.errors import SizeupError

CATALOG = load_catalog()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sizeup", *args], capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- FLOPs


def test_bert_flops_equal_narayanan_without_the_causal_discount():
    # Narayanan et al. 2021 eq. 3 for a GPT-shaped stack (MHA, 4h MLP): forward per sequence
    # 24*s*L*h^2*(1 + s/(6h)) without the logits term; BERT-large is that shape, with no LM head (BertModel)
    m = CATALOG.model("bert-large-uncased")
    s, L, h = 512, 24, 1024
    hand_forward = 24 * s * L * h * h * (1 + s / (6 * h))
    setup = TrainSetup(seq_len=s, micro_batch=4, precision=Precision.FP32)
    fl = flops_per_step(m, setup)
    assert fl.model_flops == pytest.approx(3 * 4 * hand_forward, rel=1e-12)
    # bidirectional attention: no causal discount in any convention, and flash runs the full s^2
    assert fl.model_flops_causal == fl.model_flops
    assert fl.executed_flops == pytest.approx(3 * 4 * (hand_forward - 4 * s * s * h * L) + (1 + 2.5) * 4 * 4 * s * s * h
                                              * L, rel=1e-12)


def test_t5_flops_per_sequence_by_hand():
    # T0_3B (T5 v1.1 XL): h = 2048 = a*d, f = 5120 gated (3 matrices), L_e = L_d = 24, V = 32128, untied head.
    # By hand, per token of a layer: q,k,v,o 4 x 2h^2 = 8h^2, gated MLP 3 x 2hf = 6hf.
    m = CATALOG.model("t0-3b")
    h, f, L, V = 2048, 5120, 24, 32128
    s_e, s_d = 128, 8
    enc = L * s_e * (8 * h * h + 6 * h * f) + L * 2 * 2 * s_e * s_e * h          # Q.K^T + P.V over s_e keys
    dec_self = L * s_d * (8 * h * h + 6 * h * f) + L * 2 * 2 * s_d * s_d * h      # full s_d^2 convention
    cross = L * (s_d * 4 * h * h + s_e * 4 * h * h + 2 * 2 * s_d * s_e * h)      # q,o on s_d; k,v on s_e
    head = 2 * h * V * s_d
    split = stack_flops_per_sequence(m, s_e, s_d)
    assert split["encoder"] == enc and split["decoder_self"] == dec_self
    assert split["cross_attention"] == cross and split["head"] == head
    setup = TrainSetup(seq_len=s_e, decoder_seq_len=s_d, micro_batch=2)
    fl = flops_per_step(m, setup)
    # the per-input-token kernel (layer averages with shares) gives the same step total
    assert fl.model_flops == pytest.approx(3 * 2 * (enc + dec_self + cross + head), rel=1e-12)
    # causal convention: only the decoder's self-attention is halved
    assert fl.model_flops - fl.model_flops_causal == pytest.approx(3 * 2 * L * 2 * s_d * s_d * h, rel=1e-9)


def test_decoder_target_length_moves_only_decoder_terms():
    m = CATALOG.model("mt0-xxl")
    short = flops_per_step(m, TrainSetup(seq_len=256, decoder_seq_len=4))
    long = flops_per_step(m, TrainSetup(seq_len=256, decoder_seq_len=64))
    assert long.model_flops > short.model_flops
    # the encoder part (per input token) is the same: the difference is the decoder + cross + head part
    d = stack_flops_per_sequence(m, 256, 64)
    e = stack_flops_per_sequence(m, 256, 4)
    assert d["encoder"] == e["encoder"]
    assert long.model_flops - short.model_flops == pytest.approx(
        3 * (sum(d.values()) - sum(e.values())), rel=1e-9)


# --------------------------------------------------------------------------- memory


def test_bert_base_cased_fp32_weights_are_the_accelerate_figure():
    # accelerate docs (Model memory estimator): bert-base-cased "413.18 MB" in float32 = 108,310,272 x 4 B / 2^20
    m = CATALOG.model("bert-base-cased")
    est = estimate_memory(m, TrainSetup(seq_len=512, precision=Precision.FP32), kernel="hf-eager")
    assert est.per_gpu["model/weights"] / 2**20 == pytest.approx(413.18, abs=0.01)


def test_encoder_decoder_activations_split_by_stack():
    m = CATALOG.model("t0-3b")
    base = TrainSetup(seq_len=256, decoder_seq_len=16, micro_batch=4, precision=Precision.BF16_MIXED)
    a_short = estimate_memory(m, base).per_gpu["activations/layers"]
    a_long = estimate_memory(m, base.with_(decoder_seq_len=256)).per_gpu["activations/layers"]
    # equal lengths: the decoder layers keep more than the encoder ones (cross-attention), so the activations grow
    # by more than the decoder's own share at s_d = 16
    assert a_long > a_short
    # an encoder-only stack of the same layers keeps exactly the encoder part: the encoder-decoder with a 1-token
    # target is above it (decoder layers + cross K/V on the encoder tokens), and below twice it
    enc_only = m.with_(arch_kind=ArchKind.ENCODER, num_decoder_layers=0, head=HeadKind.NONE)
    a_enc = estimate_memory(enc_only, base.with_(decoder_seq_len=0)).per_gpu["activations/layers"]
    a_one = estimate_memory(m, base.with_(decoder_seq_len=1)).per_gpu["activations/layers"]
    assert a_enc < a_one < 2 * a_enc


def test_encoder_head_keeps_no_vocab_logits():
    m = CATALOG.model("bert-large-uncased")
    est = estimate_memory(m, TrainSetup(seq_len=512, micro_batch=4, precision=Precision.FP32), kernel="hf-eager")
    assert est.per_gpu["activations/logits_loss"] == 0.0
    t5 = CATALOG.model("t0-3b")
    s = TrainSetup(seq_len=512, micro_batch=4)
    small = estimate_memory(t5, s.with_(decoder_seq_len=8)).per_gpu["activations/logits_loss"]
    big = estimate_memory(t5, s.with_(decoder_seq_len=64)).per_gpu["activations/logits_loss"]
    assert big == pytest.approx(8 * small, rel=1e-9)  # the LM head reads decoder tokens only


# --------------------------------------------------------------------------- job parser


def test_decoder_seq_from_flags_and_scenario(tmp_path):
    from sizeup.job import build_job
    from sizeup.job.parse import collect_values

    job = build_job({"model": "t0-3b", "gpu": "a100-80gb", "seq": 256, "decoder_seq": 16, "micro_batch": 8,
                     "global_batch": 8})
    assert job.setup.decoder_seq_len == 16 and job.setup.dec_seq == 16
    assert "--decoder-seq" in job.to_argv() and build_job(job.to_values()).setup == job.setup
    path = tmp_path / "t5.yaml"
    path.write_text("model: bigscience/mt0-xxl\ntraining: {seq: 512, decoder_seq: 32, micro_batch: 2}\n"
                    "hardware: {gpu: a100-80gb, gpus: 1}\n")
    values, _ = collect_values(str(path), None, {})
    job = build_job(values)
    assert job.model.is_encoder_decoder and job.setup.decoder_seq_len == 32 and job.setup.seq_len == 512
    # the model config's training dropout is the default (T5 dropout_rate 0.1)
    assert job.setup.dropout == pytest.approx(0.1)


def test_point_mapping_reads_input_and_target_lengths():
    from sizeup.validate.mapping import build_setup, model_for_point
    from sizeup.validate.points import Point

    raw = {"id": "t5", "category": "C", "source": {"repo": "example/repo", "primary": True},
           "model": {"name": "bigscience/T0_3B", "arch_type": "encoder-decoder T5"},
           "hardware": {"gpu": "A100-80GB", "count": 1}, "parallel": {"micro_batch": 8},
           "workload": {"kind": "full fine-tuning", "input_len": 256, "output_len": 4},
           "measured": [{"quantity": "peak_gpu_memory", "value": 40, "unit": "GB"}], "completeness": "partial"}
    point = Point.model_validate(raw)
    arch, notes = model_for_point(point, CATALOG)
    assert arch.id == "t0-3b"
    res = build_setup(point, arch, CATALOG.gpu("a100-80gb"))
    assert (res.setup.seq_len, res.setup.decoder_seq_len) == (256, 4)
    # a stated kind that disagrees with the preset is a skip, not a silent decoder-only estimate
    from sizeup.validate.points import Skip

    bad = Point.model_validate({**raw, "model": {"name": "llama-2-7b", "arch_type": "encoder-decoder"}})
    with pytest.raises(Skip):
        model_for_point(bad, CATALOG)


# --------------------------------------------------------------------------- bad input: one line, exit 2


def test_bad_input_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "t5", "d_model": 512, "d_ff": 2048, "d_kv": 64, "num_heads": 8,
                               "num_layers": 6, "num_decoder_layers": 0, "vocab_size": 32128}))
    cases = [
        ("train", str(cfg), "--gpu", "h100-sxm"),                                   # encoder-decoder, 0 decoder layers
        ("train", "llama-3-8b", "--gpu", "h100-sxm", "--decoder-seq", "16"),        # decoder-seq on a decoder
        ("train", "bert-large-uncased", "--gpu", "h100-sxm", "--gpus", "2", "--pp", "2"),
        ("infer", "t0-3b", "--gpu", "h100-sxm"),                                    # no encoder-decoder serving
        ("train", "t0-3b", "--gpu", "h100-sxm", "--decoder-seq", "0"),
        ("trace", "bert-base-cased", "--seq", "64"),                               # exact mode: causal LMs only
        ("export", "fsdp", "t0-3b", "--gpu", "h100-sxm"),                          # decoder-only FSDP script
    ]
    for args in cases:
        out = _cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = [x for x in out.stderr.strip().splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in out.stderr, (args, out.stderr)


def test_model_file_refuses_encoder_decoder_without_decoder_layers():
    from pydantic import ValidationError

    from sizeup.schema import ModelFile

    with pytest.raises(ValidationError, match="num_decoder_layers"):
        ModelFile.model_validate(dict(name="x", source="test", architecture="encoder-decoder", vocab_size=100,
                                      hidden_size=64, num_layers=2, num_heads=4, ffn_size=128,
                                      position="relative", relative_attention_buckets=32))
    with pytest.raises(SizeupError):
        from sizeup.catalog.hf_config import arch_from_hf_dict

        arch_from_hf_dict({"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 64,
                           "vocab_size": 100, "hidden_dropout_prob": 1.5})


def test_explain_shows_the_encoder_decoder_split():
    out = _cli("train", "t0-3b", "--gpu", "a100-80gb", "--seq", "256", "--decoder-seq", "16", "--micro-batch", "8",
               "--global-batch", "8", "--explain")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "flops/stacks_forward_per_sequence" in text and "cross_attention=" in text
    assert "L_enc=24" in text and "L_dec=24" in text and "s_dec=16" in text


def test_decoder_only_counts_unchanged_by_the_new_fields():
    # a decoder preset keeps its exact count (checked against torch in test_params_vs_torch) and no new term
    m = CATALOG.model("llama-2-7b")
    assert m.arch_kind == ArchKind.DECODER and m.total_layers == m.num_layers
    assert count_params(m).total == 6_738_415_616  # Touvron et al. 2023 / HF LlamaForCausalLM: 6.74B


# --------------------------------------------------------------------------- activations vs the real modules


def _saved_bytes(model, fn) -> int:
    """Bytes of the distinct non-parameter storages autograd saves for backward (torch saved_tensors_hooks)."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen.setdefault(st.data_ptr(), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _sizeup_layer_bytes(m, setup, prefix: str = "") -> float:
    """Bytes per input token of the saved tensors sizeup counts for the average layer, summed over the given
    stack (prefix 'enc/' or 'dec/'; '' = all), times the layer count: per-token bytes of all such layers."""
    from sizeup.core.memory import _statics

    st = _statics(m, setup, "hf-eager")
    tot = sum(v * (setup.seq_len if k == "s2" else 1.0) for n, v, k in st.act_names
              if n.startswith(prefix) and not n.endswith("encoder_output"))
    return tot * m.total_layers


def test_bert_and_t5_layer_activations_match_transformers_saved_tensors():
    """Per-layer saved tensors of transformers' own eager BERT and T5 modules (fp32, CPU, no dropout: CPU dropout
    keeps fp32 masks where CUDA keeps bool ones), measured as the difference between 3 and 2 layers."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from sizeup.core.types import Attention

    torch.manual_seed(0)
    b, s, h, a, f, V = 2, 128, 256, 4, 1024, 1000

    def bert(L):
        cfg = transformers.BertConfig(vocab_size=V, hidden_size=h, num_hidden_layers=L, num_attention_heads=a,
                                      intermediate_size=f, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        cfg._attn_implementation = "eager"
        model = transformers.BertForSequenceClassification(cfg).train()
        x, y = torch.randint(0, V, (b, s)), torch.randint(0, 2, (b,))
        return _saved_bytes(model, lambda: model(input_ids=x, labels=y).loss)

    def t5(Le, Ld, sd):
        cfg = transformers.T5Config(vocab_size=V, d_model=h, d_kv=h // a, d_ff=f, num_layers=Le, num_decoder_layers=Ld,
                                    num_heads=a, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                                    decoder_start_token_id=0, pad_token_id=0)
        cfg._attn_implementation = "eager"
        model = transformers.T5ForConditionalGeneration(cfg).train()
        x, y = torch.randint(0, V, (b, s)), torch.randint(0, V, (b, sd))
        return _saved_bytes(model, lambda: model(input_ids=x, labels=y).loss)

    fp32 = TrainSetup(seq_len=s, micro_batch=b, precision=Precision.FP32, attention=Attention.MATH)
    bm = CATALOG.model("bert-base-cased").with_(vocab_size=V, hidden_size=h, num_layers=1, num_heads=a,
                                                num_kv_heads=a, head_dim=h // a, ffn_size=f, head=HeadKind.CLASSIFIER)
    assert bert(3) - bert(2) == pytest.approx(b * s * _sizeup_layer_bytes(bm, fp32), rel=1e-3)

    tm = CATALOG.model("t0-3b").with_(vocab_size=V, hidden_size=h, num_layers=1, num_decoder_layers=1, num_heads=a,
                                      num_kv_heads=a, head_dim=h // a, ffn_size=f)
    sd = 16
    setup = fp32.with_(decoder_seq_len=sd)
    enc_layer = t5(3, 1, sd) - t5(2, 1, sd)
    assert enc_layer == pytest.approx(b * s * _sizeup_layer_bytes(tm, setup, "enc/"), rel=1e-3)
    dec_layer = t5(1, 3, sd) - t5(1, 2, sd)  # self-attention + cross-attention (K, V on the encoder tokens) + MLP
    assert dec_layer == pytest.approx(b * s * _sizeup_layer_bytes(tm, setup, "dec/"), rel=0.02)


def test_published_encoder_rows_within_tolerance():
    """The development set's encoder rows against their measurements (transformers 'Model training anatomy':
    BERT-large fine-tuning on a V100, nvidia-smi 14,949 MB; accelerate's bert-base-cased fp32 load 413.68 MB),
    calibration off; and the T0 / mT0 peft rows name the missing lengths instead of a decoder-only refusal."""
    from sizeup.calib import using
    from sizeup.validate.points import load_points
    from sizeup.validate.runner import predict_point

    points = {p.id: p for p in load_points()}
    with using("off"):
        rows = {(r.id, r.quantity): r for pid in ("hf-anatomy-bert-large-train-bs4-v100",
                                                   "accelerate-bert-base-cased-load-fp32", "peft-t0-3b-lora")
                for r in predict_point(points[pid], CATALOG)}
    nvml = rows[("hf-anatomy-bert-large-train-bs4-v100", "gpu_memory_used_nvml")]
    weights = rows[("accelerate-bert-base-cased-load-fp32", "weights_memory")]
    assert nvml.ok and abs(nvml.error_pct) < 25, nvml.error_pct
    assert weights.ok and abs(weights.error_pct) < 25, weights.error_pct
    t0 = rows[("peft-t0-3b-lora", "peak_gpu_memory")]
    assert not t0.ok and "encoder input length" in t0.skipped
