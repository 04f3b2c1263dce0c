"""Calibration kept apart from physics (catalog/data/calibration.yaml), the equal-weight refit, leave-one-source-out
cross-validation and the prediction intervals (sizeup.calib, sizeup.calib.fit)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sizeup import calib
from sizeup.calib import fit as calfit
from sizeup.errors import SizeupError


@pytest.fixture(scope="module")
def dev():
    return calfit.build()


@pytest.fixture(scope="module")
def payload(dev):
    return calfit.refit(dev=dev)


def _timing_knobs(name: str):
    from sizeup.scenario import load_timing_knobs

    with calib.using(name):
        return load_timing_knobs()


# --------------------------------------------------------------------------- physics vs fitted values


def test_calibration_off_gives_the_cited_physical_values():
    """With calibration off every fitted knob takes the value its timing.yaml source derives (not a fit):
    MAMF ceiling 1.0, kernel-benchmark attention, H100 MAMF fp8/bf16 = 1402.6/1979 / (794.5/989), 20 launches
    x 5 us, the counted kernel list."""
    k = _timing_knobs("off")
    assert k.matmul_training_fraction == 1.0
    assert k.attention_end_to_end_scale == 1.0
    assert k.fp8_matmul_relative_efficiency == pytest.approx((1402.6 / 1979) / (794.5 / 989), abs=1e-3)
    assert k.host_overhead_s_per_layer_microbatch == pytest.approx(20 * 5e-6)
    assert k.elementwise_passes_hidden_fwd["eager"] == k.elementwise_passes_hidden_fwd["fused"] == 10
    # FlashAttention-2 on H100: ~350 fwd / ~280 bwd TFLOP/s of 989 (FlashAttention-3 paper, FA2 baseline)
    assert k.attention_efficiency["h100"] == pytest.approx([350 / 989, 280 / 989], abs=0.005)


def test_packaged_calibration_holds_only_fitted_values_with_provenance():
    cal = calib.load("default")
    assert cal is not None and set(cal.knobs) == set(calib.TIMING_KNOBS)
    for key in ("date", "on", "objective", "method", "throughput_rows_per_family"):
        assert cal.fitted.get(key), key
    assert "weighted equally" in cal.fitted["objective"]
    k = _timing_knobs("default")
    assert k.matmul_training_fraction == pytest.approx(cal.knobs["matmul_training_fraction"])
    assert k.elementwise_passes_hidden_fwd["eager"] == pytest.approx(cal.knobs["elementwise_passes_hidden_fwd.eager"])
    assert "fitted" in k.sources["matmul_training_fraction"]


def test_env_switches_calibration_off(monkeypatch):
    monkeypatch.setenv("SIZEUP_CALIBRATION", "off")
    from sizeup.scenario import load_timing_knobs

    assert load_timing_knobs().matmul_training_fraction == 1.0
    monkeypatch.setenv("SIZEUP_CALIBRATION", "default")
    assert load_timing_knobs().matmul_training_fraction == calib.load("default").knobs["matmul_training_fraction"]


def test_stored_calibration_is_the_current_refit(payload):
    """calibration.yaml must be what `sizeup calibrate --refit --write` gives on the current dev set and physics
    (rerun it after changing either)."""
    cal = calib.load("default")
    for name, entry in payload["knobs"].items():
        stored = cal.serving[name] if name in calib.SERVING_KNOBS else cal.knobs[name]
        assert stored == pytest.approx(entry["value"], rel=1e-3, abs=1e-12), name
    assert set(payload["knobs"]) == set(calib.TIMING_KNOBS) | set(calib.SERVING_KNOBS)
    assert payload["fitted"]["serving"]["fitted_knobs"] == cal.fitted["serving"]["fitted_knobs"]


# --------------------------------------------------------------------------- the fit


def _toy_dev(families: list[str], log_err: list[float]) -> calfit.DevSet:
    n = len(families)
    return calfit.DevSet(rows=[None] * n, family=families, klass=["throughput"] * n, profile=[""] * n, gpus=[None] * n,
                         t_rows=np.arange(n), t_point=np.zeros(n, int), t_sign=np.ones(n), t_pred0=np.ones(n),
                         t_meas=np.ones(n), t_lo=np.ones(n), t_hi=np.ones(n), points=[], physical=np.zeros(5),
                         base_knobs=None)


def test_objective_weights_families_equally_not_rows():
    """Hand derivation: family A has 100 rows at |ln e| = 0.1, family B 4 rows at 0.5. Equal weights: (0.1+0.5)/2 =
    0.3; row weights would give (100*0.1 + 4*0.5)/104 = 0.115."""
    fams = ["A"] * 100 + ["B"] * 4
    err = np.array([0.1] * 100 + [0.5] * 4)[:, None]
    dev = _toy_dev(fams, err)
    assert calfit.objective(dev, err, ["A", "B"])[0] == pytest.approx(0.3)
    # a family with fewer than MIN_FAMILY_ROWS rows is pooled with the other small ones: C (1 row, 0.9) and
    # D (2 rows, 0.3) form one group with median 0.3 -> (0.1 + 0.5 + 0.3) / 3
    fams2 = fams + ["C", "D", "D"]
    err2 = np.vstack([err, [[0.9], [0.3], [0.3]]])
    dev2 = _toy_dev(fams2, err2)
    assert calfit.objective(dev2, err2, ["A", "B", "C", "D"])[0] == pytest.approx(0.3)


def test_vectorised_predictions_match_the_step_model(dev):
    """The refit's cached, vectorised step times equal the pipeline's step model (what `sizeup train` and the
    validator run) with the same knobs."""
    from sizeup.pipeline import step_for

    K = np.array([0.7, 0.6, 0.8, 2e-4, 25.0])
    steps = calfit.step_times(dev, K)[:, 0]
    checked = 0
    for i in dev.t_rows[:400:20]:
        ctx = dev.rows[i].context
        j = dev.t_point[list(dev.t_rows).index(i)]
        job = ctx.job()[0]
        jknobs = dev.points[j][6]
        scalar = jknobs.with_(matmul_training_fraction=0.7, attention_end_to_end_scale=0.6,
                              fp8_matmul_relative_efficiency=0.8, host_overhead_s_per_layer_microbatch=2e-4,
                              elementwise_passes_hidden_fwd={**jknobs.elementwise_passes_hidden_fwd, "eager": 25.0})
        assert steps[j] == pytest.approx(step_for(job, scalar).step_time_s, rel=1e-9)
        checked += 1
    assert checked >= 10


def test_loso_prediction_of_a_family_does_not_see_that_family(dev):
    """Doubling every measurement of the held-out family leaves its LOSO predictions unchanged (its fold never
    reads them), although that fold did learn from the other families (its knobs left the physical values)."""
    res = calfit.fit(dev)
    fam = dev.t_family
    held = "torchtune"
    mask = fam == held
    assert mask.sum() >= 3
    dev2 = calfit.DevSet(**{**dev.__dict__, "t_meas": np.where(mask, dev.t_meas * 2, dev.t_meas),
                            "t_lo": np.where(mask, dev.t_lo * 2, dev.t_lo), "t_hi": np.where(mask, dev.t_hi * 2, dev.t_hi)})
    res2 = calfit.fit(dev2)
    np.testing.assert_allclose(res2.pred_loso[mask], res.pred_loso[mask], rtol=1e-12)
    np.testing.assert_allclose(res2.fold_knobs[held], res.fold_knobs[held])
    assert not np.allclose(res.fold_knobs[held], dev.physical)


def test_fitted_knobs_stay_inside_physical_bounds(payload):
    from sizeup.calib import serving

    for name, entry in payload["knobs"].items():
        lo, hi = calfit.KNOB_BOUNDS[name] if name in calfit.KNOB_BOUNDS else serving.BOUNDS[name]
        assert tuple(entry["bounds"]) == (lo, hi), name
        assert lo <= entry["value"] <= hi, name
        assert lo <= entry["physical"] <= hi, name


def test_calibration_improves_in_sample_and_loso_is_reported_per_family(payload):
    acc = payload["accuracy"]
    off = acc["calibration_off"]["overall"]["training throughput/MFU"]["median_abs_error_pct"]
    on = acc["calibration_on_in_sample"]["overall"]["training throughput/MFU"]["median_abs_error_pct"]
    loso = acc["loso"]["overall"]["training throughput/MFU"]["median_abs_error_pct"]
    assert on < off and on <= loso
    fams = {f for f, g in acc["loso"]["families"].items() if g.get("training throughput/MFU", {}).get("n")}
    assert len(fams) >= 3
    # memory uses no fitted knob: its LOSO error is its in-sample error
    assert acc["loso"]["overall"]["memory"] == acc["calibration_off"]["overall"]["memory"]


def test_loso_reports_each_serving_figure_as_a_subset_of_the_inference_rows(dev, payload):
    """Issue 13's targets are per serving figure: TTFT, ITL/TPOT and output throughput of the rows whose prediction
    ran the scheduler simulation. Each group is overall = the sum of its families, TTFT and ITL/TPOT rows are time
    rows, throughput rows are rate rows, and together they are at most the inference rows."""
    from sizeup.validate.inference_points import serving_class

    loso = payload["accuracy"]["loso"]
    klass_of = {"serving TTFT": "inference_time", "serving ITL/TPOT": "inference_time",
                "serving output throughput": "inference_rate"}
    total = 0
    for group, klass in klass_of.items():
        overall = loso["overall"][group]
        assert overall["total"] > 20 and overall["n"] <= overall["total"], group
        assert overall["median_abs_error_pct"] <= overall["p90_abs_error_pct"], group
        assert sum(f.get(group, {}).get("total", 0) for f in loso["families"].values()) == overall["total"], group
        cls = calfit.SERVING_GROUPS[group]
        assert {dev.klass[i] for i, r in enumerate(dev.rows) if serving_class(r) == cls} == {klass}, group
        total += overall["total"]
    assert total <= loso["overall"]["inference"]["total"]
    # what counts as a serving row: a category-D row predicted through the simulator, by its quantity
    from types import SimpleNamespace

    for definition, quantity, want in (("serving_sim: 500 requests", "median_ttft", "ttft"),
                                       ("serving_sim: 500 requests", "mean_tpot", "itl_tpot"),
                                       ("serving_sim: 500 requests", "output_throughput", "output_throughput"),
                                       ("closed form at batch 1", "median_ttft", None),
                                       ("serving_sim: 500 requests", "weights_memory", None)):
        assert serving_class(SimpleNamespace(definition=definition, quantity=quantity)) == want, (definition, quantity)


# --------------------------------------------------------------------------- intervals


def test_nominal_80_percent_interval_covers_70_to_90_percent_under_loso(payload):
    cov = payload["intervals"]["coverage_loso"]
    assert 0.70 <= cov["all"]["covered"] <= 0.90, cov
    assert 0.70 <= cov["throughput"]["covered"] <= 0.90, cov


def test_stored_intervals_cover_70_to_90_percent_of_loso_rows(dev, payload):
    """The intervals in calibration.yaml, applied through interval() to every LOSO residual."""
    cal = calib.load("default")
    res = calfit.fit(dev)
    factors = calfit.row_factors(dev, calfit.row_errors(res, "loso"))
    hits = []
    for i, f in enumerate(factors):
        if f is None or dev.klass[i] != "throughput":
            continue
        f10, _, f90, _ = calib.interval_factors("throughput", {"profile": dev.profile[i], "gpus": dev.gpus[i]}, cal)
        hits.append(f10 <= f <= f90)
    assert len(hits) > 500
    assert 0.70 <= np.mean(hits) <= 0.90


def test_interval_of_a_time_is_the_inverse_of_the_throughput_interval():
    cal = calib.load("default")
    regime = {"profile": "eager", "gpus": 8}
    t10, t50, t90 = calib.interval("throughput", regime, 100.0, cal)
    s10, s50, s90 = calib.interval("time", regime, 1.0, cal)
    assert t10 <= t50 <= t90 and s10 <= s50 <= s90
    assert s10 == pytest.approx(100.0 / t90) and s90 == pytest.approx(100.0 / t10)
    # an unknown profile falls back to a pooled interval, never fails
    assert calib.interval("memory", {"profile": "no-such", "gpus": None}, 1e9, cal)[1] > 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_interval_rejects_bad_values(bad):
    with pytest.raises(SizeupError):
        calib.interval("throughput", {}, bad)


def test_interval_rejects_unknown_quantity():
    with pytest.raises(SizeupError):
        calib.interval("colour", {}, 1.0)


# --------------------------------------------------------------------------- CLI


def run_cli(capsys, *args):
    from sizeup.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validate_loso_cli(capsys, payload, monkeypatch):
    """`validate --loso` renders a refit (the module's payload: the refit itself is what the fixture ran, ~1 min)."""
    monkeypatch.setattr(calfit, "refit", lambda *a, **k: payload)
    code, out, _ = run_cli(capsys, "validate", "--loso", "--json")
    assert code == 0
    data = json.loads(out)["loso"]
    assert {"calibration_off", "calibration_on_in_sample", "loso"} <= set(data["accuracy"])
    assert data["intervals"]["coverage_loso"]["all"]["n"] > 0


def test_validate_no_calibration_is_worse_on_throughput(capsys):
    code, out, _ = run_cli(capsys, "validate", "--quantity", "mfu", "--no-calibration", "--json")
    assert code == 0
    off = json.loads(out)["summary"]["overall"]["median_abs_error_pct"]
    calib.use(None)
    code, out, _ = run_cli(capsys, "validate", "--quantity", "mfu", "--json")
    on = json.loads(out)["summary"]["overall"]["median_abs_error_pct"]
    assert on < off


def test_loso_rejects_filters(capsys):
    code, _, err = run_cli(capsys, "validate", "--loso", "--source", "nemo")
    assert code == 2 and "--loso" in err


def test_train_json_carries_intervals(capsys):
    code, out, _ = run_cli(capsys, "train", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "1B",
                           "--global-batch", "64", "--seq", "4096", "--json")
    assert code == 0
    d = json.loads(out)
    iv = d["intervals"]
    for key in ("step_time_s", "tokens_per_s", "total_time_s", "gpu_hours", "peak_reserved_bytes"):
        assert iv[key]["p10"] <= iv[key]["p50"] <= iv[key]["p90"], key
    assert iv["step_time_s"]["p10"] <= d["step_time_s"] <= iv["step_time_s"]["p90"]
    assert d["calibration"] == "default"


def test_train_table_shows_the_range(capsys):
    code, out, _ = run_cli(capsys, "train", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "1B",
                           "--global-batch", "64", "--seq", "4096")
    assert code == 0
    line = next(x for x in out.splitlines() if "wall-clock" in x)
    assert "–" in line and "(" in line


def test_unknown_calibration_name_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    code, out, err = run_cli(capsys, "train", "llama-2-7b", "--gpu", "h100-sxm", "--calibration", "nope")
    assert code == 2 and "not found" in err and "Traceback" not in err
    calib.use(None)


def test_held_out_family_is_never_fitted(dev):
    """families.yaml `fit: false` (sizeup-gpu-truth, issue 16): doubling every measurement of that family changes
    neither the fitted knobs nor any fold's knobs; its rows are still predicted and reported."""
    held = calfit.held_out_families()
    assert "sizeup-gpu-truth" in held
    mask = np.isin(dev.t_family, list(held))
    assert mask.sum() >= 28
    res = calfit.fit(dev)
    dev2 = calfit.DevSet(**{**dev.__dict__, "t_meas": np.where(mask, dev.t_meas * 2, dev.t_meas),
                            "t_lo": np.where(mask, dev.t_lo * 2, dev.t_lo), "t_hi": np.where(mask, dev.t_hi * 2, dev.t_hi)})
    res2 = calfit.fit(dev2)
    np.testing.assert_allclose(res2.knobs_all, res.knobs_all)
    for f in res.fold_knobs:
        np.testing.assert_allclose(res2.fold_knobs[f], res.fold_knobs[f])
    # its leave-one-source-out prediction is the full fit's (the fold trains on the same families)
    np.testing.assert_allclose(res.pred_loso[mask], res.pred_fitted[mask])


def test_library_evaluation_carries_the_intervals_the_cli_shows(capsys):
    """The pipeline computes the P10/P50/P90 (sizeup.pipeline.intervals_for); `sizeup train --json` only renders
    them, so a library caller gets the same figures; a job that does not fit keeps only its memory interval."""
    from sizeup.job import build_job
    from sizeup.pipeline import evaluate

    argv = ["--gpu", "h100-sxm", "--gpus", "8", "--tokens", "1B", "--global-batch", "64", "--seq", "4096"]
    job = build_job({"model": "llama-2-7b", "gpu": "h100-sxm", "gpus": 8, "tokens": "1B", "global_batch": 64,
                     "seq": 4096})
    ev = evaluate(job)
    code, out, _ = run_cli(capsys, "train", "llama-2-7b", *argv, "--json")
    assert code == 0
    cli = json.loads(out)["intervals"]
    assert set(ev.intervals) == set(cli)
    for key, d in ev.intervals.items():
        assert d["p10"] == pytest.approx(cli[key]["p10"]) and d["p90"] == pytest.approx(cli[key]["p90"]), key
    small = evaluate(build_job({"model": "llama-2-70b", "gpu": "l4", "gpus": 1, "tokens": "1B", "seq": 2048}))
    assert small.fits is False and set(small.intervals) == {"peak_reserved_bytes"}
