"""Charts (`--plot`, `sizeup plot`): each file is a valid SVG/PNG, and the numbers drawn on it (read back from the
SVG's text and from the figure's artists) are the command's JSON numbers."""

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sizeup.cli import main
from sizeup.report import charts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GIB = 2.0 ** 30
SEED004 = ["llama-2-7b", "--peft", "lora", "--precision", "fp16-mixed", "--tokens", "15M", "--seq", "512",
           "--global-batch", "16", "--gpus", "1"]


def run(capsys, tmp_path, command, *args, ext="svg"):
    """Run `sizeup COMMAND ARGS --json --plot FILE`; returns (JSON, chart path)."""
    path = tmp_path / f"{command}.{ext}"
    code = main([command, *args, "--json", "--plot", str(path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out), path


def svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()  # a well-formed XML document
    assert root.tag.endswith("svg")
    return [" ".join("".join(el.itertext()).split()) for el in root.iter() if el.tag.endswith("text")]


def has_text(texts: list[str], needle: str) -> bool:
    return any(needle in t for t in texts)


def test_memory_bars_are_the_json(capsys, tmp_path):
    data, path = run(capsys, tmp_path, "memory", "llama-2-7b", "--gpu", "a10", "--peft", "lora")
    texts = svg_texts(path)
    # the as-given bar's stack adds up to the JSON's peak reserved bytes; each fix's bar to its own
    assert has_text(texts, f"{data['peak_reserved_bytes'] / GIB:.2f} GiB")
    assert data["suggestions"], "this job does not fit on an A10, so fixes are suggested"
    for s in data["suggestions"]:
        assert has_text(texts, f"{s['peak_reserved_bytes'] / GIB:.2f} GiB")
    assert has_text(texts, f"GPU memory {data['gpu_memory_bytes'] / GIB:.2f} GiB")
    chart = charts.build(data)
    assert chart.drawn["totals_gib"][0] == pytest.approx(data["peak_reserved_bytes"] / GIB, rel=1e-9)
    assert len(chart.drawn["totals_gib"]) == 1 + len(data["suggestions"])
    assert "does not fit" in chart.title and "a10" in chart.title


def test_train_roofline_and_breakdown(capsys, tmp_path):
    data, path = run(capsys, tmp_path, "train", *SEED004, "--gpu", "a10", "--platform", "lambda")
    texts = svg_texts(path)
    for part, seconds in data["breakdown_s"].items():
        if seconds:
            assert has_text(texts, part) and has_text(texts, f"{charts._fmt(seconds)} s")
    assert has_text(texts, f"{data['peak_flops_per_s'] / 1e12:.0f} TFLOP/s")
    chart = charts.build(data)
    ax = chart.fig.axes[0]
    ops = {p["op"]: p for p in chart.drawn["ops"]}
    assert set(ops) == {"GEMM (layers)", "attention", "logits + loss"}
    # the roofline bound: no op class attains more than the GPU's peak or than its intensity x HBM bandwidth
    bw = chart.drawn["hbm_bytes_per_s"]
    for p in ops.values():
        assert 0 < p["flops_per_s"] <= min(data["peak_flops_per_s"], p["intensity_flop_per_byte"] * bw) * 1.0001
    # hand derivation for Llama-2-7B (h=4096, ffn=11008) at M = 512 tokens, 2-byte operands:
    # intensity = sum(2 M k n) / sum(2 (M k + k n + M n)) over the fused kernels a layer runs (Megatron-LM's
    # ColumnParallelLinear fuses q,k,v into one 4096 x 12288 GEMM and gate,up into one 4096 x 22016 GEMM),
    # then o (4096 x 4096) and down (11008 x 4096)
    M, h, f = 512.0, 4096.0, 11008.0
    mats = [(h, 3 * h), (h, h), (h, 2 * f), (f, h)]
    hand = sum(2 * M * k * n for k, n in mats) / sum(2 * (M * k + k * n + M * n) for k, n in mats)
    assert ops["GEMM (layers)"]["intensity_flop_per_byte"] == pytest.approx(hand, rel=1e-6)
    # the points handed to matplotlib are those numbers (TFLOP/s on the y axis)
    offsets = [tuple(c.get_offsets()[0]) for c in ax.collections]
    for p in ops.values():
        assert (pytest.approx(p["intensity_flop_per_byte"]), pytest.approx(p["flops_per_s"] / 1e12)) in offsets


def test_compare_scatter_and_pareto_front(capsys, tmp_path):
    data, path = run(capsys, tmp_path, "compare", str(EXAMPLES / "seed004.yaml"), ext="png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(str(path)).shape[0] > 300
    chart = charts.build(data)
    drawn = {(round(p["hours"], 9), round(p["cost_usd"], 9)) for p in chart.drawn["points"]}
    rows = {(round(r["wall_clock_s"] / 3600, 9), round(r["total_cost_usd"], 9)) for r in data["rows"] if r["feasible"]}
    assert drawn == rows
    # the front drawn = the rows no other row beats on both cost and time (checked here by brute force)
    pts = [(r["wall_clock_s"], r["total_cost_usd"], f"{r['platform']} {r['gpus']}x {r['gpu']}") for r in data["rows"]]
    front = {c for t, u, c in pts if not any((t2 <= t and u2 <= u) and (t2 < t or u2 < u) for t2, u2, _ in pts)}
    assert set(chart.drawn["front"]) == front
    assert {f"{r['platform']} {r['gpus']}x {r['gpu']}" for r in data["pareto"]} <= front


def test_search_pareto(capsys, tmp_path):
    data, path = run(capsys, tmp_path, "search", "llama-2-7b", "--tokens", "2B", "--gpu", "a100-80gb-sxm,h100-sxm",
                     "--max-gpus", "16", "--objective", "pareto", "--platform", "lambda,aws")
    texts = svg_texts(path)
    chart = charts.build(data)
    assert len(chart.drawn["points"]) == len(data["plans"])
    for p in data["plans"]:
        assert any(abs(d["cost_usd"] - p["results"]["cost_usd"]) < 1e-9 for d in chart.drawn["points"])
    # every plan of a Pareto search is on the front, and each is labelled with its cost
    assert len(chart.drawn["front"]) == len(data["plans"])
    for p in data["plans"]:
        assert has_text(texts, f"${charts._fmt(p['results']['cost_usd'])}")


def test_scale_lines(capsys, tmp_path):
    data, path = run(capsys, tmp_path, "scale", "--sizes", "10M,100M", "--gpus", "rtx-3090,a100-80gb")
    texts = svg_texts(path)
    chart = charts.build(data)
    ax = chart.fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for option in data["options"]:
        xs = [r["params"] for r in data["rows"]]
        ys = [r["hardware"][option]["gpu_hours"] for r in data["rows"]]
        assert list(lines[option].get_xdata()) == pytest.approx(xs)
        assert list(lines[option].get_ydata()) == pytest.approx(ys)
        for y in ys:
            assert has_text(texts, charts._fmt(y))
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_infer_curve_passes_through_the_answer(capsys, tmp_path):
    data, path = run(capsys, tmp_path, "infer", "llama-3-8b", "--gpu", "h100-sxm", "--batch", "32")
    texts = svg_texts(path)
    chart = charts.build(data)
    at = [p for p in chart.drawn["sweep"] if p["batch"] == 32]
    assert at and at[0]["tpot_s"] == pytest.approx(data["tpot_s"], rel=1e-9)
    assert at[0]["output_tokens_per_s"] == pytest.approx(data["output_tokens_per_s"], rel=1e-9)
    assert has_text(texts, f"chosen: batch 32")
    tps = [p["output_tokens_per_s"] for p in chart.drawn["sweep"]]
    assert tps == sorted(tps)  # throughput grows with the batch
    # the star's error bars are the JSON's P10-P90
    iv = chart.drawn["chosen_p10_p90"]
    for key in ("tpot_s", "ttft_s", "output_tokens_per_s"):
        assert iv[key] == pytest.approx((data["intervals"][key]["p10"], data["intervals"][key]["p90"]), rel=1e-12)
    segs = [c for c in chart.fig.axes[0].collections if c.__class__.__name__ == "LineCollection"]
    spans = sorted(round(float(abs(seg[1][1] - seg[0][1])), 6) for c in segs for seg in c.get_segments()
                   if abs(seg[1][0] - seg[0][0]) < 1e-9)  # vertical bars, in ms
    for key in ("tpot_s", "ttft_s"):
        assert round((iv[key][1] - iv[key][0]) * 1e3, 6) in spans


def test_serve_plan_slo_line(capsys, tmp_path):
    data, path = run(capsys, tmp_path, "serve-plan", "llama-3-8b", "--rps", "5", "--ttft-p95", "2s")
    texts = svg_texts(path)
    assert has_text(texts, "TTFT p95 SLO 2,000 ms")
    chart = charts.build(data)
    ys = [ln.get_ydata()[0] for ln in chart.fig.axes[0].get_lines()]
    assert 2000.0 in ys
    best = data["best"]
    assert has_text(texts, f"chosen: {best['replicas']} x {best['gpu_id']} tp{best['tp']}")
    for o in chart.drawn["options"]:
        src = next(x for x in data["options"] if x["gpu_id"] == o["gpu"] and x["tp"] == o["tp"])
        assert o["ttft_p95_ms"] == pytest.approx(src["ttft_p95_s"] * 1e3)


def test_validate_points_and_bands(capsys, tmp_path):
    data, path = run(capsys, tmp_path, "validate", "--source", "llm-foundry")
    texts = svg_texts(path)
    assert has_text(texts, "±10%") and has_text(texts, "±25%")
    chart = charts.build(data)
    ax = chart.fig.axes[0]
    pts = [p for p in data["points"] if (p["measured"] or 0) > 0 and (p["predicted"] or 0) > 0]
    from matplotlib.collections import PathCollection

    offsets = sorted(tuple(map(float, xy)) for c in ax.collections if isinstance(c, PathCollection)
                     for xy in c.get_offsets())
    assert offsets == sorted((float(p["measured"]), float(p["predicted"])) for p in pts)


def test_plot_command_matches_plot_option(capsys, tmp_path):
    data, path = run(capsys, tmp_path, "train", *SEED004, "--gpu", "a10", "--platform", "lambda")
    saved = tmp_path / "train.json"
    saved.write_text(json.dumps(data))
    again = tmp_path / "again.svg"
    assert main(["plot", str(saved), "--out", str(again)]) == 0
    capsys.readouterr()
    assert again.read_text() == path.read_text()


@pytest.mark.parametrize("args, message", [
    (["plot", "nope.json", "--out", "x.svg"], "cannot read"),
    (["plot", "RESULT", "--out", "x.pdf"], ".svg or .png"),
    (["plot", "RESULT", "--out", "x.svg", "--kind", "bogus"], "--kind"),
    (["plot", "BADJSON", "--out", "x.svg"], "is not JSON"),
    (["plot", "OTHERJSON", "--out", "x.svg"], "cannot tell which command"),
    (["memory", "llama-2-7b", "--gpu", "a10", "--plot", "chart.jpg"], ".svg or .png"),
    (["memory", "llama-2-7b", "--gpu", "a10", "--plot", "no/such/dir/c.svg"], "does not exist"),
])
def test_bad_plot_input_is_one_line_exit_2(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RESULT").write_text("{}")
    (tmp_path / "BADJSON").write_text("{nope")
    (tmp_path / "OTHERJSON").write_text('{"a": 1}')
    code = main(args)
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert len(out.err.strip().splitlines()) == 1 and message in out.err
    assert not list(tmp_path.glob("*.svg")) and not list(tmp_path.glob("*.jpg"))


def test_pareto_front_property():
    from hypothesis import given, strategies as st

    @given(st.lists(st.tuples(st.floats(0.01, 1e4), st.floats(0.01, 1e4)), min_size=1, max_size=40))
    def check(points):
        front = charts.pareto_front(points)
        for i in front:  # no point beats a front point on both axes
            assert not any(p[0] <= points[i][0] and p[1] <= points[i][1] and p != points[i] for p in points)
        for j in set(range(len(points))) - set(front):  # every other point is beaten (or ties a front point)
            assert any(points[i][0] <= points[j][0] and points[i][1] <= points[j][1] for i in front)

    check()


def test_cli_start_does_not_import_matplotlib():
    import subprocess
    import sys

    code = ("import sys; from sizeup.cli import main; main(['memory', 'llama-2-7b', '--gpu', 'a10', '--json']); "
            "print(); print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_intervals_are_drawn_where_the_json_has_them(capsys, tmp_path):
    data, _ = run(capsys, tmp_path, "train", *SEED004, "--gpu", "a10", "--platform", "lambda")
    iv = data["intervals"]["step_time_s"]  # train's P10-P90 (sizeup.calib)
    assert charts._interval(data, "step_time_s") == (iv["p10"], iv["p90"])
    del data["intervals"]
    assert charts._interval(data, "step_time_s") is None
    data["step_time_s_p10"], data["step_time_s_p90"] = 0.9 * data["step_time_s"], 1.2 * data["step_time_s"]
    path = tmp_path / "iv.svg"
    chart = charts.plot_for(data, None, path)
    assert chart.drawn["step_time_interval_s"] == (data["step_time_s_p10"], data["step_time_s_p90"])
    lo, hi = charts._fmt(data["step_time_s_p10"]), charts._fmt(data["step_time_s_p90"])
    assert has_text(svg_texts(path), f"step time p10-p90: {lo}-{hi} s")
