"""Importing Hugging Face config.json files: exact counts, and one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sizeup.catalog import resolve_model
from sizeup.catalog.hf_config import SUPPORTED_MODEL_TYPES, arch_from_hf_dict, load_hf_config
from sizeup.cli import main
from sizeup.core.params import count_params
from sizeup.errors import SizeupError

DATA = Path(__file__).parent / "data" / "hf_configs"
GOOD = ["odd_llama.json", "odd_neox.json", "small_qwen2_moe.json", "small_deepseek_v3.json",
        "falcon_sequential.json", "opt_small.json", "gptj_small.json", "qwen3_small.json", "qwen3_moe_small.json",
        "gemma_small.json", "mpt_small.json"]


def test_odd_llama_hand_count():
    """Llama layer as transformers builds it (LlamaAttention/LlamaMLP with attention_bias, mlp_bias).

    V=32003 h=960 L=3 a=15 kv=5 d=72 f=2600, untied:
      embed = head = V*h = 30,722,880
      q = h*a*d + a*d = 1,037,880; k = v = h*kv*d + kv*d = 345,960; o = a*d*h + h = 1,037,760
      mlp = 3*h*f + 2f + h = 7,494,160; norms = 2h = 1,920 -> layer 10,263,640
      total = 2*30,722,880 + 3*10,263,640 + h (final norm) = 92,237,640
    """
    arch = load_hf_config(DATA / "odd_llama.json")
    assert arch.id == "acme/odd-llama-0.2b"
    assert (arch.num_kv_heads, arch.head_dim, arch.tie_embeddings) == (5, 72, False)
    pc = count_params(arch)
    assert pc.per_layer["attention/q"] == 1_037_880
    assert pc.per_layer["mlp"] == 7_494_160
    assert pc.total == 92_237_640
    assert sum(pc.breakdown.values()) == pc.total


def test_id_falls_back_to_file_stem(tmp_path):
    data = json.loads((DATA / "odd_neox.json").read_text())
    path = tmp_path / "my-neox.json"
    path.write_text(json.dumps(data))
    assert load_hf_config(path).id == "my-neox"
    folder = tmp_path / "some-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(data))
    assert load_hf_config(folder / "config.json").id == "some-model"


def test_resolve_model_takes_a_path():
    assert resolve_model(str(DATA / "odd_llama.json")).hidden_size == 960


def test_qwen2_moe_schedule_and_shared_expert():
    arch = load_hf_config(DATA / "small_qwen2_moe.json")
    assert arch.num_moe_layers == 2 and arch.first_k_dense_layers == 1
    assert arch.shared_expert_gate and arch.shared_expert_ffn_size == 96
    pc = count_params(arch)
    assert pc.active < pc.total


def test_qwen3_moe_sparse_step():
    """decoder_sparse_step 2: layers 1 and 3 of 4 are MoE ((i+1) % 2 == 0), as Qwen3MoeDecoderLayer decides."""
    arch = load_hf_config(DATA / "qwen3_moe_small.json")
    assert [i for i in range(arch.num_layers) if arch.layer_is_moe(i)] == [1, 3]


def test_llm_foundry_semantics_for_mpt():
    """An llm-foundry MPT config without ALiBi gets a learned position table of max_seq_len rows and biases."""
    data = json.loads((DATA / "mpt_small.json").read_text())
    data.update(no_bias=False, attn_config={"alibi": False})
    arch = arch_from_hf_dict(data, "mpt-learned")
    assert arch.position == "learned" and arch.num_position_embeddings == 2048 and arch.qkv_bias


def test_multimodal_wrapper_uses_text_config():
    text = {"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 128}
    arch = arch_from_hf_dict({"model_type": "llava_like", "text_config": text}, "wrapped")
    assert arch.hidden_size == 64 and arch.id == "wrapped"


@pytest.mark.parametrize("name", GOOD)
def test_imported_config_matches_torch(name):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    data = json.loads((DATA / name).read_text())
    arch = load_hf_config(DATA / name)
    model_type = data.pop("model_type")
    data.pop("_name_or_path", None)
    data.pop("architectures", None)
    cfg = transformers.AutoConfig.for_model(model_type, **data)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    assert count_params(arch).total == sum(p.numel() for p in model.parameters())


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0, err
    assert "Traceback" not in err
    return err


def test_cli_counts_a_config_file(capsys):
    assert main(["params", str(DATA / "odd_llama.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total_params"] == 92_237_640


def test_truncated_json_is_one_line(capsys):
    err = one_line_error(capsys, ["params", str(DATA / "truncated.json")])
    assert "truncated.json" in err and "not valid JSON" in err and "line" in err


def test_unsupported_model_type_lists_supported(capsys):
    err = one_line_error(capsys, ["params", str(DATA / "mamba.json")])
    assert "mamba" in err and "llama" in err and "deepseek_v3" in err


def test_encoder_decoder_configs(capsys, tmp_path):
    # t5 / mt5 / bert are read (tests/test_encoder_models.py); an incomplete one names the missing key, and an
    # encoder-decoder type sizeup does not read says so
    err = one_line_error(capsys, ["params", str(DATA / "t5_small.json")])
    assert "t5_small.json" in err and "'num_heads'" in err
    bart = tmp_path / "bart.json"
    bart.write_text('{"model_type": "bart", "d_model": 768, "is_encoder_decoder": true}')
    err = one_line_error(capsys, ["params", str(bart)])
    assert "'bart'" in err and "does not read" in err and "t5" in err


def test_missing_key_names_file_and_key(capsys):
    err = one_line_error(capsys, ["params", str(DATA / "missing_hidden.json")])
    assert "missing_hidden.json" in err and "'hidden_size'" in err


def test_invalid_values_go_through_model_validation(capsys):
    err = one_line_error(capsys, ["params", str(DATA / "bad_heads.json")])
    assert "bad_heads.json" in err and "num_kv_heads" in err


def test_wrong_value_type_is_one_line(tmp_path, capsys):
    data = json.loads((DATA / "odd_llama.json").read_text())
    data["hidden_size"] = "wide"
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(data))
    err = one_line_error(capsys, ["params", str(path)])
    assert "wrong.json" in err


def test_missing_file(capsys):
    err = one_line_error(capsys, ["params", str(DATA / "nope.json")])
    assert "not found" in err


def test_non_object_json(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(SizeupError, match="JSON object"):
        load_hf_config(path)


def test_opt_projection_is_refused():
    data = json.loads((DATA / "opt_small.json").read_text())
    data["word_embed_proj_dim"] = 128
    with pytest.raises(SizeupError, match="word_embed_proj_dim"):
        arch_from_hf_dict(data, "opt-350m-like")


def test_supported_types_cover_the_brief():
    for t in ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "gemma", "gemma2", "gpt2", "gpt_neox",
              "gptj", "falcon", "mpt", "opt", "bloom", "phi3", "deepseek_v3", "olmo2"):
        assert t in SUPPORTED_MODEL_TYPES
