"""Charts drawn from a command's JSON (`report.data`): memory, train, compare, search, scale, infer,
serve-plan and validate. SVG or PNG, chosen by the file's extension.

Every chart is drawn from the same dict that `--json` prints, so `sizeup plot saved.json` gives the same
picture as `--plot` on the command. matplotlib is imported here only (lazily, Agg backend, no pyplot state),
so the CLI starts without it. Each builder returns the numbers it handed to matplotlib (`Chart.drawn`), which
the tests compare with the JSON.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sizeup.errors import SizeupError

GIB = 1024.0 ** 3
KINDS = ("memory", "train", "compare", "search", "scale", "infer", "serve-plan", "validate")
FORMATS = (".svg", ".png")
# memory parts, in stacking order: the JSON's per_gpu keys start with these prefixes
MEMORY_GROUPS = ("weights", "gradients", "optimizer", "activations", "buffers", "overhead")
_MEMORY_PREFIX = {"model/": "weights", "gradients": "gradients", "optimizer/": "optimizer",
                  "activations/": "activations", "buffers/": "buffers"}
COLORS = {"weights": "#4c72b0", "gradients": "#dd8452", "optimizer": "#55a868", "activations": "#c44e52",
          "buffers": "#8172b3", "overhead": "#937860"}
PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
           "#ccb974", "#64b5cd")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


@dataclass
class Chart:
    """A finished figure and the numbers drawn on it, by series name."""

    kind: str
    title: str
    fig: Any
    drawn: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- entry points


def detect_kind(data: dict) -> str:
    """Which command printed this JSON (by its keys)."""
    if not isinstance(data, dict):
        raise SizeupError("the JSON is not an object printed by a sizeup command")
    if "breakdown_s" in data and "step_time_s" in data:
        return "train"
    if "per_gpu" in data and "peak_reserved_bytes" in data:
        return "memory"
    if "plans" in data and "evaluated" in data:
        return "search"
    if "rows" in data and "workload" in data:
        return "compare"
    if "rows" in data and "options" in data and "family" in data:
        return "scale"
    if "ttft_s" in data and "decode_step" in data:
        return "infer"
    if "options" in data and "targets" in data and "rps" in data:
        return "serve-plan"
    if "points" in data and "summary" in data:
        return "validate"
    raise SizeupError("cannot tell which command printed this JSON; charts exist for "
                      + ", ".join(KINDS) + " (--json output); pass --kind")


def build(data: dict, kind: str | None = None) -> Chart:
    kind = kind or detect_kind(data)
    if kind not in BUILDERS:
        raise SizeupError(f"no chart for {kind!r}; charts exist for {', '.join(KINDS)}")
    try:
        return BUILDERS[kind](data)
    except SizeupError:
        raise
    except (KeyError, TypeError, IndexError) as exc:
        raise SizeupError(f"the JSON does not look like '{kind} --json' output (missing {exc})") from None


def check_path(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise SizeupError(f"--plot {str(path)!r}: the file name must end in .svg or .png")
    if p.parent and not p.parent.exists():
        raise SizeupError(f"--plot {str(path)!r}: folder {str(p.parent)!r} does not exist")
    return p


def plot_for(data: dict, kind: str | None, path: str | Path) -> Chart:
    """Draw the chart for `data` (a command's JSON) into `path` (.svg or .png)."""
    p = check_path(path)
    return save(build(data, kind), p)


def save(chart: Chart, path: str | Path) -> Chart:
    p = check_path(path)
    try:
        fmt = p.suffix.lower()[1:]
        chart.fig.savefig(p, format=fmt, bbox_inches="tight", dpi=110,
                          metadata={"Date": None} if fmt == "svg" else None)
    except OSError as exc:
        raise SizeupError(f"--plot {str(path)!r}: cannot write the file ({exc.strerror or exc})") from None
    finally:
        _close(chart)
    return chart


def _close(chart: Chart) -> None:
    """Free the figure's memory (long-running servers draw many charts)."""
    chart.fig.clear()


def to_svg(data: dict, kind: str | None = None) -> str:
    """The chart as SVG text (for the web page)."""
    chart = build(data, kind)
    buf = io.StringIO()
    try:
        chart.fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        _close(chart)
    return buf.getvalue()


# --------------------------------------------------------------------------- helpers


def _figure(w: float = 8.0, h: float = 5.0, ncols: int = 1, widths: tuple | None = None):
    import matplotlib

    matplotlib.use("Agg", force=False)
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: readable and searchable in the SVG
    matplotlib.rcParams["svg.hashsalt"] = "sizeup"  # stable ids: the same JSON gives the same file
    matplotlib.rcParams["font.size"] = 9
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    if ncols == 1:
        return fig, fig.add_subplot(1, 1, 1)
    axes = fig.subplots(1, ncols, gridspec_kw={"width_ratios": widths} if widths else None)
    return fig, axes


def _plain_log_ticks(ax) -> None:
    """Log axes labelled with plain numbers (1,000 not 10^3) and no crowded minor labels."""
    from matplotlib.ticker import FuncFormatter

    def text(v: float) -> str:
        return f"{v:,.0f}" if v >= 1 else f"{v:g}"

    def minor(v: float, _pos) -> str:  # label 2x and 5x between the decades only
        lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
        return text(v) if lead in (2, 5) else ""

    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            axis.set_major_formatter(FuncFormatter(lambda v, _pos: text(v)))
            axis.set_minor_formatter(FuncFormatter(minor))


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _interval(d: dict, key: str) -> tuple[float, float] | None:
    """(p10, p90) for `key` where the JSON carries them (`key_p10`/`key_p90` or `intervals[key]`)."""
    lo, hi = _num(d.get(f"{key}_p10")), _num(d.get(f"{key}_p90"))
    iv = d.get("intervals", {}).get(key) if isinstance(d.get("intervals"), dict) else None
    if isinstance(iv, dict):
        lo, hi = _num(iv.get("p10")), _num(iv.get("p90"))
    return (lo, hi) if lo is not None and hi is not None else None


def _hours(seconds: Any) -> float | None:
    s = _num(seconds)
    return None if s is None else s / 3600.0


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.01:
        return f"{v:.2f}"
    return f"{v:.2g}"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower is better), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best_y = [], math.inf
    for i in order:
        if points[i][1] < best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def _setup_text(s: dict) -> str:
    parts = [f"{s.get('precision', '')}"]
    if s.get("peft") not in (None, "none"):
        parts.append(f"{s['peft']} r{s['lora_rank']}" if s.get("lora_rank") else str(s["peft"]))
    for k in ("tp", "pp", "cp", "ep"):
        if (s.get(k) or 1) > 1:
            parts.append(f"{k}{s[k]}")
    if s.get("sharding") not in (None, "none"):
        parts.append(str(s["sharding"]))
    if s.get("recompute") not in (None, "none"):
        parts.append(f"recompute={s['recompute']}")
    parts.append(f"seq {s.get('seq_len')} mb {s.get('micro_batch')}")
    return ", ".join(p for p in parts if p)


# --------------------------------------------------------------------------- memory


def memory_parts(per_gpu: dict, overhead: dict | float) -> dict[str, float]:
    """The JSON's per-GPU parts summed into the six stacked groups (bytes)."""
    out = {g: 0.0 for g in MEMORY_GROUPS}
    for key, value in per_gpu.items():
        v = _num(value) or 0.0
        for prefix, group in _MEMORY_PREFIX.items():
            if key.startswith(prefix):
                out[group] += v
                break
        else:
            out["buffers"] += v
    out["overhead"] = sum(_num(v) or 0.0 for v in overhead.values()) if isinstance(overhead, dict) else (_num(overhead) or 0.0)
    return out


def _memory_axes(ax, bars: list[tuple[str, dict[str, float]]], capacity: float | None, title: str, drawn: dict,
                 groups: tuple[str, ...] = MEMORY_GROUPS):
    x = list(range(len(bars)))
    bottoms = [0.0] * len(bars)
    for group in groups:
        heights = [parts.get(group, 0.0) / GIB for _, parts in bars]
        if not any(heights):
            continue
        ax.bar(x, heights, bottom=bottoms, color=COLORS.get(group, "#a0a0a0"), label=group, width=0.6)
        drawn.setdefault("parts_gib", {})[group] = heights
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    drawn["totals_gib"] = bottoms
    for xi, total in zip(x, bottoms):
        ax.text(xi, total, f"{total:.2f} GiB", ha="center", va="bottom", fontsize=8)
    if capacity:
        cap = capacity / GIB
        ax.axhline(cap, color="black", linestyle="--", linewidth=1)
        ax.text(len(bars) - 0.5, cap, f"GPU memory {cap:.2f} GiB", ha="right", va="bottom", fontsize=8)
        drawn["capacity_gib"] = cap
    ax.set_xticks(x)
    ax.set_xticklabels([name for name, _ in bars], fontsize=8)
    ax.set_ylabel("memory per GPU (GiB)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    top = max(bottoms + [capacity / GIB if capacity else 0.0])
    ax.set_ylim(0, top * 1.22 if top > 0 else 1)


def chart_memory(data: dict) -> Chart:
    s = data.get("setup", {})
    parts = memory_parts(data["per_gpu"], data.get("overhead_bytes", {}))
    gpu = data.get("gpu") or "GPU"
    fit = "fits" if data.get("fits") else "does not fit"
    bars = [(f"as given ({gpu})", parts)]
    for sug in data.get("suggestions") or []:
        alloc, reserved = _num(sug.get("peak_allocated_bytes")), _num(sug.get("peak_reserved_bytes"))
        if alloc is None or reserved is None:
            continue
        # a fix is summarised by its allocated bytes and the allocator/driver overhead above them
        label = str(sug.get("change", "fix"))
        if (sug.get("gpus") or 1) != (s.get("gpus") or 1) and "GPU" not in label:
            label += f" ({sug['gpus']} GPUs)"
        bars.append((_wrap(label, 22), {"allocated (fix)": alloc, "overhead": reserved - alloc}))
    title = f"Training memory per GPU: {data.get('model')} on {gpu} ({_setup_text(s)}): {fit}"
    fig, ax = _figure(max(7.0, 1.3 * len(bars) + 4), 5.2)
    drawn: dict = {}
    groups = MEMORY_GROUPS if len(bars) == 1 else MEMORY_GROUPS[:-1] + ("allocated (fix)", "overhead")
    _memory_axes(ax, bars, _num(data.get("gpu_memory_bytes")), _wrap(title, 120), drawn, groups)
    drawn["labels"] = [b[0] for b in bars]
    return Chart("memory", title, fig, drawn)


def _wrap(text: str, width: int = 90) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


# --------------------------------------------------------------------------- train


def train_op_classes(data: dict) -> list[dict]:
    """The step's op classes placed on the roofline: arithmetic intensity (FLOP/byte) and attained FLOP/s per GPU.

    FLOPs per class and GPU per step come from the JSON (`flops.forward_per_token` x tokens per GPU x passes);
    seconds from `breakdown_s`. Intensities are the timing model's own traffic per kernel (core/timing.py
    step_kernel: a GEMM of M rows moves b*(M*k + k*n) + b*M*n bytes) evaluated on the model's shapes.
    """
    from sizeup.catalog import resolve_model
    from sizeup.core.timing import model_inputs

    s = data["setup"]
    gpus = max(int(data.get("gpus") or 1), 1)
    tokens_gpu = float(s["tokens_per_step"]) / gpus
    b = 1.0 if str(data.get("compute_dtype", "")).startswith("fp8") else (4.0 if data.get("compute_dtype") in ("fp32", "tf32") else 2.0)
    tp, cp = int(s.get("tp") or 1), int(s.get("cp") or 1)
    M = float(s.get("micro_batch") or 1) * float(s["seq_len"]) / cp
    fwd = data["flops"]["forward_per_token"]
    br = data["breakdown_s"]
    peft = s.get("peft") not in (None, "none")
    rc = s.get("recompute", "none")
    out: list[dict] = []
    try:
        arch = resolve_model(str(data["model"]))
        mi = model_inputs(arch)
    except Exception:  # a model the catalog cannot rebuild (e.g. a deleted config.json): no intensities
        arch = mi = None
    if mi is not None:
        sh = mi.shapes
        f_tot = by_tot = 0.0
        for gm in sh.gemms:
            split = tp if gm.tp_split else 1
            rows = M * gm.share
            f_tot += gm.count * 2.0 * rows * gm.k * gm.n / split
            by_tot += gm.count * (b * (rows * gm.k + gm.k * gm.n / split) + b * rows * gm.n / split)
        passes = 2.0 if peft else 3.0  # forward + dgrad (+ wgrad unless the weights are frozen)
        passes += 1.0 if rc == "full" else 0.0
        t = _num(br.get("compute/gemm"))
        if t:
            out.append({"op": "GEMM (layers)", "intensity_flop_per_byte": f_tot / by_tot,
                        "flops_per_s": fwd["layers/gemm"] * tokens_gpu * passes / t, "seconds": t})
        t = _num(br.get("compute/attention"))
        if t and fwd.get("layers/attention"):
            # flash attention reads q, k, v and writes o once per layer (b bytes each, per token)
            per_layer_flops = fwd["layers/attention"] / arch.num_layers
            io_bytes = b * (2.0 * sh.qkv_width / tp + sh.attn_v_dim / tp)
            passes_a = 3.5 + (1.0 if rc in ("full", "selective") else 0.0)  # fwd + 2.5x bwd (FlashAttention-2)
            out.append({"op": "attention", "intensity_flop_per_byte": per_layer_flops / io_bytes,
                        "flops_per_s": fwd["layers/attention"] * tokens_gpu * passes_a / t, "seconds": t})
        t = _num(br.get("compute/logits_loss"))
        if t and fwd.get("logits"):
            h, V = float(arch.hidden_size), float(arch.vocab_size)
            inten = 2.0 * M * h * V / tp / (b * (M * h + h * V / tp) + b * M * V / tp)
            out.append({"op": "logits + loss", "intensity_flop_per_byte": inten,
                        "flops_per_s": fwd["logits"] * tokens_gpu * 3.0 / t, "seconds": t})
    return out


def chart_train(data: dict) -> Chart:
    from sizeup.catalog import load_catalog

    s = data["setup"]
    gpu_id = data.get("gpu")
    peak = float(data["peak_flops_per_s"])
    bw = None
    try:
        bw = float(load_catalog().gpu(str(gpu_id)).hbm_bytes_per_s)
    except Exception:
        bw = None
    title = (f"Training step: {data.get('model')} on {data.get('gpus')} x {gpu_id} ({_setup_text(s)}), "
             f"{_fmt(float(data['step_time_s']))} s/step, MFU {100 * float(data['mfu']):.1f}%")
    fig, (ax, bx) = _figure(13.0, 5.2, ncols=2, widths=(1.1, 1.0))
    drawn: dict = {"peak_flops_per_s": peak, "hbm_bytes_per_s": bw}
    # --- roofline (Williams, Waterman & Patterson 2009): attainable = min(peak, I x bandwidth)
    points = train_op_classes(data)
    xs = [p["intensity_flop_per_byte"] for p in points] or [1.0]
    lo, hi = min(min(xs) / 10, 0.1), max(max(xs) * 10, (peak / bw * 10) if bw else 1e4)
    import numpy as np

    grid = np.logspace(math.log10(lo), math.log10(hi), 200)
    if bw:
        roof = np.minimum(peak, grid * bw)
        ax.plot(grid, roof / 1e12, color="black", linewidth=1.5,
                label=f"roof: min({peak / 1e12:.0f} TFLOP/s, I x {bw / 1e12:.2f} TB/s)")
        ax.axvline(peak / bw, color="gray", linestyle=":", linewidth=1)
        ax.text(peak / bw, peak / 1e12 * 0.5, f" ridge {peak / bw:.0f} FLOP/B", fontsize=7, color="gray")
    else:
        ax.axhline(peak / 1e12, color="black", linewidth=1.5, label=f"peak {peak / 1e12:.0f} TFLOP/s")
    drawn["ops"] = points
    for i, p in enumerate(points):
        ax.scatter([p["intensity_flop_per_byte"]], [p["flops_per_s"] / 1e12], color=PALETTE[i % len(PALETTE)],
                   marker=MARKERS[i % len(MARKERS)], s=60, zorder=3,
                   label=f"{p['op']}: {p['intensity_flop_per_byte']:.0f} FLOP/B, {p['flops_per_s'] / 1e12:.1f} TFLOP/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of HBM traffic)")
    ax.set_ylabel("attained FLOP/s per GPU (TFLOP/s)")
    ax.set_title(f"Roofline of {gpu_id} ({data.get('compute_dtype')}), the step's op classes placed on it")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)
    # --- step-time breakdown: compute parts, exposed communication by kind, bubble, host, optimizer
    br = {k: float(v) for k, v in data["breakdown_s"].items() if _num(v)}
    names = list(br)
    vals = [br[k] for k in names]
    y = list(range(len(names)))[::-1]
    bx.barh(y, vals, color=[PALETTE[i % len(PALETTE)] for i in range(len(names))])
    for yi, v in zip(y, vals):
        bx.text(v, yi, f" {_fmt(v)} s", va="center", fontsize=8)
    bx.set_yticks(y)
    bx.set_yticklabels(names)
    step = float(data["step_time_s"])
    bx.set_xlabel("seconds per optimizer step (exposed)")
    bx.set_title(f"Step time {_fmt(step)} s by part (bound: {data.get('bound')})")
    bx.set_xlim(0, max(vals + [0.0]) * 1.3 or 1)
    drawn["breakdown_s"] = dict(zip(names, vals))
    step_iv = _interval(data, "step_time_s")
    if step_iv:
        bx.text(0.98, 0.02, f"step time p10-p90: {_fmt(step_iv[0])}-{_fmt(step_iv[1])} s", transform=bx.transAxes,
                ha="right", fontsize=8)
        drawn["step_time_interval_s"] = step_iv
    fig.suptitle(_wrap(title, 140), fontsize=10)
    return Chart("train", title, fig, drawn)


# --------------------------------------------------------------------------- compare / search


def _scatter_cost_time(ax, rows: list[dict], title: str, drawn: dict, deadline_h=None, budget=None):
    kinds = sorted({r["gpu"] for r in rows})
    colours_by = sorted({f"{r['platform']}/{r['pricing']}" for r in rows})
    pts = [(r["hours"], r["cost_usd"]) for r in rows]
    for r in rows:
        key = f"{r['platform']}/{r['pricing']}"
        ax.scatter([r["hours"]], [r["cost_usd"]], marker=MARKERS[kinds.index(r["gpu"]) % len(MARKERS)],
                   color=PALETTE[colours_by.index(key) % len(PALETTE)], s=45, alpha=0.85, zorder=3)
        if r.get("_interval_h"):  # p10-p90 of the wall-clock, where the JSON has it
            lo, hi = r["_interval_h"]
            ax.plot([lo, hi], [r["cost_usd"]] * 2, color="gray", linewidth=1)
            drawn.setdefault("intervals_h", []).append((r["label"], lo, hi))
    front = pareto_front(pts)
    fx, fy = [pts[i][0] for i in front], [pts[i][1] for i in front]
    ax.step(fx, fy, where="post", color="black", linewidth=1.2, zorder=2, label="Pareto front (cheaper or faster than all others)")
    for i in front:
        r = rows[i]
        ax.annotate(f"{r['label']}\n{_fmt(r['hours'])} h, ${_fmt(r['cost_usd'])}", (pts[i][0], pts[i][1]),
                    textcoords="offset points", xytext=(6, 4), fontsize=7)
    if deadline_h:
        ax.axvline(deadline_h, color="red", linestyle="--", linewidth=1, label=f"deadline {_fmt(deadline_h)} h")
    if budget:
        ax.axhline(budget, color="red", linestyle=":", linewidth=1, label=f"budget ${_fmt(budget)}")
    # legends: marker = GPU kind, colour = platform/pricing
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=MARKERS[i % len(MARKERS)], color="gray", linestyle="", label=k) for i, k in enumerate(kinds)]
    handles += [Line2D([], [], marker="o", color=PALETTE[i % len(PALETTE)], linestyle="", label=k) for i, k in enumerate(colours_by)]
    handles += [h for h in ax.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, fontsize=7, loc="upper right", ncol=2)
    if max(p[0] for p in pts) / max(min(p[0] for p in pts), 1e-12) > 30:
        ax.set_xscale("log")
    if max(p[1] for p in pts) / max(min(p[1] for p in pts), 1e-12) > 30:
        ax.set_yscale("log")
    ax.set_xlabel("wall-clock (hours)")
    ax.set_ylabel("total cost (USD)")
    ax.set_title(_wrap(title, 110))
    ax.grid(True, which="both", alpha=0.2)
    drawn["points"] = [{"label": r["label"], "hours": r["hours"], "cost_usd": r["cost_usd"]} for r in rows]
    drawn["front"] = [rows[i]["label"] for i in front]


def chart_compare(data: dict) -> Chart:
    rows = []
    for r in data["rows"]:
        h = _hours(r.get("wall_clock_s"))
        c = _num(r.get("total_cost_usd"))
        if h is None or c is None or not r.get("feasible", True):
            continue
        iv = _interval(r, "wall_clock_s")
        rows.append({"gpu": r["gpu"], "platform": r["platform"], "pricing": r["pricing"], "hours": h, "cost_usd": c,
                     "label": f"{r['platform']} {r.get('gpus', 1)}x {r['gpu']}",
                     "_interval_h": (iv[0] / 3600, iv[1] / 3600) if iv else None})
    if not rows:
        raise SizeupError("nothing to draw: no row of this comparison is feasible (see its reasons)")
    w = data.get("workload", {})
    tok = _num(w.get("tokens"))
    title = (f"Cost vs wall-clock: {w.get('model')} on {tok / 1e6:,.1f}M tokens, {len(rows)} offers "
             f"(marker = GPU, colour = platform/pricing)") if tok else f"Cost vs wall-clock: {w.get('model')}"
    fig, ax = _figure(9.5, 6.0)
    drawn: dict = {}
    _scatter_cost_time(ax, rows, title, drawn, _hours(data.get("deadline_s")), _num(data.get("budget_usd")))
    return Chart("compare", title, fig, drawn)


def chart_search(data: dict) -> Chart:
    rows = []
    for p in data["plans"]:
        res, offer = p.get("results", {}), p.get("offer") or {}
        h, c = _hours(res.get("wall_clock_s")), _num(res.get("cost_usd"))
        if h is None or c is None:
            continue
        cfg = p.get("config", {})
        par = "/".join(f"{k}{cfg[k]}" for k in ("tp", "pp", "dp") if cfg.get(k))
        iv = _interval(res, "wall_clock_s")
        rows.append({"_interval_h": (iv[0] / 3600, iv[1] / 3600) if iv else None,
                     "gpu": p["gpu"], "platform": offer.get("platform", "cheapest"),
                     "pricing": offer.get("pricing", "on-demand"), "hours": h, "cost_usd": c,
                     "label": f"#{p.get('rank')} {p['gpus']}x {p['gpu']} {par}"})
    if not rows:
        raise SizeupError("nothing to draw: the search found no plan with a time and a price")
    tok = _num(data.get("tokens"))
    title = (f"Search ({data.get('objective')}): {data.get('model')}"
             + (f", {tok / 1e9:,.3g}B tokens" if tok else "") + f": {len(rows)} plans shown of "
             f"{int(data.get('feasible') or 0):,} feasible (marker = GPU, colour = platform/pricing)")
    fig, ax = _figure(9.5, 6.0)
    drawn: dict = {}
    cons = data.get("constraints", {})
    _scatter_cost_time(ax, rows, title, drawn, _hours(cons.get("deadline_s")), _num(cons.get("budget_usd")))
    return Chart("search", title, fig, drawn)


# --------------------------------------------------------------------------- scale


def chart_scale(data: dict) -> Chart:
    pricing = (data.get("pricing") or ["on-demand"])[0]
    series: dict[str, dict[str, list]] = {}
    for row in data["rows"]:
        params = _num(row.get("params"))
        for option, hw in (row.get("hardware") or {}).items():
            gh = _num(hw.get("gpu_hours"))
            cost = _num(((hw.get("cost") or {}).get(pricing) or {}).get("total_cost_usd"))
            s = series.setdefault(option, {"params": [], "gpu_hours": [], "params_cost": [], "cost_usd": []})
            if params and gh and hw.get("fits", True):
                s["params"].append(params)
                s["gpu_hours"].append(gh)
                if cost:
                    s["params_cost"].append(params)
                    s["cost_usd"].append(cost)
    if not any(s["params"] for s in series.values()):
        raise SizeupError("nothing to draw: no model size fits any hardware option")
    fig, (ax, bx) = _figure(12.5, 5.2, ncols=2)
    for i, (option, s) in enumerate(series.items()):
        c, m = PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
        if s["params"]:
            ax.plot(s["params"], s["gpu_hours"], marker=m, color=c, label=option)
            for x, y in zip(s["params"], s["gpu_hours"]):
                ax.annotate(_fmt(y), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=c)
        if s["params_cost"]:
            bx.plot(s["params_cost"], s["cost_usd"], marker=m, color=c, label=option)
            for x, y in zip(s["params_cost"], s["cost_usd"]):
                bx.annotate(f"${_fmt(y)}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=c)
    for a, ylab in ((ax, "GPU-hours"), (bx, f"total cost (USD, {pricing}, cheapest platform)")):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("model size (parameters)")
        a.set_ylabel(ylab)
        a.grid(True, which="both", alpha=0.2)
        a.legend(fontsize=8)
    ax.set_title("GPU-hours vs model size, one line per hardware option")
    bx.set_title("Cost vs model size, one line per hardware option")
    title = (f"Scaling: {len(data['rows'])} model sizes, global batch {data.get('global_batch')} x seq "
             f"{data.get('seq_len')}, {data.get('precision')}")
    fig.suptitle(title, fontsize=10)
    return Chart("scale", title, fig, {"series": series, "pricing": pricing})


# --------------------------------------------------------------------------- infer / serve-plan


def infer_sweep(data: dict) -> list[dict]:
    """The replica of `data` at batch 1, 2, 4, ... up to its memory limit (same estimator as `sizeup infer`)."""
    from sizeup.catalog import load_catalog, resolve_model
    from sizeup.core.inference import ServeSetup, estimate_inference
    from sizeup.catalog.knobs import load_serving_knobs

    catalog = load_catalog()
    arch = resolve_model(str(data["model"]))
    gpu = catalog.gpu(str(data["gpu"]))
    knobs = load_serving_knobs(catalog)
    top = max(int(data.get("max_concurrency") or 1), int(data.get("batch") or 1), 1)
    batches = sorted({2 ** k for k in range(0, 20) if 2 ** k <= top} | {int(data.get("batch") or 1), top})
    out = []
    for bt in batches:
        setup = ServeSetup(tp=int(data["tp"]), pp=int(data["pp"]), weights=data["weights_dtype"],
                           kv_dtype=data["kv_dtype"], prompt_len=int(data["prompt_len"]),
                           output_len=int(data["output_len"]), batch=bt, static=data.get("batching") == "static")
        est = estimate_inference(arch, gpu, setup, knobs, None, None)
        out.append({"batch": bt, "output_tokens_per_s": est.output_tokens_per_s, "tpot_s": est.tpot_s,
                    "ttft_s": est.ttft_s})
    return out


def chart_infer(data: dict) -> Chart:
    try:
        sweep = infer_sweep(data)
    except Exception:  # the model or GPU is not in the catalog any more: draw the chosen point alone
        sweep = []
    fig, ax = _figure(9.0, 5.5)
    drawn: dict = {"sweep": sweep}
    if sweep:
        ax.plot([p["output_tokens_per_s"] for p in sweep], [p["tpot_s"] * 1e3 for p in sweep], marker="o",
                color=PALETTE[0], label="TPOT (decode step)")
        ax.plot([p["output_tokens_per_s"] for p in sweep], [p["ttft_s"] * 1e3 for p in sweep], marker="s",
                color=PALETTE[1], label="TTFT (first token)")
        for p in sweep:
            ax.annotate(f"b={p['batch']}", (p["output_tokens_per_s"], p["tpot_s"] * 1e3), textcoords="offset points",
                        xytext=(3, -10), fontsize=7)
    x, tpot, ttft = float(data["output_tokens_per_s"]), float(data["tpot_s"]) * 1e3, float(data["ttft_s"]) * 1e3
    ax.scatter([x, x], [tpot, ttft], color="red", s=90, zorder=4, marker="*",
               label=f"chosen: batch {data.get('batch')}, {_fmt(x)} tok/s, TPOT {_fmt(tpot)} ms, TTFT {_fmt(ttft)} ms")
    drawn["chosen"] = {"batch": data.get("batch"), "output_tokens_per_s": x, "tpot_ms": tpot, "ttft_ms": ttft}
    # P10-P90 of the chosen point where the JSON carries them (calibration intervals of the serving residuals)
    x_iv = _interval(data, "output_tokens_per_s")
    for key, y, color in (("tpot_s", tpot, PALETTE[0]), ("ttft_s", ttft, PALETTE[1])):
        y_iv = _interval(data, key)
        if y_iv or x_iv:
            yerr = [[max(0.0, y - y_iv[0] * 1e3)], [max(0.0, y_iv[1] * 1e3 - y)]] if y_iv else None
            xerr = [[max(0.0, x - x_iv[0])], [max(0.0, x_iv[1] - x)]] if x_iv else None
            ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="none", ecolor=color, elinewidth=1.2, capsize=3,
                        zorder=3)
    drawn["chosen_p10_p90"] = {k: iv for k, iv in (("tpot_s", _interval(data, "tpot_s")),
                                                  ("ttft_s", _interval(data, "ttft_s")),
                                                  ("output_tokens_per_s", x_iv)) if iv}
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel("output tokens/s per replica")
    ax.set_ylabel("latency (ms)")
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=8)
    title = (f"Inference: {data.get('model')} on {data.get('gpus')} x {data.get('gpu')} ({data.get('weights_dtype')} "
             f"weights), prompt {data.get('prompt_len')} + output {data.get('output_len')} tokens: latency vs "
             f"throughput as the batch grows")
    ax.set_title(_wrap(title, 100))
    return Chart("infer", title, fig, drawn)


def _replica_rps(o: dict):
    """Requests/s one replica sustains at the targets (serve-plan JSON: max_rps_per_replica)."""
    return _num(o.get("max_rps_per_replica", o.get("requests_per_s_per_replica")))


def chart_serve_plan(data: dict) -> Chart:
    opts = [o for o in data["options"] if o.get("feasible") and _replica_rps(o)]
    if not opts:
        raise SizeupError("nothing to draw: no serving option meets the targets (see each option's reason)")
    fig, ax = _figure(9.0, 5.5)
    drawn: dict = {"options": []}
    best = data.get("best") or {}
    kinds = sorted({o["gpu_id"] for o in opts})
    for o in opts:
        i = kinds.index(o["gpu_id"])
        x = float(_replica_rps(o))
        for key, m, name in (("ttft_p95_s", "s", "TTFT p95"), ("tpot_p95_s", "o", "TPOT p95")):
            v = _num(o.get(key))
            if v is not None:
                ax.scatter([x], [v * 1e3], color=PALETTE[i % len(PALETTE)], marker=m, s=40, zorder=3)
        ax.annotate(f"{o['gpu_id']} tp{o['tp']}", (x, float(o["ttft_p95_s"]) * 1e3), textcoords="offset points",
                    xytext=(4, 3), fontsize=7)
        drawn["options"].append({"gpu": o["gpu_id"], "tp": o["tp"], "requests_per_s_per_replica": x,
                                 "ttft_p95_ms": float(o["ttft_p95_s"]) * 1e3, "tpot_p95_ms": float(o["tpot_p95_s"]) * 1e3})
    t = data.get("targets") or {}
    for key, style, name in (("ttft_p95_s", "--", "TTFT p95 SLO"), ("tpot_p95_s", ":", "TPOT p95 SLO"),
                             ("ttft_p50_s", "-.", "TTFT p50 SLO"), ("tpot_p50_s", (0, (1, 3)), "TPOT p50 SLO")):
        v = _num(t.get(key))
        if v:
            ax.axhline(v * 1e3, color="red", linestyle=style, linewidth=1, label=f"{name} {_fmt(v * 1e3)} ms")
            drawn.setdefault("slo_ms", {})[key] = v * 1e3
    if best.get("feasible"):
        bxv = float(_replica_rps(best))
        ax.scatter([bxv], [float(best["ttft_p95_s"]) * 1e3], marker="*", s=200, color="red", zorder=4,
                   label=f"chosen: {best['replicas']} x {best['gpu_id']} tp{best['tp']}, ${_fmt(float(best['usd_per_hour']))}/h")
        drawn["chosen"] = {"gpu": best["gpu_id"], "tp": best["tp"], "requests_per_s_per_replica": bxv}
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="s", color="gray", linestyle="", label="TTFT p95"),
               Line2D([], [], marker="o", color="gray", linestyle="", label="TPOT p95")]
    handles += [Line2D([], [], marker="o", color=PALETTE[i % len(PALETTE)], linestyle="", label=k) for i, k in enumerate(kinds)]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="best")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel("requests/s one replica sustains at the targets")
    ax.set_ylabel("latency at that load (ms)")
    ax.grid(True, which="both", alpha=0.2)
    title = f"Serving plan: {data.get('model')} at {_fmt(float(data['rps']))} requests/s: latency vs throughput per option"
    ax.set_title(_wrap(title, 100))
    return Chart("serve-plan", title, fig, drawn)


# --------------------------------------------------------------------------- validate


def chart_validate(data: dict) -> Chart:
    pts = [p for p in data["points"] if (_num(p.get("measured")) or 0) > 0 and (_num(p.get("predicted")) or 0) > 0]
    if not pts:
        raise SizeupError("nothing to draw: no point has both a measured and a predicted value")
    fw = sorted({str(p.get("framework") or p.get("source")) for p in pts})
    qs = sorted({str(p.get("quantity")) for p in pts})
    fig, ax = _figure(8.0, 7.0)
    lo = min(min(float(p["measured"]), float(p["predicted"])) for p in pts) / 1.5
    hi = max(max(float(p["measured"]), float(p["predicted"])) for p in pts) * 1.5
    import numpy as np

    g = np.array([lo, hi])
    ax.fill_between(g, g / 1.25, g * 1.25, color="#dddddd", label="±25%")
    ax.fill_between(g, g / 1.10, g * 1.10, color="#bbbbbb", label="±10%")
    ax.plot(g, g, color="black", linewidth=1, label="predicted = measured")
    drawn: dict = {"points": []}
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in pts:
        groups.setdefault((str(p.get("framework") or p.get("source")), str(p.get("quantity"))), []).append(p)
    for (f, q), members in groups.items():  # one scatter per framework x quantity
        ax.scatter([float(p["measured"]) for p in members], [float(p["predicted"]) for p in members],
                   color=PALETTE[fw.index(f) % len(PALETTE)], marker=MARKERS[qs.index(q) % len(MARKERS)], s=14,
                   alpha=0.7, zorder=3)
        drawn["points"] += [{"id": p.get("id"), "quantity": q, "measured": float(p["measured"]),
                             "predicted": float(p["predicted"])} for p in members]
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", color=PALETTE[i % len(PALETTE)], linestyle="", label=k) for i, k in enumerate(fw)]
    handles += [Line2D([], [], marker=MARKERS[i % len(MARKERS)], color="gray", linestyle="", label=k) for i, k in enumerate(qs)]
    ax.legend(handles=ax.get_legend_handles_labels()[0] + handles, fontsize=7, loc="upper left")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured (each point in its own unit: %, TFLOP/s, tokens/s, samples/s)")
    ax.set_ylabel("predicted (same unit as measured)")
    overall = (data.get("summary") or {}).get("overall") or {}
    title = (f"Validation: {len(pts)} predictions vs published measurements, median |error| "
             f"{overall.get('median_abs_error_pct', '?')}% (colour = framework/source, marker = quantity)")
    ax.set_title(_wrap(title, 90))
    ax.grid(True, which="both", alpha=0.2)
    within10 = sum(1 for p in pts if abs(float(p["predicted"]) / float(p["measured"]) - 1) <= 0.10)
    drawn["within_10pct"] = within10
    return Chart("validate", title, fig, drawn)


BUILDERS: dict[str, Callable[[dict], Chart]] = {
    "memory": chart_memory, "train": chart_train, "compare": chart_compare, "search": chart_search,
    "scale": chart_scale, "infer": chart_infer, "serve-plan": chart_serve_plan, "validate": chart_validate,
}
