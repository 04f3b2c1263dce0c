"""`sizeup search` (the fastest / cheapest / fewest-GPU legal plan, or the cost-time Pareto front) and
`sizeup export` (a plan as a DeepSpeed / FSDP2 / Megatron-LM / torchtitan / accelerate config)."""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Optional

import typer

from sizeup.cli import app
from sizeup.commands.common import job_command
from sizeup.commands.common import PlotOpt
from sizeup.commands.common import (
    CpOpt, CsvOpt, EpochsOpt, EpOpt, ExplainOpt, JsonOpt, LoraRankOpt, MarkdownOpt, MicroBatchOpt, ModelArg,
    ModelOpt, OptimizerOpt, PeftOpt, PpOpt, PrecisionOpt, SamplesOpt, SeqOpt, TokensOpt, TokensPerSampleOpt, TpOpt,
    emit, is_scenario, parse_choice, pick_target,
)
from sizeup.errors import SizeupError, choice_error
from sizeup.report import Col

DEFAULT_GPUS = ("h100-sxm", "h200", "b200", "a100-80gb-sxm")

ObjectiveOpt = Annotated[str, typer.Option("--objective", help="time (fastest) | cost (cheapest) | pareto (cost vs time front).")]
TopOpt = Annotated[int, typer.Option("--top", help="How many plans to show.")]
MaxGpusOpt = Annotated[Optional[int], typer.Option("--max-gpus", help="Largest GPU count to try (default 1024).")]
MinGpusFlag = Annotated[bool, typer.Option("--min-gpus", help="Find the fewest GPUs that can train this (then the fastest).")]
DeadlineOpt = Annotated[Optional[str], typer.Option("--deadline", help="Latest wall-clock, e.g. 30d, 72h.")]
BudgetOpt = Annotated[Optional[str], typer.Option("--budget", help="Most dollars, e.g. 50000, 1.2M.")]
GpuListOpt = Annotated[Optional[str], typer.Option("--gpu", help=f"GPU kinds, comma-separated (default {','.join(DEFAULT_GPUS)}).")]
GpusListOpt = Annotated[Optional[str], typer.Option("--gpus", help="GPU counts to try, comma-separated (default: powers of two and whole nodes up to --max-gpus).")]
PlatformListOpt = Annotated[Optional[str], typer.Option("--platform", help="Platforms, comma-separated (prices and whole instances); default: the cheapest offer of any platform.")]
PricingListOpt = Annotated[Optional[str], typer.Option("--pricing", help="on-demand | spot | reserved, comma-separated (default on-demand).")]
GlobalBatchListOpt = Annotated[Optional[str], typer.Option("--global-batch", help="Sequences per optimizer step: one value, a list (256,512) or a range (256-2048: values 2^k, 3*2^k, 5*2^k inside). Default ~4M tokens.")]
ZeroListOpt = Annotated[Optional[str], typer.Option("--zero", help="Shardings to try, comma-separated (none,1,2,3,fsdp-full,fsdp-grad-op,fsdp-hybrid,megatron-distopt); default all.")]
RecomputeListOpt = Annotated[Optional[str], typer.Option("--recompute", help="Recompute modes to try, comma-separated (none,selective,full); default all.")]
OffloadOpt = Annotated[Optional[str], typer.Option("--offload", help="Optimizer offload to try: none | cpu | none,cpu (default none,cpu).")]
KernelOpt = Annotated[Optional[str], typer.Option("--kernel", help="fused (Megatron/TE kernels, default) | eager (plain PyTorch / HF).")]
ExportOpt = Annotated[Optional[str], typer.Option("--export", help="Also print the best plan as: deepspeed | fsdp | megatron | torchtitan | accelerate.")]
CrossNodeTpOpt = Annotated[bool, typer.Option("--allow-cross-node-tp", help="Let tensor parallelism span nodes.")]
UnevenPpOpt = Annotated[bool, typer.Option("--uneven-pp", help="Allow pipeline stages with unequal layer counts.")]


def _ints(name: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise SizeupError(f"--{name} takes whole numbers separated by commas, got {text!r}") from None
        if v < 1:
            raise SizeupError(f"--{name} values must be >= 1, got {v}")
        out.append(v)
    if not out:
        raise SizeupError(f"--{name} is empty")
    return tuple(sorted(set(out)))


def global_batches(text: Any, seq_len: int, tokens: float | None = None) -> tuple[tuple[int, ...], str]:
    """(values, note). A range 'A-B' keeps 2^k, 3*2^k and 5*2^k inside it (so dp with a factor 3 or 5 fits).
    Default: the rule every command uses (sizeup.job.parse: about 1M tokens, at least 1000 optimizer steps),
    rounded to a power of two so that any power-of-two data-parallel degree divides it."""
    if text is None:
        from sizeup.job.parse import DEFAULT_BATCH_TOKENS, DEFAULT_MIN_STEPS

        target = DEFAULT_BATCH_TOKENS if tokens is None else min(DEFAULT_BATCH_TOKENS, tokens / DEFAULT_MIN_STEPS)
        b = max(1, 2 ** math.floor(math.log2(max(1.0, target / seq_len))))
        return (b,), (f"global batch {b} sequences x {seq_len} = {b * seq_len / 2**20:.3g}M tokens (default: about 1M "
                      f"tokens and at least {DEFAULT_MIN_STEPS} steps, as every command; set --global-batch)")
    s = str(text).replace(" ", "")
    if "-" in s:
        lo_s, hi_s = s.split("-", 1)
        lo, hi = (_ints("global-batch", lo_s) or (1,))[0], (_ints("global-batch", hi_s) or (1,))[0]
        if lo > hi:
            raise SizeupError(f"--global-batch range {text!r}: the low end is above the high end")
        vals = sorted({m * 2 ** k for m in (1, 3, 5) for k in range(0, 40) if lo <= m * 2 ** k <= hi})
        if not vals:
            raise SizeupError(f"--global-batch range {text!r} holds no value of the form 2^k, 3*2^k, 5*2^k")
        return tuple(vals), f"global batch: any of {', '.join(map(str, vals))} sequences"
    return _ints("global-batch", s), ""


def _choices(kind: str, text: str | None, enum, aliases: dict | None = None) -> tuple | None:
    if text is None:
        return None
    out = []
    for part in str(text).split(","):
        if part.strip():
            out.append(parse_choice(kind, part, enum, aliases))
    return tuple(dict.fromkeys(out))


def _progress():
    """Rich progress bar on stderr, shown only when the search runs longer than a second."""
    state: dict[str, Any] = {"t0": time.perf_counter(), "bar": None}

    def update(done: int, total: int) -> None:
        if state["bar"] is None:
            if time.perf_counter() - state["t0"] < 1.0:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(TextColumn("searching plans"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                           TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task("search", total=total)
        state["bar"].update(state["task"], completed=done, total=total)

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].stop()

    return update, close


def build_search(values: dict[str, Any], flags: dict[str, Any], scenario) -> dict[str, Any]:
    """Everything `search()` needs from merged scenario values and flags; SizeupError on bad input."""
    from sizeup.catalog import load_catalog, resolve_model
    from sizeup.catalog.overheads import load_overheads
    from sizeup.commands.compare import cost_knobs, energy_value, offers_for, parse_pricing
    from sizeup.commands.common import PEFT_ALIASES, PRECISION_ALIASES, ZERO_ALIASES
    from sizeup.job.parse import parse_count, parse_workload as _workload
    from sizeup.core.cost import checkpoint_size
    from sizeup.core.timing import model_inputs
    from sizeup.core.types import Attention, Offload, Optimizer, Peft, Precision, Recompute, Sharding, TrainSetup
    from sizeup.search.candidates import OFFLOADS, RECOMPUTES, SHARDINGS, SearchSpace
    from sizeup.search.search import Constraints, CostInputs, Recipe, Target
    from sizeup.units import parse_duration, parse_usd

    if not values.get("model"):
        raise SizeupError("give a model (preset id, config.json) or a scenario .yaml; see 'sizeup models'")
    catalog = load_catalog()
    arch = resolve_model(str(values["model"]), catalog)
    workload = _workload(values)
    if workload is None:
        raise SizeupError("give the amount of training: --tokens (e.g. 1T), or --samples with --tokens-per-sample")
    seq = values.get("seq")
    seq = int(seq) if seq else min(2048, arch.max_seq_len)
    if seq < 1:
        raise SizeupError(f"--seq must be > 0, got {seq}")
    if arch.position.value == "learned" and seq > arch.max_seq_len:
        raise SizeupError(f"--seq {seq} is longer than {arch.id}'s {arch.max_seq_len} learned positions")
    notes: list[str] = list(scenario.notes)
    gbs, gb_note = global_batches(values.get("global_batch"), seq, workload.total_tokens)
    if gb_note:
        notes.append(gb_note)

    gpu_names = values.get("gpu")
    names = [g.strip() for g in str(gpu_names).split(",") if g.strip()] if gpu_names else list(DEFAULT_GPUS)
    if not names:
        raise SizeupError(f"--gpu {gpu_names!r} names no GPU; give one or more, e.g. h100-sxm,a100-80gb")
    gpus_specs = []
    for n in names:
        spec = catalog.gpu(n)
        if spec.peak("bf16") <= 0 and spec.peak("fp16") <= 0 and spec.peak("fp32") <= 0:
            raise SizeupError(f"GPU {spec.id} has no FLOP/s figures in the catalog; pick a GPU with peaks")
        if spec.id not in [g.id for g in gpus_specs]:
            gpus_specs.append(spec)
    pricings = [parse_pricing(p) for p in str(values.get("pricing") or "on-demand").split(",") if p.strip()]
    platforms = [p.strip() for p in str(values.get("platform") or "").split(",") if p.strip()]
    for p in platforms:
        catalog.platform(p)  # unknown -> SizeupError with the list
    prec_text = values.get("precision")
    mixed = prec_text is not None and PRECISION_ALIASES.get(str(prec_text).lower(), str(prec_text).lower()) == "mixed"
    # "mixed": bf16-mixed where the GPU has bf16, else fp16-mixed (decided per GPU below)
    precision_fixed = None if mixed else parse_choice("precision", prec_text, Precision, PRECISION_ALIASES)
    targets = []
    for spec in gpus_specs:
        offers = []
        for pid in (platforms or list(catalog.platforms)):
            for kind in pricings:
                offers += offers_for(catalog, pid, spec.id, kind, strict=False)
        if platforms and not offers:
            raise SizeupError(f"no {spec.id} offer at {', '.join(pricings)} pricing on {', '.join(platforms)}; "
                              "drop --platform or pick another --gpu (see 'sizeup gpus' and 'sizeup platforms')")
        precision = precision_fixed or (Precision.BF16_MIXED if spec.supports_bf16 else Precision.FP16_MIXED)
        targets.append(Target(spec, tuple(offers), precision))

    peft_raw = values.get("peft")
    if isinstance(peft_raw, bool):
        peft_raw = "lora" if peft_raw else "none"
    # every count once through the job parser's whole-number check (> 0; one clear line for '$5000', 1.5, 0, -2)
    counts = {k: parse_count(k.replace("_", "-"), values.get(k))
              for k in ("tp", "pp", "cp", "ep", "micro_batch", "lora_rank", "max_gpus")}
    recipe = Recipe(
        optimizer=parse_choice("optimizer", values.get("optimizer"), Optimizer) or Optimizer.ADAMW,
        peft=parse_choice("peft", peft_raw, Peft, PEFT_ALIASES) or Peft.NONE,
        lora_rank=counts["lora_rank"] or 16,
        attention=parse_choice("attention", values.get("attention"), Attention, {"sdpa": "flash", "eager": "math"})
        or Attention.FLASH,
        kernel="eager" if "eager" in str(values.get("kernel") or "fused").lower() else "fused",
    )
    if values.get("kernel") and str(values["kernel"]).lower() not in ("fused", "eager", "hf-eager"):
        raise SizeupError(f"--kernel must be fused or eager, got {values['kernel']!r}")
    one = lambda name: (counts[name],) if counts[name] else None  # noqa: E731
    max_gpus = counts["max_gpus"] or 1024
    space = SearchSpace(
        seq_len=seq, global_batches=gbs, gpu_counts=_ints("gpus", values.get("gpus")) if values.get("gpus") else None,
        max_gpus=max_gpus, tp=one("tp"), pp=one("pp"), cp=one("cp"), ep=one("ep"),
        micro_batches=(counts["micro_batch"],) if counts["micro_batch"] else (1, 2, 4, 8),
        shardings=_choices("zero", values.get("zero"), Sharding, ZERO_ALIASES) or SHARDINGS,
        recomputes=_choices("recompute", values.get("recompute"), Recompute, {"no": "none", "yes": "full"})
        or RECOMPUTES,
        offloads=_choices("offload", values.get("offload"), Offload) or OFFLOADS,
        allow_cross_node_tp=bool(flags.get("allow_cross_node_tp")), uneven_pp=bool(flags.get("uneven_pp")),
    )
    if Offload.NVME in space.offloads:
        raise SizeupError("--offload takes none or cpu (NVMe offload is not searched)")
    deadline = values.get("deadline")
    budget = values.get("budget")
    constraints = Constraints(deadline_s=parse_duration(deadline) if deadline is not None else None,
                              budget_usd=parse_usd(budget) if budget is not None else None)
    # files for the cost model (same as `sizeup compare`): resumable checkpoint, final weights, dataset
    base = TrainSetup(seq_len=seq, precision=targets[0].precision, optimizer=recipe.optimizer, peft=recipe.peft,
                      lora_rank=recipe.lora_rank)
    mi = model_inputs(arch, base)
    ck0 = checkpoint_size(mi.params_total, mi.params_trainable, base.precision, base.optimizer, base.peft, ranks=0)
    ck1 = checkpoint_size(mi.params_total, mi.params_trainable, base.precision, base.optimizer, base.peft, ranks=1)
    per_token, _ = energy_value("storage", "dataset_bytes_per_token")
    cost = CostInputs(knobs=cost_knobs(), checkpoint_base_bytes=ck0.bytes, checkpoint_bytes_per_rank=ck1.bytes - ck0.bytes,
                      final_weights_bytes=(mi.params_trainable if recipe.peft != Peft.NONE else mi.params_total) * 2.0,
                      dataset_bytes=workload.total_tokens * per_token)
    return dict(model=arch, tokens=workload.total_tokens, space=space, targets=targets, recipe=recipe,
                constraints=constraints, cost=cost, overheads=load_overheads(), whole_instances=bool(platforms),
                notes=notes)


SEARCH_VARIES = ("gpu", "gpus", "platform", "pricing", "zero", "recompute", "global_batch")
SEARCH_READS = ("tokens", "samples", "tokens_per_sample", "epochs", "seq", "micro_batch", "precision", "optimizer",
                "tp", "pp", "cp", "ep", "peft", "lora_rank", "kernel")


def _search_refusals() -> dict[str, str]:
    from sizeup.job.flags import JOB_FLAG_NAMES

    return {n: "the plan search does not vary or pin this field yet; take the plan it finds to 'sizeup train' "
               "with this flag to evaluate it" for n in JOB_FLAG_NAMES if n not in SEARCH_VARIES + SEARCH_READS}


@job_command("search", refuse=_search_refusals())
def search_cmd(
    target: ModelArg = None,
    model: ModelOpt = None,
    objective: ObjectiveOpt = "time",
    top: TopOpt = 10,
    max_gpus: MaxGpusOpt = None,
    min_gpus: MinGpusFlag = False,
    deadline: DeadlineOpt = None,
    budget: BudgetOpt = None,
    gpu: GpuListOpt = None,
    gpus: GpusListOpt = None,
    platform: PlatformListOpt = None,
    pricing: PricingListOpt = None,
    tokens: TokensOpt = None,
    samples: SamplesOpt = None,
    tokens_per_sample: TokensPerSampleOpt = None,
    epochs: EpochsOpt = None,
    seq: SeqOpt = None,
    micro_batch: MicroBatchOpt = None,
    global_batch: GlobalBatchListOpt = None,
    precision: PrecisionOpt = None,
    optimizer: OptimizerOpt = None,
    zero: ZeroListOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    cp: CpOpt = None,
    ep: EpOpt = None,
    recompute: RecomputeListOpt = None,
    offload: OffloadOpt = None,
    peft: PeftOpt = None,
    lora_rank: LoraRankOpt = None,
    kernel: KernelOpt = None,
    allow_cross_node_tp: CrossNodeTpOpt = False,
    uneven_pp: UnevenPpOpt = False,
    export: ExportOpt = None,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
    plot: PlotOpt = None,
    flags: dict = None,
) -> None:
    """Search every legal plan (GPU kind x count x tp/pp/dp/cp/ep x sharding x micro-batch x recompute x offload)
    for the fastest, cheapest or fewest-GPU one that fits in memory and meets the deadline and budget.

    Examples:

      sizeup search llama-3-70b --tokens 1T --seq 8192 --deadline 30d

      sizeup search llama-3-8b --tokens 100B --objective cost --platform aws,lambda --pricing on-demand,spot

      sizeup search llama-2-7b --tokens 10B --gpu a100-80gb --min-gpus

      sizeup search examples/seed003-70b-h100.yaml --objective pareto --json

      sizeup search llama-3-8b --tokens 50B --gpu h100 --max-gpus 64 --export deepspeed
    """
    from sizeup.scenario import Scenario, load_scenario, load_timing_knobs
    from sizeup.search.search import OBJECTIVES, search

    name = pick_target(target, model)
    scenario = load_scenario(name) if is_scenario(name) else Scenario()
    obj = "gpus" if min_gpus else str(objective).strip().lower()
    if obj not in OBJECTIVES:
        raise choice_error("objective", objective, ["time", "cost", "pareto"])
    if top < 1:
        raise SizeupError(f"--top must be >= 1, got {top}")
    if export is not None:
        from sizeup.search.export import FORMATS

        if export.strip().lower() not in FORMATS:
            raise choice_error("export format", export, list(FORMATS))
    flags = dict(model=None if is_scenario(name) else name, gpu=gpu, gpus=gpus, tokens=tokens, samples=samples,
                 tokens_per_sample=tokens_per_sample, epochs=epochs, seq=seq, micro_batch=micro_batch,
                 global_batch=global_batch, precision=precision, optimizer=optimizer, zero=zero, tp=tp, pp=pp, cp=cp,
                 ep=ep, recompute=recompute, offload=offload, peft=peft, lora_rank=lora_rank, kernel=kernel,
                 platform=platform, pricing=pricing, deadline=deadline, budget=budget, max_gpus=max_gpus)
    values = dict(scenario.other)
    values.update(scenario.values)
    values.update({k: v for k, v in flags.items() if v is not None})
    for key in ("gpu", "gpus", "platform", "pricing", "zero", "recompute"):
        if isinstance(values.get(key), (list, tuple)):
            values[key] = ",".join(map(str, values[key]))
    job = build_search(values, dict(allow_cross_node_tp=allow_cross_node_tp, uneven_pp=uneven_pp), scenario)
    knobs = load_timing_knobs(scenario.timing)
    update, close = _progress()
    try:
        result = search(job["model"], job["tokens"], job["space"], job["targets"], recipe=job["recipe"],
                        objective=obj, top=top, constraints=job["constraints"], cost=job["cost"], knobs=knobs,
                        overheads=job["overheads"], whole_instances=job["whole_instances"], progress=update)
    finally:
        close()
    report = build_report(job, result, export, knobs if explain else None)
    emit(report, json_, csv_, markdown, explain, plot=plot)
    if export and not (json_ or csv_) and result.plans:
        ex = report.data["export"]
        if ex.get("text") is None:
            typer.echo(f"\n# ---- --export {export}: {ex['refused']}")
        else:
            typer.echo(f"\n# ---- {ex['filename']} (plan #{ex['plan_rank']}, --export {export})")
            typer.echo(ex["text"], nl=False)
            for note in ex["notes"]:
                typer.echo(f"# note: {note}")


def merge_label_twins(rows: list[list], cols: list[str]) -> list[list]:
    """Rows that differ only in the sharding label (zero1 and megatron-distopt give the same numbers) become one
    row naming both, so that the top rows are different plans."""
    label, rank, why = cols.index("sharding"), cols.index("#"), cols.index("vs #1")
    out: list[list] = []
    for r in rows:
        key = [v for i, v in enumerate(r) if i not in (label, rank, why)]
        twin = next((o for o in out if [v for i, v in enumerate(o) if i not in (label, rank, why)] == key), None)
        if twin is not None:
            twin[label] = f"{twin[label]} = {r[label]}"
        else:
            out.append(list(r))
    return out


def _row(p) -> list:
    from sizeup.report import Num
    from sizeup.units import format_duration

    return [p.rank, p.gpu, p.gpus, p.platform or "-", p.pricing or "-", f"{p.tp}/{p.pp}/{p.dp}/{p.cp}/{p.ep}",
            p.sharding.value + (" +cpu-offload" if p.offload.value != "none" else ""), p.micro_batch, p.grad_accum,
            p.recompute.value, Num(p.memory_reserved_bytes / 2**30, "{:.2f} GiB"),
            Num(p.step_time_s, format_duration(p.step_time_s).replace("{", "{{").replace("}", "}}")),
            Num(100 * p.mfu, "{:.1f}%"), p.bound, Num(p.days, "{:,.2f}"),
            Num(p.cost_usd, "${:,.2f}", reason="no price for this GPU kind (give --platform / --pricing)"),
            p.why_not_best]


COLUMNS = ["#", "GPU", "#GPUs", "platform", "pricing", "tp/pp/dp/cp/ep", "sharding", "micro-batch", "accum",
           "recompute", Col("memory/GPU", "GiB"), Col("step time", "s", 8), Col("MFU", "%", 9), "bound",
           Col("days", "d", 3), Col("cost", "$", 2), "vs #1"]


def plan_row_terms(p, arch, job: dict, knobs, prefix: str) -> list:
    """Terms named '<prefix>: ...' for one plan's row, via the scalar core path (same numbers)."""
    from dataclasses import replace as _replace

    from sizeup.catalog import load_catalog
    from sizeup.core.explain import Term
    from sizeup.core.memory import estimate_memory
    from sizeup.core.timing import estimate_step

    gpu = load_catalog().gpu(p.gpu)
    shown = ("memory/peak_reserved", "time/step", "efficiency/mfu", "bound")
    scalar = list(estimate_memory(arch, p.setup(), gpu, overheads=job["overheads"], kernel=p.recipe.memory_kernel).terms)
    scalar += list(estimate_step(arch, p.setup(), gpu, knobs, kernel=p.recipe.timing_kernel).terms)
    out = [_replace(t, name=f"{prefix}: {t.name}") for t in scalar if t.name in shown]
    out.append(Term(f"{prefix}: plan/wall_clock", p.wall_clock_s, "s", "steps * step_time (+ checkpoints, failures)",
                    {"steps": p.steps, "step_time_s": p.step_time_s, "compute_time_s": p.compute_time_s},
                    "core.timing.step_kernel; core.cost (Young/Daly)"))
    if p.cost_usd is not None:
        out.append(Term(f"{prefix}: plan/cost", p.cost_usd, "USD", "instances * price * billed_h + storage + egress",
                        {"platform": p.platform, "instance": p.instance, "pricing": p.pricing,
                         "price_usd_per_gpu_hour": p.price_usd_per_gpu_hour, "as_of": p.price_as_of},
                        "core.cost.estimate_cost (array form)"))
    return out


def build_report(job: dict, result, export: str | None = None, knobs=None):
    from sizeup.core.explain import Term
    from sizeup.report import Report, Table
    from sizeup.search.search import strategy_note
    from sizeup.units import format_count, format_duration, format_usd

    arch, c = job["model"], job["constraints"]
    title = {"time": "fastest plans", "cost": "cheapest plans", "pareto": "cost vs time Pareto front",
             "gpus": "fewest GPUs"}[result.objective]
    cols, row = COLUMNS, _row
    if len(job["space"].global_batches) > 1:  # several global batches searched: show which one each plan uses
        cols = COLUMNS[:9] + ["global batch"] + COLUMNS[9:]
        row = lambda p: _row(p)[:9] + [p.global_batch] + _row(p)[9:]  # noqa: E731
    tables = [Table(f"{arch.name}: {title} ({format_count(job['tokens'])} tokens)", cols,
                    merge_label_twins([row(p) for p in result.plans], cols), name="plans")]
    if len(result.best_per_gpu) > 1:
        tables.append(Table("best plan per GPU kind", cols[:-1], [row(p)[:-1] for p in result.best_per_gpu]))
    pruned_rows = sorted(result.pruned.items(), key=lambda kv: -kv[1])
    tables.append(Table("what was pruned, by rule", ["rule", "combinations removed"],
                        [(k, f"{v:,}") for k, v in pruned_rows]))
    notes = list(job["notes"])
    notes.append(f"evaluated {result.evaluated:,} configurations (legal plans x GPU kinds) of a {result.considered:,} grid; "
                 f"{result.fits_memory:,} fit in memory, {result.feasible:,} feasible; "
                 f"{result.elapsed_s:.2f} s = {result.rate_per_s:,.0f} configs/s")
    cons = []
    if c.deadline_s is not None:
        cons.append(f"deadline {format_duration(c.deadline_s)}")
    if c.budget_usd is not None:
        cons.append(f"budget {format_usd(c.budget_usd)}")
    if cons:
        notes.append("constraints: " + ", ".join(cons))
    for name, p in result.excluded:
        notes.append(f"removed by '{name}': best such plan {p.gpus}x {p.gpu} tp/pp/dp={p.tp}/{p.pp}/{p.dp} "
                     f"{p.sharding.value} would take {p.days:,.2f} d"
                     + (f" for {format_usd(p.cost_usd)}" if p.cost_usd is not None else ""))
    if result.plans:
        notes.append("strategy (seed 000 size tiers, derived): " + strategy_note(result.plans))
        if result.objective == "gpus":
            b = result.plans[0]
            notes.append(f"fewest GPUs: {b.gpus}x {b.gpu} can train {arch.id} "
                         f"({b.sharding.value}, tp={b.tp}, pp={b.pp}, recompute {b.recompute.value}) in {b.days:,.1f} d")
    notes += list(result.notes)
    notes.append("memory = nvidia-smi view (allocated x fragmentation + CUDA context + workspaces, overheads.yaml); "
                 "days = wall-clock with checkpoints and expected failures (cost model); cost = cheapest usable offer")
    warnings = []
    if not result.plans:
        warnings.append("no plan fits in memory and meets the constraints; relax --deadline/--budget, add --gpu kinds, "
                        "raise --max-gpus, or allow --peft lora")
    data = {
        "model": arch.id, "tokens": job["tokens"], "objective": result.objective,
        "gpu_kinds": [t.gpu.id for t in job["targets"]],
        "constraints": {"deadline_s": c.deadline_s, "budget_usd": c.budget_usd,
                        "max_gpus": job["space"].max_gpus},
        "evaluated": result.evaluated, "considered": result.considered, "fits_memory": result.fits_memory,
        "feasible": result.feasible, "pruned": dict(result.pruned), "elapsed_s": result.elapsed_s,
        "rate_configs_per_s": result.rate_per_s,
        "plans": [p.to_dict() for p in result.plans],
        "best_per_gpu": [p.to_dict() for p in result.best_per_gpu],
        "excluded": [{"constraint": n, "plan": p.to_dict()} for n, p in result.excluded],
        "strategy_note": strategy_note(result.plans) if result.plans else None,
    }
    if export and result.plans:
        # the best plan the target can express (a refused plan is skipped with its reason, never translated)
        from sizeup.search.export import ExportRefused, export_plan

        refused: list[str] = []
        data["export"] = None
        for p in result.plans:
            try:
                ex = export_plan(export, arch, p.setup(), p.steps)
            except ExportRefused as exc:
                refused.append(f"plan #{p.rank}: {exc}")
                continue
            notes_ex = ([f"plans #1..#{p.rank - 1} refused ({refused[0]})"] if refused else []) + list(ex.notes)
            data["export"] = {"format": ex.format, "filename": ex.filename, "text": ex.text, "notes": notes_ex,
                              "plan_rank": p.rank}
            break
        if data["export"] is None:
            data["export"] = {"format": export, "filename": None, "text": None, "notes": [], "plan_rank": None,
                              "refused": f"no listed plan can be expressed ({refused[0]})"}
    terms = []
    if result.plans:
        b = result.plans[0]
        terms = [
            Term("search/evaluated", float(result.evaluated), "configs", "sum over GPU kinds of legal plans",
                 {"grid": result.considered, "pruned_by_rules": result.considered - result.evaluated},
                 "sizeup.search.candidates rules (Megatron-LM / DeepSpeed / torchtitan constraints)"),
            Term("search/best_wall_clock", b.wall_clock_s, "s", "steps * step_time (+ checkpoints, failures)",
                 {"steps": b.steps, "step_time_s": b.step_time_s, "compute_time_s": b.compute_time_s},
                 "core.timing.step_kernel; core.cost (Young/Daly)"),
            Term("search/best_memory", b.memory_reserved_bytes, "B", "core.memory.memory_components -> reserved_bytes",
                 {"gpu_memory_bytes": b.gpu_memory_bytes}, "core.memory"),
        ]
        if b.cost_usd is not None:
            terms.append(Term("search/best_cost", b.cost_usd, "USD", "instances * price * billed_h + storage + egress",
                              {"platform": b.platform, "instance": b.instance, "pricing": b.pricing,
                               "price_usd_per_gpu_hour": b.price_usd_per_gpu_hour, "as_of": b.price_as_of},
                              "core.cost.estimate_cost (array form)"))
        if knobs is not None:  # the best plan explained by the scalar core path (same numbers, with terms)
            from sizeup.catalog import load_catalog
            from sizeup.core.memory import estimate_memory
            from sizeup.core.timing import estimate_step

            gpu = load_catalog().gpu(b.gpu)
            terms += list(estimate_memory(arch, b.setup(), gpu, overheads=job["overheads"],
                                          kernel=b.recipe.memory_kernel).terms)
            terms += list(estimate_step(arch, b.setup(), gpu, knobs, kernel=b.recipe.timing_kernel).terms)
            # every other plan shown: the figures of its row (memory, step time, MFU, wall-clock, cost)
            for p in result.plans[1:]:
                terms += plan_row_terms(p, arch, job, knobs, f"#{p.rank} {p.gpus}x{p.gpu}")
            if len(result.best_per_gpu) > 1:
                for p in result.best_per_gpu:
                    terms += plan_row_terms(p, arch, job, knobs, f"best on {p.gpu}: {p.gpus}x{p.gpu}")
    return Report(data=data, tables=tables, terms=terms, notes=notes, warnings=warnings)


# --------------------------------------------------------------------------- export

FormatArg = Annotated[str, typer.Argument(help="deepspeed | fsdp | megatron | torchtitan | accelerate", show_default=False)]
OutOpt = Annotated[Optional[str], typer.Option("--out", help="Write the config to this file instead of stdout.")]
GlobalBatchOpt1 = Annotated[Optional[int], typer.Option("--global-batch", help="Sequences per optimizer step (sets gradient accumulation).")]
GpuOpt1 = Annotated[Optional[str], typer.Option("--gpu", help="GPU kind (sets GPUs per node).")]
GpusOpt1 = Annotated[Optional[int], typer.Option("--gpus", help="Number of GPUs.")]
ZeroOpt1 = Annotated[Optional[str], typer.Option("--zero", help="Sharding: 0|none, 1, 2, 3, fsdp-full, fsdp-grad-op, fsdp-hybrid, megatron-distopt.")]
RecomputeOpt1 = Annotated[Optional[str], typer.Option("--recompute", help="none | selective | full.")]
OffloadOpt1 = Annotated[Optional[str], typer.Option("--offload", help="Optimizer offload: none | cpu.")]


@job_command("export", refuse={n: "an export writes the parallel plan and recipe, not a price"
                               for n in ("platform", "pricing", "price_per_gpu_hour", "billing_increment_s",
                                         "min_billing_s", "preemption_rate", "restart_s", "checkpoints_kept",
                                         "retain", "catalog", "max_price_age_days")})
def export_cmd(
    fmt: FormatArg,
    target: ModelArg = None,
    model: ModelOpt = None,
    offload: OffloadOpt1 = None,
    out: OutOpt = None,
    json_: JsonOpt = False,
    flags: dict = None,
) -> None:
    """Write a plan as a runnable config: DeepSpeed JSON, torchrun + FSDP2, Megatron-LM args, torchtitan TOML,
    accelerate YAML (key names checked against each framework's documented keys).

    Examples:

      sizeup export deepspeed llama-3-8b --gpu h100 --gpus 16 --zero 3 --micro-batch 2 --global-batch 512

      sizeup export megatron llama-3-70b --gpus 64 --tp 8 --pp 2 --zero megatron-distopt --recompute selective --seq 8192

      sizeup export torchtitan examples/seed003-70b-h100.yaml --out job.toml
    """
    import json

    from sizeup.job import build_job, collect_values
    from sizeup.search.export import FORMATS, export_plan

    if fmt.strip().lower() not in FORMATS:
        raise choice_error("export format", fmt, list(FORMATS))
    if offload is not None and offload.strip().lower() not in ("none", "no", "off", "cpu", "host", "yes"):
        # DeepSpeed's NVMe offload needs an nvme_path this export does not write; the help promises none | cpu
        raise choice_error("--offload", offload, ["none", "cpu"])
    flags = dict(flags or {})
    if offload is not None:
        flags["offload_optimizer"] = offload
    values, _ = collect_values(target, model, flags)
    job = build_job(values, need_gpu=False)
    arch, setup = job.model, job.setup
    steps = None
    if job.workload is not None:
        steps = max(1, math.ceil(job.workload.total_tokens / setup.tokens_per_step - 1e-9))
    ex = export_plan(fmt, arch, setup, steps)
    if out:
        from pathlib import Path

        try:
            Path(out).write_text(ex.text)
        except OSError as exc:
            raise SizeupError(f"cannot write {out!r}: {exc.strerror}") from None
    if json_:
        typer.echo(json.dumps({"format": ex.format, "filename": ex.filename, "text": ex.text, "notes": list(ex.notes),
                               "setup": {"gpus": setup.gpus, "tp": setup.tp, "pp": setup.pp, "dp": setup.dp,
                                         "cp": setup.cp, "ep": setup.ep, "micro_batch": setup.micro_batch,
                                         "grad_accum": setup.grad_accum, "global_batch": setup.global_batch,
                                         "seq_len": setup.seq_len, "sharding": setup.sharding.value,
                                         "recompute": setup.recompute.value}}, indent=2))
        return
    if out:
        typer.echo(f"wrote {out} ({ex.format}: {setup.gpus} GPUs, tp={setup.tp} pp={setup.pp} dp={setup.dp}, "
                   f"micro-batch {setup.micro_batch} x accum {setup.grad_accum} = {setup.global_batch})")
    else:
        typer.echo(ex.text, nl=False)
    for note in ex.notes:
        typer.echo(f"# note: {note}", err=bool(out))
