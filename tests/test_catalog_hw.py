"""Hardware and platform catalog: every YAML loads, every number is sourced, prices are dated,
names match forgivingly, peaks are dense, and user catalog files add/override entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sizeup.catalog import DATA_DIR, Catalog, load_catalog
from sizeup.cli import main
from sizeup.errors import SizeupError
from sizeup.schema import CitedPrice, GpuFile, PlatformFile, PriceEntry


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# --------------------------------------------------------------------------- loading + sources


def test_every_gpu_and_platform_yaml_loads(cat):
    gpu_files = sorted((DATA_DIR / "gpus").glob("*.yaml"))
    platform_files = sorted((DATA_DIR / "platforms").glob("*.yaml"))
    assert {p.stem for p in gpu_files} == set(cat.gpus)
    assert {p.stem for p in platform_files} == set(cat.platforms)
    assert len(cat.gpus) >= 28 and len(cat.platforms) >= 8
    for pid, p in cat.platforms.items():
        for inst in p.instances:
            assert inst.gpu_id in cat.gpus, (pid, inst.id)
            assert inst.prices, (pid, inst.id)


def _numbers_without_source(node, path="") -> list[str]:
    """Every mapping holding a number must also hold a `source` (or be a price entry with one)."""
    bad = []
    if isinstance(node, dict):
        has_source = isinstance(node.get("source"), str) and len(node["source"]) >= 3
        for key, value in node.items():
            here = f"{path}.{key}"
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and not has_source and key not in ("gpus", "memory_gb"):
                bad.append(here)
            elif isinstance(value, str) and key == "value" and not has_source:
                bad.append(here)
            else:
                bad.extend(_numbers_without_source(value, here))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            bad.extend(_numbers_without_source(value, f"{path}[{i}]"))
    return bad


@pytest.mark.parametrize("kind", ["gpus", "platforms"])
def test_every_number_has_a_source(kind):
    for path in sorted((DATA_DIR / kind).glob("*.yaml")):
        assert _numbers_without_source(_yaml(path)) == [], path.name
    eff = _yaml(DATA_DIR / "efficiency.yaml")
    assert _numbers_without_source({"defaults": eff["defaults"], "families": eff["families"]}) == []


def test_source_keys_resolve(cat):
    """Every `source:` is a key of hw_sources.yaml (URLs and free text would also be allowed, none are used)."""
    keys = set(cat.hw_sources)
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("source"), str):
                found.add(node["source"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in [*(DATA_DIR / "gpus").glob("*.yaml"), *(DATA_DIR / "platforms").glob("*.yaml"),
                 DATA_DIR / "efficiency.yaml"]:
        walk(_yaml(path))
    assert found and found <= keys, sorted(found - keys)


def test_every_price_has_as_of_and_source(cat):
    for p in cat.platforms.values():
        for inst in p.instances:
            for price in inst.prices:
                assert len(price.as_of) >= 4 and len(price.source) >= 3, (p.id, inst.id)
                assert price.usd_per_hour >= 0


def test_price_without_as_of_fails_validation(tmp_path):
    with pytest.raises(ValidationError):
        PriceEntry.model_validate({"usd_per_hour": 1.0, "source": "someone"})
    with pytest.raises(ValidationError):
        CitedPrice.model_validate({"value": 25000, "source": "epoch_costs"})
    # and through a file: one instance price lacks as_of -> the whole user catalog fails with one line
    data = _yaml(DATA_DIR / "platforms" / "lambda.yaml")
    del data["instances"][0]["prices"]["on_demand"]["as_of"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"platforms": {"mycloud": data}}))
    with pytest.raises(SizeupError, match="as_of"):
        Catalog(extra_files=(bad,)).platforms


def test_number_without_source_fails_validation():
    data = _yaml(DATA_DIR / "gpus" / "t4.yaml")
    data["tdp_w"] = {"value": 70}
    with pytest.raises(ValidationError, match="source"):
        GpuFile.model_validate(data)
    data["tdp_w"] = {"value": 70, "source": "assumed"}  # 'assumed' must say what was assumed
    with pytest.raises(ValidationError, match="note"):
        GpuFile.model_validate(data)


def test_sparse_dtype_names_and_units_are_checked():
    data = _yaml(DATA_DIR / "gpus" / "h100-sxm.yaml")
    data["peak_tflops_dense"]["bf16_sparse"] = {"value": 1979, "source": "hpctech_h100"}
    with pytest.raises(ValidationError, match="unknown dtype"):
        GpuFile.model_validate(data)
    data = _yaml(DATA_DIR / "gpus" / "h100-sxm.yaml")
    data["peak_tflops_dense"]["bf16"]["value"] = 989e12  # FLOP/s where TFLOP/s is expected
    with pytest.raises(ValidationError, match="TFLOP/s"):
        GpuFile.model_validate(data)


# --------------------------------------------------------------------------- figures


def test_dense_not_sparse(cat):
    # hardware_notes 1: H100 SXM bf16 is 989 dense (1,979 is the 2:4-sparse datasheet figure)
    assert cat.gpu("h100").peak("bf16") == pytest.approx(989e12)
    assert cat.gpu("h100-sxm").peak("fp8") == pytest.approx(1979e12)
    assert cat.gpu("a100").peak("bf16") == pytest.approx(312e12)
    assert cat.gpu("l4").peak("bf16") == pytest.approx(121e12)
    assert cat.gpu("h100 nvl").peak("bf16") == pytest.approx(835.5e12)
    for g in cat.gpus.values():  # no catalog GPU exceeds the largest dense bf16 in the sources (GB200 2,500)
        assert g.peak("bf16") <= 2500e12, g.id


def test_geforce_uses_fp32_accumulate_rate(cat):
    # hardware_notes 1: RTX 4090 165.2 (FP32 accumulate) vs 330.3 (FP16 accumulate)
    assert cat.gpu("RTX 4090").peak("bf16") == pytest.approx(165.2e12)
    assert cat.gpu("rtx 4090").peak("fp16") == pytest.approx(165.2e12)
    assert cat.gpu("RTX 3090").peak("bf16") == pytest.approx(71e12)  # derived: 142 / 2
    assert cat.gpu("RTX 5090").peak("bf16") == pytest.approx(209.5e12)
    assert "derived" in cat.gpu("rtx-3090").sources["peak_flops_per_s.bf16"]


def test_turing_and_volta_lack_bf16(cat):
    assert not cat.gpu("t4").supports_bf16 and cat.gpu("t4").peak("fp16") == pytest.approx(65e12)
    assert not cat.gpu("v100").supports_bf16


def test_memory_is_the_real_capacity(cat):
    MiB = 2**20
    assert cat.gpu("t4").memory_bytes == 15360 * MiB  # nvidia-smi, ECC on
    assert cat.gpu("a100-80gb").memory_bytes == 81920 * MiB
    assert cat.gpu("h100").memory_bytes == 81559 * MiB
    assert cat.gpu("a100-40gb").memory_bytes == 40 * 2**30


def test_links_are_one_direction(cat):
    # NVLink 4 is 900 GB/s bidirectional -> 450 one way; NDR400 per GPU = 50 GB/s
    h = cat.gpu("h100")
    assert h.intra_node_bytes_per_s == pytest.approx(450e9)
    assert h.inter_node_bytes_per_s == pytest.approx(50e9)
    assert h.node_size == 8 and cat.gpu("gb200").node_size == 72
    assert cat.gpu("a100-80gb-pcie").intra_node_link.startswith("PCIe")


def test_efficiency_data(cat):
    a100, h100, mi = cat.gpu("a100"), cat.gpu("h100"), cat.gpu("mi300x")
    # largest GEMMs approach the measured MAMF (ml-engineering): A100 SXM 0.869, H100 0.803, MI300X 0.514
    assert a100.matmul_efficiency[-1][1] == pytest.approx(0.869, abs=0.002)
    assert h100.matmul_efficiency[-1][1] == pytest.approx(0.803, abs=0.002)
    assert mi.matmul_efficiency[-1][1] == pytest.approx(0.514, abs=0.002)
    for g in cat.gpus.values():
        flops = [f for f, _ in g.matmul_efficiency]
        fracs = [e for _, e in g.matmul_efficiency]
        assert flops == sorted(flops) and fracs == sorted(fracs), g.id  # bigger GEMMs are never less efficient
        assert 0 < fracs[0] and fracs[-1] <= 1
        assert 0 < g.hbm_efficiency <= 1 and 0 < g.collective_efficiency_inter <= 1
    # small GEMMs are far below peak: H100 at 1e9 FLOP ~0.3, 1e10 ~0.7 (efficiency.yaml header)
    curve = dict(h100.matmul_efficiency)
    assert 0.2 < curve[1e9] < 0.4 and 0.6 < curve[1e10] < 0.75
    assert a100.collective_efficiency_intra == pytest.approx(0.78)
    assert h100.collective_efficiency_intra == pytest.approx(0.82)
    assert h100.hbm_efficiency == pytest.approx(0.90) and a100.hbm_efficiency == pytest.approx(0.85)
    assert "mle_mamf" in h100.sources["matmul_efficiency"]


# --------------------------------------------------------------------------- name matching


@pytest.mark.parametrize("name, gpu_id", [
    ("A100-80GB", "a100-80gb-sxm"),
    ("A100 80GB SXM", "a100-80gb-sxm"),
    ("a100-80gb-sxm", "a100-80gb-sxm"),
    ("A100", "a100-80gb-sxm"),
    ("A100 (memory size not stated)", "a100-80gb-sxm"),
    ("A100-40GB", "a100-40gb-sxm"),
    ("NVIDIA A100-SXM4-40GB", "a100-40gb-sxm"),
    ("a100_80gb_pcie", "a100-80gb-pcie"),
    ("A100-80GB (Selene DGX A100)", "a100-80gb-sxm"),
    ("NVIDIA H100 SXM5", "h100-sxm"),
    ("H100-80GB-SXM (HBM3)", "h100-sxm"),
    ("H100-80GB", "h100-sxm"),
    ("H100", "h100-sxm"),
    ("h100 pcie", "h100-pcie"),
    ("H100 NVL", "h100-nvl"),
    ("H200-141GB", "h200"),
    ("V100 (DGX-2H)", "v100-32gb-sxm"),
    ("V100", "v100-16gb-sxm"),
    ("V100-SXM2-16GB", "v100-16gb-sxm"),
    ("RTX 4090", "rtx-4090"),
    ("NVIDIA GeForce RTX 3090", "rtx-3090"),
    ("RTX A6000", "rtx-a6000"),
    ("A40-48GB", "a40"),
    ("TPU v4", "tpu-v4"),
    ("tpu-v5e", "tpu-v5e"),
    ("t4", "t4"),
    ("Tesla T4", "t4"),
    ("a10g", "a10g"),
    ("A10", "a10"),
    ("L4", "l4"),
    ("L40S", "l40s"),
    ("MI300X", "mi300x"),
    ("GB200 NVL72", "gb200"),
    ("Gaudi 3", "gaudi3"),
])
def test_forgiving_names(cat, name, gpu_id):
    assert cat.gpu_id(name) == gpu_id
    assert cat.gpu(name).id == gpu_id


@pytest.mark.parametrize("name, hint", [
    ("H1000", "Did you mean"),          # not a substring match of H100
    ("rtx 2080", "RTX"),
    ("A100 96GB", "a100-40gb-sxm (40 GB sxm)"),  # family known, size not: list the variants
    ("CUDA GPU (unspecified)", "sizeup gpus"),
])
def test_unknown_gpu_is_one_clear_line(cat, name, hint):
    with pytest.raises(SizeupError) as err:
        cat.gpu(name)
    msg = str(err.value)
    assert "\n" not in msg and hint in msg and "sizeup gpus" in msg


def test_gpu_or_memory(cat):
    g = cat.gpu_or_memory("24GiB")
    assert g.memory_bytes == 24 * 2**30 and g.vendor == "generic" and g.peak("bf16") == 0
    assert cat.gpu_or_memory("16GB").memory_bytes == 16e9
    assert cat.gpu_or_memory("Apple M2 (16GB unified)").memory_bytes == 16e9
    assert cat.gpu_or_memory("t4").id == "t4"
    with pytest.raises(SizeupError):
        cat.gpu_or_memory("A100 96GB")  # a known family with an unknown size stays an error


# --------------------------------------------------------------------------- platforms


def test_platform_lookup_and_offers(cat):
    assert cat.platform("AWS").id == "aws" and cat.platform("Lambda Labs").id == "lambda"
    assert cat.platform("google cloud").id == "gcp"
    p5 = cat.platform("aws").instance("p5.48xlarge")
    assert p5.gpus == 8 and p5.price("on_demand").usd_per_hour == pytest.approx(55.04)
    offers = cat.offers("aws", "h100", "on-demand")
    assert offers and all(o.gpu_id == "h100-sxm" and o.pricing == "on-demand" for o in offers)
    assert offers == sorted(offers, key=lambda o: o.price_usd_per_gpu_hour)
    spot = cat.offers("aws", "h100", "spot")[0]
    assert spot.preemption_rate_per_hour > 0 and spot.billing_increment_s == 1 and spot.min_billing_s == 60
    # seed 004 needs these
    for platform, gpu in [("modal", "t4"), ("gcp", "t4"), ("aws", "t4"), ("lambda", "a10"), ("modal", "a10"),
                          ("aws", "a10g"), ("gcp", "l4"), ("modal", "l4"), ("gcp", "a100-40gb"),
                          ("lambda", "a100-80gb"), ("runpod", "h100"), ("coreweave", "h100"), ("vast", "rtx 4090")]:
        assert cat.offers(platform, gpu), (platform, gpu)


def test_platform_errors_list_what_exists(cat):
    with pytest.raises(SizeupError, match="Known platforms: aws"):
        cat.platform("digitalocean-gpu-droplets")
    with pytest.raises(SizeupError, match="it offers: .*a10"):
        cat.offers("lambda", "t4")
    with pytest.raises(SizeupError, match="allowed: on-demand, spot"):
        cat.offers("aws", "t4", "reserved_5y")
    with pytest.raises(SizeupError, match="no spot price"):
        cat.offers("lambda", "a10", "spot")


def test_lambda_billing_conflict_recorded(cat):
    lam = cat.platform("lambda")
    assert lam.billing_increment_s == 60
    assert any("seed 004" in c for c in lam.conflicts) and any("per-hour" in c for c in lam.conflicts)
    assert "conflicting sources" in lam.billing_source


# --------------------------------------------------------------------------- user catalog files


def test_user_catalog_overrides_and_adds(tmp_path):
    user = {
        "gpus": {
            "h100-sxm": {"memory": {"value": "80GB", "source": "my lab's nvidia-smi"}},  # partial override
            "my-card": {**_yaml(DATA_DIR / "gpus" / "a10.yaml"), "name": "My Card 24GB",
                        "match": {"family": "mycard", "memory_gb": 24, "form": "pcie", "default": True},
                        "aliases": ["MyCard"]},
        },
        "platforms": {
            "lambda": {"billing": {"increment_s": {"value": 3600, "source": "my invoice"}},
                       "instances": [{"id": "gpu_1x_a10", "gpu": "a10", "gpus": 1, "prices": {
                           "on_demand": {"usd_per_hour": 0.31, "as_of": "2026-11-01", "source": "my quote"}}}]},
            "homelab": {"name": "Home lab", "kind": "onprem",
                        "billing": {"increment_s": {"value": 1, "source": "electricity meter"},
                                    "minimum_s": {"value": 0, "source": "electricity meter"}},
                        "spot": {"available": False}, "storage": {},
                        "instances": [{"id": "box", "gpu": "my-card", "gpus": 2, "prices": {
                            "on_demand": {"usd_per_hour": 0.12, "as_of": "2026-11", "source": "power bill"}}}]},
        },
    }
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(user))
    cat = load_catalog(extra_files=[str(path)])
    assert cat.gpu("h100").memory_bytes == 80e9
    assert cat.gpu("h100").peak("bf16") == pytest.approx(989e12)  # the rest of the built-in entry is kept
    assert cat.gpu("MyCard").name == "My Card 24GB"
    lam = cat.platform("lambda")
    assert lam.billing_increment_s == 3600 and lam.min_billing_s == 60  # merged, not replaced
    a10 = cat.offers("lambda", "a10")
    assert len(a10) == 1 and a10[0].price_usd_per_hour == pytest.approx(0.31) and a10[0].price_as_of == "2026-11-01"
    assert len(lam.instances) == len(load_catalog().platform("lambda").instances)  # replaced by id, not appended
    assert cat.offers("homelab", "my-card")[0].gpus_per_instance == 2
    assert load_catalog().gpu("h100").memory_bytes == 81559 * 2**20  # the built-in catalog is untouched


def test_user_catalog_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu:\n  x: {}\n")
    with pytest.raises(SizeupError, match="allowed top-level keys: gpus, platforms"):
        Catalog(extra_files=(bad,)).gpus
    with pytest.raises(SizeupError, match="not found"):
        Catalog(extra_files=(tmp_path / "missing.yaml",)).gpus
    bad.write_text(yaml.safe_dump({"platforms": {"x": {**_yaml(DATA_DIR / "platforms" / "together.yaml"),
                                                       "instances": [{"id": "a", "gpu": "h101", "gpus": 1, "prices": {
                                                           "on_demand": {"usd_per_hour": 1, "as_of": "2026-01",
                                                                         "source": "my quote"}}}]}}}))
    with pytest.raises(SizeupError, match="not a catalog GPU id"):
        Catalog(extra_files=(bad,)).platforms


def test_platform_schema_rejects_spot_price_without_spot_policy():
    data = _yaml(DATA_DIR / "platforms" / "lambda.yaml")
    data["instances"][0]["prices"]["spot"] = {"usd_per_hour": 1.0, "as_of": "2026-01", "source": "x-source"}
    with pytest.raises(ValidationError, match="spot.available is false"):
        PlatformFile.model_validate(data)


# --------------------------------------------------------------------------- CLI


def test_cli_gpus_json(capsys):
    assert main(["gpus", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    h = next(g for g in data["gpus"] if g["id"] == "h100-sxm")
    assert h["peak_flops_per_s_dense"]["bf16"] == pytest.approx(989e12)
    assert h["sources"]["peak_flops_per_s.bf16"].startswith("mle_tflops")


def test_cli_gpu_detail_and_unknown(capsys):
    assert main(["gpus", "NVIDIA H100 SXM5", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "989" in out and "mle_tflops" in out and "source mle_mamf" in out
    assert main(["gpus", "H1000"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_cli_platforms_warns_about_old_prices(capsys):
    assert main(["platforms", "lambda", "--json", "--max-age-days", "30"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any("older than 30 days" in w for w in data["warnings"])
    assert any("sources disagree" in w for w in data["warnings"])
    a10 = next(o for o in data["offers"] if o["instance"] == "gpu_1x_a10")
    assert a10["usd_per_hour"] == pytest.approx(0.75) and a10["as_of"]
    assert main(["platforms", "--gpu", "t4", "--pricing", "spot"]) == 0
    assert "g4dn.xlarge" in capsys.readouterr().out
    assert main(["platforms", "nope"]) == 2


def test_every_id_name_and_alias_resolves_to_its_own_gpu(cat):
    """No two GPUs share an alias, and the matcher never sends a GPU's own name elsewhere."""
    for gpu_id, g in cat.gpus.items():
        for key in (gpu_id, g.name, *g.aliases, gpu_id.upper().replace("-", " ")):
            assert cat.gpu_id(key) == gpu_id, (key, cat.gpu_id(key), gpu_id)


def test_fp8_mamf(cat):
    # ml-engineering MAMF table: H100 SXM FP8 1402.6 / 1979 = 0.709 vs bf16 0.803
    assert cat.matmul_mamf("h100", "fp8")[0] == pytest.approx(0.709)
    assert cat.matmul_mamf("h100", "bf16")[0] == pytest.approx(0.803)
    value, src = cat.matmul_mamf("a100", "fp8")  # Ampere: no FP8 measurement -> bf16 value, said so
    assert value == pytest.approx(0.869) and "no FP8" in src


def _alias_pairs():
    c = load_catalog()
    return [(a, gid) for gid, g in sorted(c.gpus.items()) for a in (gid, *g.aliases)]


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(pair=st.sampled_from(_alias_pairs()), sep=st.sampled_from([" ", "-", "_", "  "]),
       upper=st.booleans(), vendor=st.sampled_from(["", "NVIDIA ", "nvidia ", "AMD ", "Google "]))
def test_matching_ignores_case_separators_and_vendor_words(pair, sep, upper, vendor):
    alias, gpu_id = pair
    text = vendor + alias.replace(" ", sep).replace("-", sep)
    text = text.upper() if upper else text.lower()
    assert load_catalog().gpu_id(text) == gpu_id
