"""benchmarks/gpu_truth.py on a CPU with --tiny, and its converters (benchmarks/gpu_truth_report.py).

The GPU run itself needs a GPU machine; here the same code runs with tiny sizes. Checks: the output files'
structure, every measured number finite and > 0, the exact model-state bytes equal what torch reports for the
same tiny models built independently here, and the development-set rows load with sizeup's validator loader and
are predicted by sizeup with the settings they state. The whole module takes ~20-30 s on 2 shared cores (one
gpu_truth run, in-process, so that xdist does not run it twice).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.trace

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gt = _load("gpu_truth")
report = _load("gpu_truth_report")


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# --------------------------------------------------------------------------- the tiny CPU run


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls transformers' deprecated is_gradient_checkpointing
def test_tiny_cpu_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "gt"
    assert gt.main([str(out), "--device", "cpu", "--tiny", "--budget-s", "150"]) == 0
    data = json.loads((out / "results.json").read_text())

    _check_metadata(data["metadata"])
    _check_sections_and_csv(data, out)
    _check_cpu_skips(data)
    _check_training_inputs(data["sections"]["training"]["rows"])
    _check_model_state_bytes_against_torch(data["sections"]["training"]["rows"])
    _check_rows_load_and_predict(data, tmp_path)
    _check_report_all(out, tmp_path, capsys)


def _check_metadata(md: dict) -> None:
    for key in ("torch_version", "transformers_version", "device_name", "date_utc", "git_commit", "script_sha256",
                "budget_s", "wall_s", "section_wall_s", "catalog"):
        assert key in md, key
    assert md["device"] == "cpu" and md["tiny"] is True
    assert md["torch_version"] == torch.__version__
    assert re.fullmatch(r"[0-9a-f]{64}", md["script_sha256"])
    assert re.match(r"\d{4}-\d\d-\d\dT", md["date_utc"])
    assert md["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", md["git_commit"])
    assert md["catalog"] == "sizeup.catalog.load_catalog"
    assert md["catalog_gpu"] is None and "CPU run" in md["catalog_gpu_note"]
    assert 0 < md["wall_s"] < 150


def _check_sections_and_csv(data: dict, out: Path) -> None:
    assert set(data["sections"]) == set(gt.SECTIONS)
    for name, sec in data["sections"].items():
        rows = sec["rows"]
        assert rows, f"section {name} measured nothing: {sec['skipped']}"
        fields = sec["notes"]["measured_fields"]
        for row in rows:
            for f in fields:
                assert _finite_positive(row[f]), (name, f, row)
            for k, v in row.items():  # nothing non-finite or negative anywhere
                if isinstance(v, float):
                    assert math.isfinite(v) and v >= 0, (name, k, v)
        with open(out / f"{name}.csv", newline="") as fh:
            table = list(csv.DictReader(fh))
        assert len(table) == len(rows)
        assert set(fields) <= set(table[0])
        for row, line in zip(rows, table):
            for f in fields:
                assert float(line[f]) == pytest.approx(row[f], rel=1e-12)
        for s in sec["skipped"]:
            assert s["item"] and s["reason"], s
    gemm = data["sections"]["gemm"]["rows"]
    for r in gemm:
        assert r["flops"] == 2 * r["M"] * r["N"] * r["K"]
        assert r["tflops"] == pytest.approx(r["flops"] / r["time_s_median"] / 1e12)
        assert r["efficiency"] is None  # no catalog peak for a CPU
    kinds = {r["kind"] for r in gemm}
    assert {"surface", "model-fwd", "model-dgrad", "model-wgrad"} <= kinds
    # the whole tiny surface 16..64 cubed was measured
    assert len([r for r in gemm if r["kind"] == "surface"]) == 27
    att = data["sections"]["attention"]["rows"]
    assert {r["causal"] for r in att} == {True, False} and len({r["head_dim"] for r in att}) == 2
    for r in att:
        factor = 0.5 if r["causal"] else 1.0
        assert r["fwd_flops"] == 4 * r["batch"] * r["heads"] * r["seq"] ** 2 * r["head_dim"] * factor
    inf = data["sections"]["inference"]["rows"]
    assert {r["variant"] for r in inf} == {"dynamic", "static"}
    assert sorted({r["batch"] for r in inf}) == [1, 2, 4]
    for r in inf:
        assert r["decode_tokens_per_s"] == pytest.approx(r["batch"] / r["tpot_s"])


def _check_cpu_skips(data: dict) -> None:
    skipped = {s["item"]: s["reason"] for s in data["sections"]["gemm"]["skipped"]}
    for scaling in ("tensorwise", "rowwise"):
        assert "CPU has no fp8" in skipped[f"fp8 {scaling} (all shapes)"]
    inf = data["sections"]["inference"]["skipped"]
    assert [s for s in inf if s["item"].startswith("static+compile")]
    assert all("torch.compile on CPU" in s["reason"] for s in inf if s["item"].startswith("static+compile"))
    for r in data["sections"]["training"]["rows"]:
        assert r["max_memory_allocated_bytes"] is None and r["max_memory_reserved_bytes"] is None
        assert r["nvidia_smi_used_bytes"] is None and "CPU run" in r["null_reason"]


def _check_training_inputs(rows: list[dict]) -> None:
    for r in rows:
        for key in ("model_id", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "micro_batch",
                    "seq_len", "recompute", "precision", "optimizer", "peft", "attn_implementation", "warmup_steps",
                    "measured_steps", "params_total", "params_trainable"):
            assert key in r, key
        assert len(r["step_times_s"]) == r["measured_steps"]
        assert r["tokens_per_s"] == pytest.approx(r["micro_batch"] * r["seq_len"] / r["step_time_s_median"])
    assert {r["recompute"] for r in rows} == {"none", "hf", "every-2"}
    assert {r["precision"] for r in rows} == {"bf16-mixed", "bf16"}
    assert {r["optimizer"] for r in rows} == {"adamw-fused", "adamw-foreach"}
    if importlib.util.find_spec("peft") is not None:
        assert any(r["peft"] == "lora" for r in rows)
    by = {r["recompute"]: r for r in rows if r["model_id"] == "tiny-a"}
    assert by["hf"]["checkpointed_layers"] == [0, 1]
    assert by["every-2"]["checkpointed_layers"] == [0]


def _check_model_state_bytes_against_torch(rows: list[dict]) -> None:
    """Rebuild each tiny model here (transformers + peft directly, one real AdamW step) and compare tensor bytes."""
    for r in rows:
        cfg = transformers.LlamaConfig(
            vocab_size=r["vocab"], hidden_size=r["hidden"], intermediate_size=r["ffn"], num_hidden_layers=r["layers"],
            num_attention_heads=r["heads"], num_key_value_heads=r["kv_heads"], head_dim=r["head_dim"],
            tie_word_embeddings=r["tie_embeddings"], max_position_embeddings=128)
        lora = r["peft"] == "lora"
        dtype = torch.float32 if (r["precision"] == "bf16-mixed" and not lora) else torch.bfloat16
        model = transformers.LlamaForCausalLM(cfg).to(dtype)
        if lora:
            import peft

            model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                               task_type="CAUSAL_LM"))
        params = [p for p in model.parameters() if p.requires_grad]
        fused = r["optimizer"] == "adamw-fused"
        opt = torch.optim.AdamW(params, fused=fused, foreach=None if fused else True)
        ids = torch.randint(0, r["vocab"], (1, 8))
        model(input_ids=ids, labels=ids).loss.backward()
        grads = sum(p.grad.numel() * p.grad.element_size() for p in params)
        opt.step()
        states = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        assert r["param_bytes"] == weights, r["item"]
        assert r["grad_bytes"] == grads, r["item"]
        assert r["optimizer_state_bytes"] == states, r["item"]
        assert r["model_state_bytes"] == weights + grads + states
        assert r["params_trainable"] == sum(p.numel() for p in params)


def _check_rows_load_and_predict(data: dict, tmp_path: Path) -> None:
    from sizeup.validate.points import BadPoint, load_points

    text = report.rows_yaml(data)
    path = tmp_path / "rows.yaml"
    path.write_text(text)
    points = load_points(path)
    assert points and not [p for p in points if isinstance(p, BadPoint)]
    n = len(data["sections"]["training"]["rows"])
    assert sorted(p.category for p in points) == ["B"] * n + ["C"] * n
    assert len({p.id for p in points}) == len(points)
    md = data["metadata"]
    for p in points:
        src = p.source[0]
        assert src.path == "benchmarks/gpu_truth.py" and src.commit == md["git_commit"]
        assert md["script_sha256"] in src.via and "gpu_truth.py" in src.title
        assert p.hardware.gpu == md["device_name"] and p.hardware.count == 1
        quantities = {m.quantity for m in p.measured}
        assert quantities == ({"model_state_memory_per_gpu"} if p.category == "C"
                              else {"step_time", "throughput_tokens_per_s"})
        for m in p.measured:
            assert _finite_positive(m.value)
    # exact values: the C row's bytes and the B row's time are the results' own numbers
    first = data["sections"]["training"]["rows"][0]
    c = next(p for p in points if p.category == "C")
    assert c.measured[0].value * 2**30 == first["model_state_bytes"]
    b = next(p for p in points if p.category == "B")
    assert {m.quantity: m.value for m in b.measured}["step_time"] == first["step_time_s_median"]

    # sizeup cannot predict a CPU (not a catalog GPU): every row says so
    rows = report.compare(path)
    assert rows and all(r["skipped"] and "not in the catalog" in r["skipped"] for r in rows)

    # the same rows on a catalog GPU (this test's substitution: the settings are read from the fields) are all
    # predicted, with the precision / recompute / PEFT / micro-batch the run used, and the model-state bytes
    # equal torch's tensor bytes (sizeup counts 16 B/param for bf16-mixed AdamW, 8 for pure bf16; the
    # difference is AdamW's 4-byte `step` tensor per parameter tensor)
    raw = yaml.safe_load(text)
    for p in raw["points"]:
        p["hardware"]["gpu"] = "H200"
    on_gpu = tmp_path / "rows_h200.yaml"
    on_gpu.write_text(yaml.safe_dump(raw, sort_keys=False))
    rows = report.compare(on_gpu)
    train = {report._slug(f"gpu-truth-{md['device_name']}-{r['model_id']}-l{r['layers']}-mb{r['micro_batch']}-"
                          f"s{r['seq_len']}-{'lora' if r['peft'] else r['precision']}-{r['optimizer']}-rc-"
                          f"{r['recompute']}"): r for r in data["sections"]["training"]["rows"]}
    for row in rows:
        assert row["skipped"] is None, row
        run = train[row["id"].rsplit("-", 1)[0]]
        setup = row["setup"]
        assert f" mb{run['micro_batch']} " in setup and f" s{run['seq_len']} " in setup
        want_prec = "bf16" if (run["precision"] == "bf16" and not run["peft"]) else "bf16-mixed"
        assert f" {want_prec} adamw " in setup, setup
        assert ("recompute=none" in setup) == (run["recompute"] == "none"), setup
        assert setup.endswith(" lora") == (run["peft"] == "lora"), setup
        if row["quantity"] == "model_state_memory_per_gpu":
            assert row["predicted"] == pytest.approx(row["measured"], rel=2e-4), row


def _check_report_all(out: Path, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "report"
    written = report.run_all(str(out), str(dest), None)
    assert set(written) == {"rows", "comparison"}  # no catalog source from a CPU run
    assert "not a GPU" in capsys.readouterr().err
    table = (dest / "comparison.md").read_text()
    assert table.startswith("| id | quantity |") and "model_state_memory_per_gpu" in table
    assert report.main(["catalog", str(out)]) == 2
    assert "not a GPU" in capsys.readouterr().err


# --------------------------------------------------------------------------- budget and bad input


def test_budget_exhausted_skips_everything_with_reasons(tmp_path):
    out = tmp_path / "gt"
    assert gt.main([str(out), "--device", "cpu", "--tiny", "--budget-s", "0.001",
                    "--sections", "gemm,training"]) == 0
    data = json.loads((out / "results.json").read_text())
    for name in ("gemm", "training"):
        sec = data["sections"][name]
        assert sec["rows"] == []
        assert any("over budget" in s["reason"] for s in sec["skipped"])
    assert len([s for s in data["sections"]["training"]["skipped"]]) == len(gt.training_plan(True))
    for name in ("attention", "bandwidth", "inference"):
        assert data["sections"][name]["skipped"] == [{"item": f"section {name}", "reason": "not requested (--sections)"}]
    assert not (out / "gemm.csv").exists()


@pytest.mark.parametrize("argv, message", [
    (["--budget-s", "nan"], "--budget-s must be a finite number > 0"),
    (["--budget-s", "-5"], "--budget-s must be a finite number > 0"),
    (["--sections", "gemm,bogus"], "--sections: unknown bogus"),
    (["--device", "tpu"], "invalid choice"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, message):
    assert gt.main([str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_output_path_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert gt.main([str(f), "--tiny"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_report_bad_input(tmp_path, capsys):
    assert report.main(["rows", str(tmp_path / "missing")]) == 2
    assert "no results.json" in capsys.readouterr().err
    (tmp_path / "results.json").write_text("{not json")
    assert report.main(["rows", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert report.main(["frobnicate"]) == 2
    assert report.main(["rows", str(tmp_path), "--commit", "zz"]) == 2


# --------------------------------------------------------------------------- catalog source (synthetic GPU results)


def _synthetic_gpu_results(mamf: float, t0: float, hbm_fraction: float) -> dict:
    """GPU-shaped results whose GEMM times follow t = F / (mamf * peak) + t0 exactly (the catalog's curve form),
    so the fit must give back mamf and t0; the reference is the generating formula, not the fitting code."""
    from sizeup.catalog import load_catalog

    g = load_catalog().gpu("h200")
    peak = g.peak_flops_per_s["bf16"]
    gemm = []
    for M in (256, 1024, 4096, 16384):
        for N in (256, 1024, 4096, 16384):
            for K in (256, 4096, 16384):
                F = 2.0 * M * N * K
                t = F / (mamf * peak) + t0
                gemm.append({"kind": "surface", "dtype": "bf16", "scaling": None, "M": M, "N": N, "K": K, "flops": F,
                             "time_s_median": t, "tflops": F / t / 1e12, "efficiency": F / t / peak})
                if K == 16384:
                    t8 = F / (0.7 * g.peak_flops_per_s["fp8"]) + t0
                    for scaling in ("tensorwise", "rowwise"):
                        gemm.append({"kind": "surface", "dtype": "fp8", "scaling": scaling, "M": M, "N": N, "K": K,
                                     "flops": F, "time_s_median": t8, "tflops": F / t8 / 1e12,
                                     "efficiency": F / t8 / g.peak_flops_per_s["fp8"]})
    bw = [{"op": "copy", "shape": "[268435456] bf16", "gbytes_per_s": hbm_fraction * g.hbm_bytes_per_s / 1e9,
           "hbm_fraction": hbm_fraction},
          {"op": "add", "shape": "[268435456] bf16", "gbytes_per_s": 0.5 * g.hbm_bytes_per_s / 1e9,
           "hbm_fraction": 0.5}]
    att = [{"backend": "default", "head_dim": d, "causal": True, "seq": s, "fwd_efficiency": e, "bwd_efficiency": e / 2}
           for d, e in ((128, 0.4), (64, 0.32)) for s in (2048, 4096)]
    md = {"device": "cuda", "device_name": "NVIDIA H200", "torch_version": "9.9.9", "cuda_version": "12.8",
          "date_utc": "2026-12-04T12:00:00+00:00", "git_commit": "a" * 40, "script_sha256": "b" * 64,
          "nvidia_smi": [["NVIDIA H200", "570.1", "143771", "1980", "700"]],
          "catalog_gpu": {"id": g.id, "name": g.name, "peak_flops_per_s": dict(g.peak_flops_per_s),
                          "hbm_bytes_per_s": g.hbm_bytes_per_s}}
    sections = {s: {"rows": [], "skipped": [], "notes": {}} for s in gt.SECTIONS}
    sections["gemm"]["rows"], sections["bandwidth"]["rows"], sections["attention"]["rows"] = gemm, bw, att
    return {"metadata": md, "sections": sections}


def test_catalog_snippet_recovers_the_curve_and_loads_as_a_catalog_file(tmp_path):
    from sizeup.catalog import load_catalog

    res = _synthetic_gpu_results(mamf=0.78, t0=4e-6, hbm_fraction=0.91)
    text = report.catalog_snippet(res)
    doc = yaml.safe_load(text)
    eff = doc["gpus"]["h200"]["efficiency"]
    # the largest GEMM reaches mamf * F / (F + t0 * mamf * peak), just under mamf
    F = 2.0 * 16384**3
    peak = res["metadata"]["catalog_gpu"]["peak_flops_per_s"]["bf16"]
    assert eff["matmul_mamf"]["value"] == pytest.approx(0.78 * F / (F + 4e-6 * 0.78 * peak), abs=1e-4)
    assert eff["small_gemm_overhead_s"]["value"] == pytest.approx(4e-6, rel=0.05)
    assert eff["matmul_mamf_fp8"]["value"] < 0.7 and "rowwise" in eff["matmul_mamf_fp8"]["note"]
    assert eff["hbm_efficiency"]["value"] == pytest.approx(0.91)
    for knob in eff.values():
        assert "benchmarks/gpu_truth.py @aaaaaaaaaaaa, torch 9.9.9, 2026-12-04" in knob["note"]
    assert "attention_efficiency.value.h200: [0.400, 0.200]" in text
    assert "attention_head_dim_exponent: 0.322" in text  # log(0.32/0.4)/log(0.5)
    path = tmp_path / "h200.yaml"
    path.write_text(text)
    before, after = load_catalog().gpu("h200"), load_catalog((str(path),)).gpu("h200")
    assert after.hbm_efficiency == pytest.approx(0.91)
    assert dict(after.matmul_efficiency)[1e14] != dict(before.matmul_efficiency)[1e14]
    assert report.main(["catalog", str(tmp_path / "nowhere")]) == 2


def test_fit_small_gemm_overhead_exact_points():
    peak, mamf, t0 = 1e15, 0.8, 2.5e-6
    pts = [(F, mamf * F / (F + t0 * mamf * peak)) for F in (1e7, 1e8, 1e9, 1e10, 1e11, 1e12)]
    fit, err = report.fit_small_gemm_overhead(pts, mamf, peak)
    assert fit == pytest.approx(t0, rel=1e-4) and err < 1e-4


def test_raw_catalog_fallback_agrees_with_sizeup():
    """On a device machine without sizeup's dependencies the script reads the catalog YAML directly; it must give
    the same shapes and peaks as sizeup's catalog."""
    lib = gt.CatalogView()
    assert lib.cat is not None
    raw = gt.CatalogView()
    raw.cat = None
    for mid in ("llama-3.2-1b", "llama-3.1-8b", "llama-3-70b", "mistral-7b"):
        a, b = lib.model(mid), raw.model(mid)
        assert {k: a[k] for k in a if k != "name"} == {k: b[k] for k in b if k != "name"}, mid
    g_lib, g_raw = lib.gpu("NVIDIA H200"), raw.gpu("NVIDIA H200")
    assert g_lib["id"] == g_raw["id"] == "h200"
    assert g_raw["peak_flops_per_s"] == pytest.approx(g_lib["peak_flops_per_s"])
    assert g_raw["hbm_bytes_per_s"] == pytest.approx(g_lib["hbm_bytes_per_s"])


def test_gpu_training_rows_carry_cuda_memory_and_are_predicted(tmp_path):
    """The CUDA branch of the row converter (peak allocated / reserved / nvidia-smi), on a GPU-shaped training row."""
    from sizeup.validate.points import BadPoint, load_points

    res = _synthetic_gpu_results(mamf=0.78, t0=4e-6, hbm_fraction=0.91)
    res["metadata"].update({"device_memory_bytes": 150_754_820_096, "compute_capability": [9, 0],
                            "transformers_version": "5.25.0", "peft_version": "0.21.2", "git_dirty": False})
    row = {"item": "llama-3.2-1b L16 mb4 s2048 bf16-mixed adamw-fused recompute=every-2", "model_id": "llama-3.2-1b",
           "model_name": "Llama 3.2 1B", "layers": 16, "layers_full": 16, "layers_note": None, "hidden": 2048,
           "heads": 32, "kv_heads": 8, "head_dim": 64, "ffn": 8192, "vocab": 128256, "tie_embeddings": True,
           "micro_batch": 4, "seq_len": 2048, "recompute": "every-2", "precision": "bf16-mixed",
           "optimizer": "adamw-fused", "peft": None, "lora_rank": None, "measured_steps": 3,
           "recompute_api": "activation_checkpointing_enable(every_n_layers=2, use_reentrant=False)",
           "checkpointed_layers": list(range(0, 16, 2)), "params_total": 1_235_814_400,
           "params_base": 1_235_814_400, "param_bytes": 4 * 1_235_814_400, "grad_bytes": 4 * 1_235_814_400,
           "optimizer_state_bytes": 8 * 1_235_814_400 + 4 * 147, "step_times_s": [0.2, 0.21, 0.205],
           "step_time_s_median": 0.205, "tokens_per_step": 8192, "tokens_per_s": 8192 / 0.205,
           "max_memory_allocated_bytes": 40 * 2**30, "max_memory_reserved_bytes": 44 * 2**30,
           "nvidia_smi_used_bytes": 45 * 2**30, "torch_reserved_at_smi_bytes": 44 * 2**30}
    row["model_state_bytes"] = row["param_bytes"] + row["grad_bytes"] + row["optimizer_state_bytes"]
    res["sections"]["training"]["rows"] = [row]
    path = tmp_path / "rows.yaml"
    path.write_text(report.rows_yaml(res))
    points = load_points(path)
    assert not [p for p in points if isinstance(p, BadPoint)]
    c = next(p for p in points if p.category == "C")
    got = {m.quantity: (m.value, m.unit) for m in c.measured}
    assert got["peak_memory_allocated"] == (40.0, "GiB") and got["peak_memory_reserved"] == (44.0, "GiB")
    assert got["gpu_memory_used_nvml"] == (45.0, "GiB")
    assert c.hardware.gpu == "NVIDIA H200" and c.hardware.gpu_memory_gb == pytest.approx(150.754820096)
    assert "8 of 16 layers: 0,2,4,6,8,10,12,14" in c.parallel.recompute
    rows = report.compare(path, None)
    assert all(r["skipped"] is None for r in rows), rows
    # 'every 2nd decoder layer only (8 of 16 layers ...)' is a layer fraction of 8/16, not full recompute
    assert all("1x h200" in r["setup"] and "recompute=layer-fraction" in r["setup"] for r in rows)
    text = report.format_table(rows, markdown=True)
    assert "peak_memory_allocated: 1 of 1 predicted" in text


def test_full_size_plan_resolves_and_is_cut_by_the_budget(tmp_path):
    """The GPU plan (not --tiny): every catalog model it names resolves, and with no time left every item is
    skipped with the budget reason before anything large is built."""
    out = tmp_path / "gt"
    assert gt.main([str(out), "--device", "cpu", "--budget-s", "0.001", "--sections", "training,inference"]) == 0
    data = json.loads((out / "results.json").read_text())
    tr = data["sections"]["training"]
    assert tr["rows"] == [] and len(tr["skipped"]) == len(gt.training_plan(False))
    assert all(s["reason"].startswith("over budget") for s in tr["skipped"])
    items = " ".join(s["item"] for s in tr["skipped"])
    for needle in ("llama-3.2-1b L16", "llama-3.2-3b L28", "llama-3.1-8b L32", "llama-3.1-8b L16",
                   "llama-style-0.1b L12", "recompute=every-2", "adamw-foreach", "lora"):
        assert needle in items, needle
    inf = data["sections"]["inference"]
    assert inf["rows"] == [] and all(s["reason"].startswith("over budget") for s in inf["skipped"])


# --------------------------------------------------------------------------- merge (several runs of one machine)


def _training_row(model_id: str, micro_batch: int, step_s: float) -> dict:
    params = 1_235_814_400
    row = {"item": f"{model_id} L16 mb{micro_batch} s2048 bf16-mixed adamw-fused recompute=none", "model_id": model_id,
           "model_name": "Llama 3.2 1B", "layers": 16, "layers_full": 16, "layers_note": None, "hidden": 2048,
           "heads": 32, "kv_heads": 8, "head_dim": 64, "ffn": 8192, "vocab": 128256, "tie_embeddings": True,
           "micro_batch": micro_batch, "seq_len": 2048, "recompute": "none", "precision": "bf16-mixed",
           "optimizer": "adamw-fused", "peft": None, "lora_rank": None, "measured_steps": 3,
           "params_total": params, "params_base": params, "param_bytes": 4 * params, "grad_bytes": 4 * params,
           "optimizer_state_bytes": 8 * params, "step_times_s": [step_s] * 3, "step_time_s_median": step_s,
           "tokens_per_step": micro_batch * 2048, "tokens_per_s": micro_batch * 2048 / step_s,
           "max_memory_allocated_bytes": 40 * 2**30, "max_memory_reserved_bytes": 44 * 2**30}
    row["model_state_bytes"] = row["param_bytes"] + row["grad_bytes"] + row["optimizer_state_bytes"]
    return row


def _write_run(folder: Path, res: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(res))
    return folder / "results.json"


def test_merge_two_runs_rows_keep_their_run(tmp_path, capsys):
    """Two tiny runs of one machine merged: every row keeps the index of its run, the metadata of the run with GEMMs
    leads, and a configuration measured in both runs becomes two development rows with distinct ids."""
    from sizeup.validate.points import BadPoint, load_points

    a = _synthetic_gpu_results(mamf=0.78, t0=4e-6, hbm_fraction=0.91)
    a["sections"]["training"]["rows"] = [_training_row("llama-3.2-1b", 4, 0.18)]
    b = _synthetic_gpu_results(mamf=0.78, t0=4e-6, hbm_fraction=0.91)
    for s in ("gemm", "bandwidth", "attention"):
        b["sections"][s]["rows"] = []
    b["metadata"]["date_utc"] = "2026-12-04T13:00:00+00:00"
    b["sections"]["training"]["rows"] = [_training_row("llama-3.2-1b", 4, 0.19), _training_row("llama-3.2-1b", 2, 0.1)]
    pa, pb = _write_run(tmp_path / "run1", a), _write_run(tmp_path / "run2", b)
    out = tmp_path / "merged"
    assert report.main(["merge", str(pa), str(pb), "-o", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert [r["run"] for r in merged["sections"]["training"]["rows"]] == [0, 1, 1]
    assert len(merged["sections"]["gemm"]["rows"]) == len(a["sections"]["gemm"]["rows"])
    assert [Path(r["results"]).parent.name for r in merged["metadata"]["runs"]] == ["run1", "run2"]
    path = tmp_path / "rows.yaml"
    path.write_text(report.rows_yaml(merged))
    points = load_points(path)
    assert not [p for p in points if isinstance(p, BadPoint)]
    ids = [p.id for p in points]
    assert len(ids) == len(set(ids)) == 6
    assert sum(i.endswith("-run2-tput") for i in ids) == 1
    vias = {p.id: p.source[0].via for p in points}
    assert all("run1" in v for i, v in vias.items() if "mb4" in i and "-run2" not in i)
    assert all("run2" in v for i, v in vias.items() if "-run2" in i or "mb2" in i)
    steps = {p.id: p.measured[0].value for p in points if p.category == "B"}
    assert sorted(steps.values()) == [0.1, 0.18, 0.19]


def test_merge_bad_input_one_line_exit_2(tmp_path, capsys):
    a = _synthetic_gpu_results(mamf=0.78, t0=4e-6, hbm_fraction=0.91)
    pa = _write_run(tmp_path / "a", a)
    assert report.main(["merge", str(pa), str(tmp_path / "missing"), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    b = _synthetic_gpu_results(mamf=0.78, t0=4e-6, hbm_fraction=0.91)
    b["metadata"]["device_name"] = "NVIDIA H100 80GB HBM3"
    pb = _write_run(tmp_path / "b", b)
    assert report.main(["merge", str(pa), str(pb), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different devices" in err
    assert report.main(["merge", str(pa)]) == 2  # -o is required
    assert capsys.readouterr().err.count("\n") == 1


def test_compare_after_column_uses_the_catalog_file(tmp_path):
    """The 'after' prediction runs in the given catalog (a user catalog file halving the H200's MAMF must slow the
    GEMM-bound step down), not in the packaged one the job parser would load by default."""
    res = _synthetic_gpu_results(mamf=0.78, t0=4e-6, hbm_fraction=0.91)
    res["metadata"].update({"transformers_version": "5.17.0", "peft_version": "0.21.0", "git_dirty": False})
    res["sections"]["training"]["rows"] = [_training_row("llama-3.2-1b", 4, 0.18)]
    rows_path = tmp_path / "rows.yaml"
    rows_path.write_text(report.rows_yaml(res))
    cat = tmp_path / "cat.yaml"
    cat.write_text("gpus:\n  h200:\n    efficiency:\n      matmul_mamf: {value: 0.40, source: assumed, note: test}\n")
    rows = {r["quantity"]: r for r in report.compare(rows_path, str(cat))}
    st = rows["step_time"]
    assert st["predicted_after"] > 1.3 * st["predicted"]
    assert rows["peak_memory_allocated"]["predicted_after"] == rows["peak_memory_allocated"]["predicted"]
