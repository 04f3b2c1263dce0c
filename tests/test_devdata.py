"""The second development set (validate/data/published_runs_more.yaml) and the default-file loader.

Checks every row of the new file against what the issue asks of it: a quote and a traceable source,
units the validator reads, positive finite numbers, unique ids, at least 8 framework families with at
least 15 measured rows each, at least 40 memory rows, and no source from the reserved list below (the
sets the project is scored on; their numbers must never enter the development set).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from sizeup.errors import SizeupError
from sizeup.validate.points import DATA_DIR, DEV_SET, BadPoint, Point, default_files, load_points
from sizeup.validate.runner import canonical_quantity, unit_kind

MORE = DATA_DIR / "published_runs_more.yaml"

# Reserved sources (issue 12): name -> pattern matched (case-insensitive) against every source's title, url,
# repo and path. A hit means a row was read from a held-out set.
RESERVED: dict[str, str] = {
    "torchtitan benchmarks/ documents": r"torchtitan.*benchmarks/|torchtitan.*/benchmarks|torchtitan.*docs/performance\.md",
    "Megatron-Bridge performance summaries": r"megatron-bridge",
    "OLMo-core README throughput": r"olmo-core",
    "Qwen README profiling": r"qwenlm/qwen|qwen[0-9.]*\s*readme|speed_benchmark",
    "LLaMA-Factory wiki performance": r"llama-?factory",
    "unsloth README benchmarks": r"unsloth",
    "Falcon / Falcon-180B cards and blog": r"falcon",
    "Llama 3 herd paper Table 4 / Llama 3 model card": r"2407\.21783|herd of models|llama3/model_card|meta-llama-3-\d+b.*card",
    "DeepSeek-V3 report Table 1": r"2412\.19437|deepseek-v3 technical report",
    "BLOOM chronicles": r"chronicles|tr11-176b-ml",
    "llm.c run scripts": r"llm\.c",
    "TensorRT-LLM H100-vs-A100 blog": r"h100vsa100|h100-vs-a100|h100 vs a100",
    "MLPerf Training and Inference results": r"mlperf|mlcommons",
    "IBM fms-fsdp README": r"fms-fsdp",
    "KempnerForge reports": r"kempner",
    "LitGPT config_hub README": r"config_hub",
    "gpt-fast README": r"gpt-fast",
    "NVIDIA NIM benchmarking pages": r"docs\.nvidia\.com/nim|\bnim\b.*benchmark",
    "vLLM nightly benchmarks": r"vllm.*nightly|perf\.vllm\.ai|nightly-benchmarks",
    "StarCoder measured tables": r"starcoder",
    "MT-NLG measured tables": r"mt-nlg|megatron-turing|2201\.11990",
    "Korthikanti et al. 2022 measured tables": r"2205\.05198|korthikanti",
}

MEMORY_QUANTITIES = re.compile(r"memory|weights_memory")


def _raw() -> dict:
    with open(MORE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def points() -> list[Point]:
    pts = load_points(MORE)
    bad = [p for p in pts if isinstance(p, BadPoint)]
    assert not bad, [(b.id, b.reason) for b in bad]
    return pts


def _rows(points):
    return [(p, m) for p in points for m in p.measured]


# --------------------------------------------------------------------------- every row


def test_file_is_marked_default_and_read_by_default():
    raw = _raw()
    assert raw["default"] is True and isinstance(raw["points"], list)
    assert default_files()[0] == DEV_SET
    assert MORE in default_files()


def test_every_point_quotes_and_cites_a_traceable_source(points):
    for p in points:
        assert p.quote and len(p.quote) > 20, p.id
        assert p.source, p.id
        for s in p.source:
            assert s.title, p.id
            assert s.url and s.url.startswith("https://"), (p.id, s.url)
            if s.repo:
                assert s.path and s.commit, (p.id, s.repo)
                assert s.commit in s.url and s.path in s.url, (p.id, s.url)


def test_every_point_names_its_framework(points):
    for p in points:
        assert p.framework and p.framework == p.framework.strip().lower(), p.id
        assert p.family == p.framework


def _renderings(value: float) -> set[str]:
    out = {f"{value:g}", f"{value:.2f}", f"{value:,.2f}", f"{value:.1f}", f"{value:.3f}"}
    if float(value).is_integer():
        out |= {str(int(value)), f"{int(value):,}"}
    if value < 100:  # a percentage the source printed as a fraction ('MFU 0.40')
        out.add(f"{value / 100:.2f}")
    return out


def test_every_measured_number_appears_in_the_quote(points):
    for p, m in _rows(points):
        assert any(r in p.quote for r in _renderings(m.value)), (p.id, m.quantity, m.value)


def test_units_and_quantities_are_known_to_the_validator(points):
    from sizeup.validate.runner import _NOT_PREDICTED, HANDLERS

    for p, m in _rows(points):
        assert unit_kind(m.unit), (p.id, m.unit)
        # predicted, or named as a quantity sizeup does not predict (with the reason the validator reports)
        q = canonical_quantity(m.quantity, m.unit)
        assert q in HANDLERS or q in _NOT_PREDICTED, (p.id, m.quantity)


def test_numbers_are_positive_and_finite(points):
    for p, m in _rows(points):
        assert math.isfinite(m.value) and m.value > 0, (p.id, m.quantity, m.value)
        if m.unit == "%":
            assert m.value <= 100, (p.id, m.value)
    for p in points:
        for section in (p.model, p.hardware, p.parallel):
            for key, value in section.model_dump().items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert math.isfinite(value) and value > 0, (p.id, key, value)


def test_ids_are_unique_here_and_across_the_default_files(points):
    ids = [p.id for p in points]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    dev_ids = {p.id for p in load_points(DEV_SET)}
    assert not dev_ids & set(ids)


def test_no_source_is_reserved(points):
    serving = [p for p in load_points(DATA_DIR / "serving_points.yaml") if isinstance(p, Point)]
    for p in [*points, *serving]:
        for s in p.source:
            text = " ".join(x for x in (s.title, s.url, s.repo, s.path) if x).lower()
            for name, pattern in RESERVED.items():
                assert not re.search(pattern, text), f"{p.id}: source matches reserved '{name}': {text}"


def test_reserved_patterns_catch_the_reserved_sources():
    """The guard above is only as good as its patterns: each must flag a typical address of its source."""
    examples = [
        ("torchtitan benchmarks/ documents", "https://github.com/pytorch/torchtitan/blob/main/benchmarks/llama3_h100_202412_torchtitan.md"),
        ("torchtitan benchmarks/ documents", "pytorch/torchtitan docs/performance.md"),
        ("Megatron-Bridge performance summaries", "NVIDIA-NeMo/Megatron-Bridge docs/performance-summary.md"),
        ("OLMo-core README throughput", "allenai/OLMo-core README.md"),
        ("LLaMA-Factory wiki performance", "https://github.com/hiyouga/LLaMA-Factory/wiki/Performance-comparison"),
        ("unsloth README benchmarks", "unslothai/unsloth README.md"),
        ("IBM fms-fsdp README", "foundation-model-stack/fms-fsdp README.md"),
        ("LitGPT config_hub README", "Lightning-AI/litgpt config_hub/finetune/README.md"),
        ("gpt-fast README", "pytorch-labs/gpt-fast README.md"),
        ("MLPerf Training and Inference results", "https://mlcommons.org/benchmarks/training/"),
        ("Korthikanti et al. 2022 measured tables", "https://arxiv.org/abs/2205.05198"),
        ("BLOOM chronicles", "bigscience-workshop/bigscience train/tr11-176B-ml/README.md"),
        ("vLLM nightly benchmarks", "neuralmagic/nm-vllm .github nightly-benchmarks results"),
    ]
    for name, text in examples:
        assert re.search(RESERVED[name], text.lower()), (name, text)


# Addresses of the reserved tables, searched line by line in everything the project ships and tests (code, data,
# tests, docs): a hit means a reserved number may have been copied in. Narrower than RESERVED, because the names
# themselves may appear (model names, statements that a source is not used, formulas from Korthikanti et al.).
RESERVED_ADDRESSES: dict[str, str] = {
    "torchtitan benchmarks/ documents": r"torchtitan[^\s'\"]*/benchmarks/|llama3_\w+_torchtitan\.md|torchtitan.{0,60}docs/performance\.md",
    "BLOOM run notes": r"tr11-176b-ml|chronicles\.md",
    "Llama 3 herd paper Table 4": r"(2407\.21783|herd of models).{0,80}table 4",
    "vLLM nightly benchmarks": r"perf\.vllm\.ai|nightly-benchmarks|nm-vllm.{0,40}benchmark results",
    "Megatron-Bridge performance summaries": r"megatron-bridge/.{0,60}performance",
    "gpt-fast README": r"gpt-fast/(blob/\w+/)?readme|pytorch-labs/gpt-fast.{0,20}readme",
    "LitGPT config_hub README": r"config_hub/[\w/]*readme",
    "IBM fms-fsdp README": r"fms-fsdp/(blob/\w+/)?readme|foundation-model-stack/fms-fsdp.{0,20}readme",
    "MLPerf results": r"mlcommons\.org/benchmarks|mlperf.{0,20}(training|inference).{0,20}results",
    "OLMo-core README": r"olmo-core/(blob/\w+/)?readme|allenai/olmo-core.{0,20}readme",
    "DeepSeek-V3 Table 1": r"2\.788\s*m",
    "TensorRT-LLM H100-vs-A100 blog": r"h100vsa100",
    "NVIDIA NIM benchmarking pages": r"docs\.nvidia\.com/nim",
}


def _shipped_text_files() -> list[Path]:
    root = Path(__file__).resolve().parents[1]
    files = [*root.glob("src/sizeup/**/*.py"), *root.glob("src/sizeup/**/*.yaml"), *root.glob("tests/*.py"),
             *root.glob("benchmarks/*.py"), *root.glob("docs/*.md"), root / "README.md"]
    return [f for f in files if f.is_file() and f.name != Path(__file__).name]


def test_no_reserved_table_address_in_code_data_tests_or_docs():
    hits = []
    for f in _shipped_text_files():
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            low = line.lower()
            hits += [f"{f.name}:{i} [{name}]" for name, pat in RESERVED_ADDRESSES.items() if re.search(pat, low)]
    assert not hits, hits


def test_reserved_address_patterns_catch_the_removed_out_of_sample_rows():
    """The kinds of line the 2026-12-06 clean-up removed must be caught (written here, where the scan does not look)."""
    removed = [
        "# torchtitan benchmarks/llama3_h100_202412_torchtitan.md (pytorch/torchtitan@31a17bf), tokens/s",
        "# --- torchtitan docs/performance.md (pytorch/torchtitan@0413364), WPS per GPU",
        "# bigscience-workshop/bigscience@00327f8 train/tr11-176B-ml/README.md",
        "# 'The Llama 3 Herd of Models' (arXiv:2407.21783) Table 4",
        "Point('nm-vllm-a10g', 'neuralmagic/nm-vllm commit 2054c1a benchmark results (A10G)')",
        "title: deepseek-ai/DeepSeek-V3 README/paper -- 2.788M H800 GPU hours",
    ]
    for line in removed:
        assert any(re.search(p, line.lower()) for p in RESERVED_ADDRESSES.values()), line


# --------------------------------------------------------------------------- coverage targets


def test_at_least_eight_families_with_fifteen_rows_each(points):
    per_family = Counter(p.family for p, _ in _rows(points))
    assert all(n >= 15 for n in per_family.values()), per_family
    assert len(per_family) >= 8, per_family


def test_at_least_forty_memory_rows(points):
    memory = [m for _, m in _rows(points) if MEMORY_QUANTITIES.search(canonical_quantity(m.quantity, m.unit))]
    assert len(memory) >= 40, len(memory)
    assert all(unit_kind(m.unit) == "bytes" for m in memory)


def test_training_rows_state_hardware_and_model(points):
    for p in points:
        assert p.category in ("B", "C"), p.id
        assert p.model.name, p.id
        assert p.hardware.count and p.hardware.count >= 1, p.id


# --------------------------------------------------------------------------- loader


def _write(path: Path, doc) -> None:
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")


def _pt(pid: str) -> dict:
    return {"id": pid, "category": "C", "source": {"title": "T", "url": "https://example.org"},
            "measured": [{"quantity": "peak_memory_per_gpu", "value": 1.0, "unit": "GiB"}]}


def test_default_files_are_the_dev_set_plus_files_marked_default(tmp_path):
    _write(tmp_path / DEV_SET.name, {"points": [_pt("a")]})
    _write(tmp_path / "serving_points.yaml", {"default": True, "points": [_pt("b")]})
    _write(tmp_path / "scratch.yaml", {"points": [_pt("c")]})                 # not marked: not read
    _write(tmp_path / "frameworks.yaml", {"frameworks": [], "default": True})  # no points list: not read
    assert default_files(tmp_path) == [tmp_path / DEV_SET.name, tmp_path / "serving_points.yaml"]


def test_load_points_without_path_reads_every_default_file():
    dev = load_points(DEV_SET)
    more = load_points(MORE)
    everything = load_points()
    ids = [p.id for p in everything]
    assert {p.id for p in dev} | {p.id for p in more} <= set(ids)
    assert len(ids) == sum(len(load_points(f)) for f in default_files())


def test_an_id_repeated_across_default_files_is_one_clear_error(tmp_path, monkeypatch):
    import sizeup.validate.points as points_mod

    _write(tmp_path / DEV_SET.name, {"points": [_pt("same")]})
    _write(tmp_path / "more.yaml", {"default": True, "points": [_pt("same")]})
    monkeypatch.setattr(points_mod, "DATA_DIR", tmp_path)
    with pytest.raises(SizeupError, match="'same' appears in both"):
        load_points()


def test_schema_additions_are_typed(tmp_path):
    doc = {"default": True, "points": [dict(_pt("x"), framework="maxtext", model={"name": "m", "head_dim": 128}),
                                       dict(_pt("y"), model={"head_dim": "wide"})]}
    _write(tmp_path / "runs.yaml", doc)
    x, y = load_points(tmp_path / "runs.yaml")
    assert isinstance(x, Point) and x.framework == "maxtext" and x.model.head_dim == 128 and x.family == "maxtext"
    assert isinstance(y, BadPoint) and "head_dim" in y.reason


def test_stated_head_dim_sets_the_attention_width(points):
    """MaxText's 128B config: 128 heads of head_dim 128 on a 8192-wide model (attention width 16384, not 8192)."""
    from sizeup.core.params import count_params
    from sizeup.validate.mapping import arch_from_fields

    p = next(p for p in points if p.id == "maxtext-v5p-128b-1x-v5p-256")
    assert (p.model.hidden, p.model.heads, p.model.head_dim) == (8192, 128, 128)
    arch = arch_from_fields(p)
    assert arch.head_dim == 128 and arch.num_heads * arch.head_dim == 16384
    # hand count per layer: q,k,v,o = 4 x 8192 x 16384; SwiGLU = 3 x 8192 x 57344; two RMSNorm weights
    per_layer = 4 * 8192 * 16384 + 3 * 8192 * 57344 + 2 * 8192
    expected = 64 * per_layer + 2 * 32000 * 8192 + 8192  # untied embedding and output, final norm
    assert count_params(arch).total == expected
