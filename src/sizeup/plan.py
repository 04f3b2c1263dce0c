"""Plans priced on platforms: offers, cost knobs, the compare grid (GPU kinds x counts x platforms x pricing),
the cost of one run on a platform (`cost_section`), Pareto marks and seed 004's impact table.

Library code: `sizeup compare`, `sizeup train --platform`, `budget`, `demo`, `scale` and the pipeline call it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from sizeup.errors import SizeupError, choice_error, did_you_mean
from sizeup.job.choices import PRICING_ALIASES as _PRICING_ALIASES

PRICING_ALIASES = {**{k: k for k in ("on-demand", "spot", "reserved", "reserved-3y")}, **_PRICING_ALIASES,
                   "on-demand": "on-demand", "spot": "spot", "reserved": "reserved", "reserved-1y": "reserved"}

def parse_list(text: str | None) -> list[str]:
    return [p.strip() for p in str(text or "").split(",") if p.strip()]


def parse_pricing(text: str) -> str:
    key = str(text).strip().lower().replace("_", "-")
    if key not in PRICING_ALIASES:
        raise choice_error("pricing", text, ["on-demand", "spot", "reserved", "reserved-3y"])
    return PRICING_ALIASES[key]


# ------------------------------------------------------------------------------ energy / knobs


@functools.lru_cache(maxsize=2)
def energy_data() -> dict:
    from sizeup.catalog import DATA_DIR, read_yaml

    data = read_yaml(DATA_DIR / "energy.yaml") or {}
    for key in ("electricity_usd_per_kwh", "pue", "carbon_gco2_per_kwh", "gpu_power", "reliability", "storage"):
        if key not in data:
            raise SizeupError(f"catalog energy.yaml: missing section {key!r}")
    return data


def energy_value(section: str, key: str) -> tuple[float, str]:
    """(value, source) for e.g. ('reliability', 'restart_s') or ('pue', 'cloud')."""
    data = energy_data()[section]
    if "values" in data:
        entry = data["values"][key if key != "default" else data["default"]]
        value = entry.get("usd_per_kwh", entry.get("value"))
    else:
        entry = data[key]
        value = entry["value"]
    return float(value), str(entry.get("source", ""))


def cost_knobs(restart_s: float | None = None, checkpoints_kept: int | None = None, retain_s: float = 0.0,
               checkpoint_interval_s: float = 0.0, pue: float | None = None, gco2_per_kwh: float | None = None):
    from sizeup.core.cost import CostKnobs

    sources = {}
    vals = {}
    for name in ("gpu_mtbf_h", "restart_s", "checkpoint_write_bytes_per_s", "checkpoints_kept"):
        vals[name], sources[name] = energy_value("reliability", name)
    vals["log_bytes"], sources["log_bytes"] = energy_value("storage", "log_bytes")
    vals["power_fraction_of_tdp"], sources["power_fraction_of_tdp"] = energy_value("gpu_power", "fraction_of_tdp")
    vals["pue"], sources["pue"] = energy_value("pue", "cloud")
    vals["gco2_per_kwh"], sources["gco2_per_kwh"] = energy_value("carbon_gco2_per_kwh", "default")
    if restart_s is not None:
        vals["restart_s"], sources["restart_s"] = restart_s, "--restart-s"
    if checkpoints_kept is not None:
        vals["checkpoints_kept"], sources["checkpoints_kept"] = checkpoints_kept, "--checkpoints-kept"
    if pue is not None:
        vals["pue"], sources["pue"] = pue, "--pue"
    if gco2_per_kwh is not None:
        vals["gco2_per_kwh"], sources["gco2_per_kwh"] = gco2_per_kwh, "flag"
    vals["checkpoints_kept"] = int(vals["checkpoints_kept"])
    return CostKnobs(retain_s=retain_s, checkpoint_interval_s=checkpoint_interval_s, sources=sources, **vals)


# ------------------------------------------------------------------------------ offers


@dataclass(frozen=True)
class OfferOverrides:
    price_per_gpu_hour: float | None = None
    billing_increment_s: float | None = None
    min_billing_s: float | None = None
    preemption_rate_per_hour: float | None = None
    restart_s: float | None = None

    def apply(self, offer):
        changes: dict[str, Any] = {}
        if self.restart_s is not None:
            changes.update(restart_s=self.restart_s, restart_source="--restart-s")
        if self.price_per_gpu_hour is not None:
            changes.update(price_usd_per_hour=self.price_per_gpu_hour * offer.gpus_per_instance,
                           price_as_of=date.today().isoformat(), price_source="--price-per-gpu-hour")
        if self.billing_increment_s is not None:
            changes.update(billing_increment_s=self.billing_increment_s, billing_source="--billing-increment-s")
        if self.min_billing_s is not None:
            changes.update(min_billing_s=self.min_billing_s, billing_source="--min-billing-s")
        if self.preemption_rate_per_hour is not None and offer.pricing == "spot":
            changes.update(preemption_rate_per_hour=self.preemption_rate_per_hour, preemption_source="--preemption-rate")
        return offer.with_(**changes) if changes else offer


def offers_for(catalog: Any, platform_name: str, gpu_id: str, pricing: str,
               overrides: OfferOverrides = OfferOverrides(), strict: bool = True) -> list:
    """The offers of `platform_name` for one GPU kind and pricing kind (one per instance size).

    strict: a GPU or pricing kind the platform lacks is a SizeupError listing what it has;
    otherwise [] is returned. Spot offers get the platform's restart time.
    """
    platform = catalog.platform(platform_name)
    found = platform.offers(gpu_id, pricing, strict=strict)
    out = []
    for o in found:
        if o.pricing == "spot" and platform.restart_s > 0:
            o = o.with_(restart_s=platform.restart_s, restart_source=platform.restart_source)
        out.append(overrides.apply(o))
    return out


# ------------------------------------------------------------------------------ workload + setup


@dataclass
class Job:
    """One workload and training recipe, independent of GPU kind and count."""

    model: Any
    tokens: float
    dataset_tokens: float
    seq_len: int
    global_batch: int | None = None
    micro_batch: int | None = None
    precision: Any = None
    optimizer: Any = None
    sharding: Any = None
    recompute: Any = None
    peft: Any = None
    lora_rank: int | None = None
    label: str = ""
    samples: float | None = None
    tokens_per_sample: float | None = None
    epochs: float | None = None
    kernel: str = "fused"
    tree: Any = None
    """the parsed job tree (sizeup.job.Job): layout, recipe and execution the grid keeps for every GPU kind"""

    def with_(self, **kw) -> "Job":
        return replace(self, **kw)


@dataclass
class Evaluation:
    gpu: Any
    gpus: int
    fits: bool
    reasons: tuple[str, ...]
    setup: Any = None
    memory_bytes: float | None = None
    time_s: float | None = None
    tokens_per_s: float | None = None
    train: Any = None
    step: Any = None
    terms: tuple = ()
    notes: list[str] = field(default_factory=list)
    memory_terms: tuple = ()


def make_setup(job: Job, gpu: Any, gpus: int, micro_batch: int):
    """A TrainSetup for `gpus` GPUs of kind `gpu`: the job's layout and recipe (from its job tree), data parallel over
    the rest, micro-batch `micro_batch`, accumulation up to the job's global batch."""
    from sizeup.core.types import Precision, TrainSetup

    base = job.tree.setup if job.tree is not None else TrainSetup(seq_len=job.seq_len)
    precision = job.precision or base.precision
    if precision in (Precision.BF16_MIXED, Precision.BF16) and not gpu.supports_bf16:
        precision = Precision.FP16_MIXED
    group = base.tp * base.pp * base.cp
    dp = max(1, gpus // group)
    global_batch = job.global_batch or micro_batch * dp
    grad_accum = max(1, math.ceil(global_batch / (micro_batch * dp)))
    node = job.tree.cluster.gpus_per_node if job.tree is not None and "gpus_per_node" in job.tree.given else \
        max(1, int(getattr(gpu, "node_size", 8) or 8))
    return base.with_(gpus=gpus, micro_batch=micro_batch, grad_accum=grad_accum, precision=precision, seq_len=job.seq_len,
                      gpus_per_node=node, recompute=job.recompute or base.recompute, peft=job.peft or base.peft,
                      optimizer=job.optimizer or base.optimizer, sharding=job.sharding or base.sharding)


def tree_for(job: Job, gpu: Any, setup: Any):
    """The job tree of one grid cell: the job's tree on `gpu` with `setup`'s layout, batch and recipe."""
    return job.tree.with_gpu(gpu, setup.gpus).with_setup(setup)


def _memory(job: Job, setup, gpu):
    """Memory per GPU with the catalog's framework overheads (the same figure `sizeup memory` shows)."""
    from sizeup.pipeline import memory_for

    return memory_for(tree_for(job, gpu, setup))


def _train(job: Job, setup, gpu):
    from sizeup.pipeline import train_for

    tree = tree_for(job, gpu, setup)
    if tree.workload is None:
        from sizeup.core.workload import Workload

        tree = replace(tree, workload=Workload(tokens=job.tokens))
    return train_for(tree)


def _sharding_ladder(job: Job, gpu: Any, gpus: int) -> list:
    """Shardings to try, least first: the job's own when it pins --zero (or has no data parallelism), else the same
    ladder as `sizeup train` (sizeup.pipeline.fit_sharding: none -> ZeRO-1 -> 2 -> 3; FSDP frameworks:
    SHARD_GRAD_OP -> FULL_SHARD) from the job's default upward; None = keep the job's."""
    from sizeup.pipeline import sharding_ladder

    tree = job.tree
    base = make_setup(job, gpu, gpus, 1)
    if tree is None or "zero" in tree.given or base.dp < 2:
        return [None]
    ladder = sharding_ladder(tree.execution.framework)
    if base.sharding not in ladder:
        return [None]
    return [None] + list(ladder[ladder.index(base.sharding) + 1:])


def evaluate(job: Job, gpu: Any, gpus: int) -> Evaluation:
    """Does the job fit on `gpus` x `gpu`, and how long does it take? Picks the largest micro-batch
    (powers of two up to global_batch / gpus, or up to 8 without a global batch) that fits, like HF's
    auto_find_batch_size."""
    if job.micro_batch:
        candidates = [job.micro_batch]
    else:
        cap = max(1, job.global_batch // max(1, gpus)) if job.global_batch else 8
        candidates = [m for m in (32, 16, 8, 4, 2, 1) if m <= cap] or [1]
    from sizeup.core.types import Recompute

    # without a pinned --recompute, activation checkpointing is the next fix once micro-batch 1 does not fit
    recomputes = [job.recompute] if job.recompute else [Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL]
    chosen = None
    last_mem = None
    for rc in recomputes:
        for shard in _sharding_ladder(job, gpu, gpus):
            for mb in candidates:
                try:
                    setup = make_setup(job, gpu, gpus, mb).with_(recompute=rc)
                    if shard is not None:
                        setup = setup.with_(sharding=shard)
                    mem = _memory(job, setup, gpu)
                except SizeupError as exc:  # a layout this GPU count cannot hold (e.g. gpus not a multiple of tp*pp)
                    return Evaluation(gpu, gpus, False, (str(exc),), None, None)
                last_mem = (setup, mem)
                if mem.fits:
                    chosen = (setup, mem)
                    break
            if chosen is not None:
                break
        if chosen is not None:
            break
    if chosen is None:
        setup, mem = last_mem
        return Evaluation(gpu, gpus, False, tuple(mem.reasons) or ("does not fit in memory",), setup,
                          mem.peak_reserved_bytes, memory_terms=tuple(mem.terms))
    setup, mem = chosen
    train = _train(job, setup, gpu)
    return Evaluation(gpu, gpus, True, (), setup, mem.peak_reserved_bytes, float(train.total_time_s),
                      train.step.tokens_per_s, train, train.step, tuple(train.terms), [], tuple(mem.terms))


def job_files(job: Job, setup: Any) -> dict:
    """Bytes to store and download: checkpoint (resumable), final weights, dataset."""
    from sizeup.core.cost import checkpoint_size
    from sizeup.core.timing import model_inputs
    from sizeup.core.types import Peft

    mi = model_inputs(job.model, setup)
    ckpt = checkpoint_size(mi.params_total, mi.params_trainable, setup.precision, setup.optimizer, setup.peft,
                           ranks=setup.gpus)
    # final weights: adapters only with PEFT, else the full model in 16-bit (safetensors export)
    final = (mi.params_trainable if setup.peft != Peft.NONE else mi.params_total) * 2.0
    per_token, _ = energy_value("storage", "dataset_bytes_per_token")
    return {"checkpoint": ckpt, "final_weights_bytes": final, "dataset_bytes": job.dataset_tokens * per_token}


def price_row(job: Job, ev: Evaluation, offer: Any, knobs: Any):
    from sizeup.core.cost import estimate_cost

    files = job_files(job, ev.setup)
    return estimate_cost(ev.time_s, ev.gpus, offer, checkpoint_bytes=files["checkpoint"].bytes,
                         final_weights_bytes=files["final_weights_bytes"], dataset_bytes=files["dataset_bytes"],
                         gpu_tdp_w=getattr(ev.gpu, "tdp_w", None) or None, knobs=knobs), files


def instance_gpu(gpu: Any, offer: Any, catalog: Any = None) -> Any:
    """The GPU as wired in this instance: GPUs beyond one instance talk over the instance's network.

    node_size = min(GPU's NVLink domain, GPUs per instance); inter-node bandwidth from the platform's
    instance entry when the catalog gives one (e.g. 1-GPU cloud VMs without InfiniBand)."""
    node = max(1, min(int(gpu.node_size or 1), int(offer.gpus_per_instance)))
    inter = gpu.inter_node_bytes_per_s
    if catalog is not None:
        try:
            inst = catalog.platform(offer.platform).instance(offer.instance)
            inter = inst.inter_node_bytes_per_s or inter
        except Exception:
            pass
    if node == gpu.node_size and inter == gpu.inter_node_bytes_per_s:
        return gpu
    return replace(gpu, node_size=node, inter_node_bytes_per_s=inter)


def best_offer(job: Job, ev: Evaluation, offers: list, knobs: Any, catalog: Any = None,
               cache: dict | None = None, retime: bool = True):
    """(est, files, ev): the cheapest instance size for this GPU count (8 GPUs may be one 8-GPU instance or
    eight 1-GPU instances; the latter is re-timed with the instances' network between GPUs)."""
    cache = {} if cache is None else cache
    best = None
    tp = getattr(ev.setup, "tp", 1) if ev.setup is not None else 1
    for offer in offers:
        if tp > 1 and offer.gpus_per_instance < min(tp, ev.gpus):
            continue  # a tensor-parallel group stays inside one instance (NVLink); smaller instances cannot hold it
        run = ev
        if retime and (ev.gpus > offer.gpus_per_instance or ev.gpus > (ev.gpu.node_size or 1)):
            g2 = instance_gpu(ev.gpu, offer, catalog)
            if g2 is not ev.gpu:
                key = (g2.id, ev.gpus, g2.node_size, g2.inter_node_bytes_per_s)
                if key not in cache:
                    cache[key] = evaluate(job, g2, ev.gpus)
                run = cache[key]
                if not run.fits:
                    continue
        est, files = price_row(job, run, offer, knobs)
        if best is None or est.total_cost_usd < best[0].total_cost_usd:
            best = (est, files, run)
    return best


# ------------------------------------------------------------------------------ cost for `sizeup train`


def cost_section(train_estimate: Any, platform: str, pricing: str, gpu: Any, *, model: Any = None,
                 setup: Any = None, tokens: float | None = None, dataset_tokens: float | None = None,
                 gpus: int | None = None, catalog: Any = None, overrides: OfferOverrides = OfferOverrides(),
                 knobs: Any = None, today: date | None = None, max_price_age_days: int = 180) -> dict:
    """JSON fields with the cost of a `TrainEstimate` on a platform (seed 004 names + sizeup names).

    `gpu` is a GpuSpec (or a GPU name). Returns throughput_tokens_per_sec, estimated_hours,
    cost_breakdown {compute_cost, storage_cost, egress_cost, total_cost} and the project's own
    fields (billed_s, instances, price_usd_per_hour, price_as_of, ...), plus warnings and terms.
    """
    from sizeup.catalog import load_catalog
    from sizeup.core.cost import price_age_warning

    catalog = catalog or load_catalog()
    gpu = catalog.gpu(gpu) if isinstance(gpu, str) else gpu
    setup = setup or getattr(train_estimate, "setup", None)
    model = model or getattr(train_estimate, "model", None)
    gpus = gpus or (setup.gpus if setup is not None else 1)
    pricing = parse_pricing(pricing)
    offers = offers_for(catalog, platform, gpu.id, pricing, overrides)
    knobs = knobs or cost_knobs()
    time_s = float(train_estimate.total_time_s)
    step = getattr(train_estimate, "step", None)
    if tokens is None:
        tokens = float(getattr(getattr(train_estimate, "workload", None), "tokens", 0.0) or 0.0)
    job = Job(model=model, tokens=tokens, dataset_tokens=dataset_tokens if dataset_tokens is not None else tokens,
              seq_len=setup.seq_len if setup is not None else 2048)
    ev = Evaluation(gpu, gpus, True, (), setup, None, time_s, getattr(step, "tokens_per_s", None), train_estimate, step)
    if model is not None and setup is not None:
        # the caller's time estimate is kept as is (no re-timing per instance size)
        best = best_offer(job, ev, offers, knobs, catalog, retime=False)
        if best is None:
            sizes = sorted({o.gpus_per_instance for o in offers})
            raise SizeupError(f"{platform} has no {gpu.id} instance that holds a tensor-parallel group of {setup.tp} "
                              f"GPUs (instance sizes: {', '.join(map(str, sizes))} GPUs); lower --tp or pick another "
                              "platform")
        est, files, _ = best
    else:
        from sizeup.core.cost import estimate_cost

        est = min((estimate_cost(time_s, gpus, o, knobs=knobs) for o in offers), key=lambda e: e.total_cost_usd)
        files = None
    out = cost_dict(est, gpu)
    out["throughput_tokens_per_sec"] = float(getattr(step, "tokens_per_s", 0.0) or 0.0) or (
        tokens / time_s if time_s > 0 and tokens else None)
    warning = price_age_warning(next(o for o in offers if o.instance == est.instance), today or date.today(),
                                max_price_age_days)
    out["warnings"] = [warning] if warning else []
    if files:
        out["checkpoint_bytes"] = files["checkpoint"].bytes
        out["final_weights_bytes"] = files["final_weights_bytes"]
        out["dataset_bytes"] = files["dataset_bytes"]
    out["explain"] = [t.to_dict() for t in est.terms]
    return out


def cost_dict(est: Any, gpu: Any) -> dict:
    from sizeup.core.cost import usd_per_tbps_hour

    return {
        "platform": est.platform, "instance": est.instance, "gpu": est.gpu_id, "pricing": est.pricing,
        "gpus": est.gpus, "instances": est.instances, "gpus_paid": est.gpus_paid,
        "estimated_hours": round(est.wall_clock_s / 3600.0, 4),
        "cost_breakdown": {"compute_cost": round(est.compute_cost_usd, 4),
                           "storage_cost": round(est.storage_cost_usd, 4) if est.storage_cost_known else None,
                           "egress_cost": round(est.egress_cost_usd, 4),
                           "total_cost": round(est.total_cost_usd, 4)},
        "compute_s": est.compute_s, "wall_clock_s": est.wall_clock_s, "billed_s": est.billed_s,
        "spot_overhead_s": est.spot_overhead_s, "expected_interruptions": est.expected_interruptions,
        "checkpoint_interval_s": est.checkpoint_interval_s,
        "price_usd_per_hour": est.price_usd_per_hour, "price_usd_per_gpu_hour": est.price_usd_per_gpu_hour,
        "usd_per_tbps_hour": usd_per_tbps_hour(est.price_usd_per_gpu_hour, getattr(gpu, "hbm_bytes_per_s", 0.0)),
        "price_as_of": est.price_as_of, "price_source": est.price_source,
        "compute_cost_usd": est.compute_cost_usd,
        "storage_cost_usd": est.storage_cost_usd if est.storage_cost_known else None,
        "storage_cost_unknown_reason": None if est.storage_cost_known else f"{est.platform}: no storage price in the "
                                                                          "catalog; total excludes storage",
        "egress_cost_usd": est.egress_cost_usd, "total_cost_usd": est.total_cost_usd,
        "energy_kwh": est.energy_kwh, "co2_kg": est.co2_kg, "feasible": est.feasible, "reasons": list(est.reasons),
    }


# ------------------------------------------------------------------------------ scenario / job from flags


def build_job(target: str | None, model: str | None, flags: dict) -> tuple[Job, dict]:
    """(Job, merged values) from a model name or scenario file plus flags (flags win), parsed by the one job parser
    (sizeup.job.build_job) on no particular GPU; GPU kinds and counts come from the grid."""
    from sizeup.job import build_job as build_tree, collect_values
    from sizeup.job.flags import JOB_FLAG_NAMES

    values, scenario = collect_values(target, model, flags)
    merged = {**scenario.other, **values}
    job_values = {k: v for k, v in values.items() if k in JOB_FLAG_NAMES or k == "model"}
    for key in ("gpu", "gpus", "platform", "pricing"):  # the grid's axes: lists here
        job_values.pop(key, None)
    from sizeup.job.parse import parse_count

    # the tree on no particular GPU kind or count: the smallest count that holds the layout (tp x pp x cp)
    job_values["gpus"] = math.prod(parse_count(k, values.get(k)) or 1 for k in ("tp", "pp", "cp"))
    tree = build_tree(job_values, need_gpu=False, need_workload=True)
    w = tree.workload
    tokens = w.total_tokens
    dataset_tokens = tokens / w.epochs
    pinned_recompute = "recompute" in tree.given
    job = Job(
        model=tree.model, tokens=tokens, dataset_tokens=dataset_tokens, seq_len=tree.batch.seq_len,
        global_batch=tree.batch.global_batch if ("global_batch" in tree.given or "grad_accum" in tree.given) else None,
        micro_batch=tree.batch.micro_batch if "micro_batch" in tree.given else None,
        precision=tree.precision.precision if "precision" in tree.given else None,
        optimizer=tree.optimizer.kind, sharding=tree.parallelism.sharding,
        recompute=tree.recompute.policy if pinned_recompute else None, peft=tree.peft.method,
        lora_rank=tree.peft.rank, label=str(values.get("name") or scenario.name or tree.model.id),
        samples=w.samples, tokens_per_sample=w.tokens_per_sample, epochs=w.epochs,
        kernel=tree.execution.memory_kernel, tree=tree,
    )
    return job, merged


def _kernel(value: Any) -> str:
    if value is None:
        return "fused"
    key = str(value).strip().lower()
    if key not in ("fused", "hf-eager", "eager"):
        raise choice_error("kernel", value, ["fused", "hf-eager"])
    return "hf-eager" if key == "eager" else key


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return parse_list(str(value))


def gpu_counts(value: Any) -> list[int]:
    out = []
    for item in _as_list(value) or ["1"]:
        try:
            n = int(item)
        except ValueError:
            raise SizeupError(f"--gpus must be whole numbers separated by commas (1,2,8), got {item!r}") from None
        if n < 1:
            raise SizeupError(f"--gpus must be >= 1, got {n}")
        out.append(n)
    return sorted(set(out))


# ------------------------------------------------------------------------------ the grid


@dataclass
class Row:
    est: Any
    ev: Evaluation
    files: dict
    marks: list[str] = field(default_factory=list)
    excluded: str = ""
    intervals: dict = field(default_factory=dict)
    """P10/P50/P90 of the row's throughput, wall-clock, memory and total cost (sizeup.pipeline.figure_intervals)."""


def pareto(rows: list[Row]) -> list[Row]:
    """Rows not dominated in (total cost, wall-clock): no other row is cheaper AND faster (or equal)."""
    out = []
    for r in rows:
        dominated = any(
            (o.est.total_cost_usd <= r.est.total_cost_usd and o.est.wall_clock_s <= r.est.wall_clock_s)
            and (o.est.total_cost_usd < r.est.total_cost_usd or o.est.wall_clock_s < r.est.wall_clock_s)
            for o in rows if o is not r)
        if not dominated:
            out.append(r)
    return out


def run_grid(job: Job, gpu_names: list[str], platforms: list[str], pricings: list[str], counts: list[int],
             catalog: Any, overrides: OfferOverrides, knobs: Any) -> tuple[list[Row], list[tuple], list[str]]:
    """(priced rows, not-fitting [(gpu, gpus, reasons, memory)], notes)."""
    gpus = [catalog.gpu(g) for g in gpu_names]
    strict = len(gpus) == 1 and len(platforms) == 1
    rows: list[Row] = []
    unfit: list[tuple] = []
    notes: list[str] = []
    not_offered: list[str] = []
    for gpu in gpus:
        offers_by_key = {}
        for p in platforms:
            for kind in pricings:
                found = offers_for(catalog, p, gpu.id, kind, overrides, strict=strict)
                if found:
                    offers_by_key[(p, kind)] = found
                else:
                    not_offered.append(f"{gpu.id} on {p} ({kind})")
        if not offers_by_key:
            continue
        for n in counts:
            ev = evaluate(job, gpu, n)
            for note in ev.notes:
                if note not in notes:
                    notes.append(note)
            if not ev.fits:
                unfit.append((gpu.id, n, ev.reasons, ev.memory_bytes))
                continue
            cache: dict = {}
            for (p, kind), offers in offers_by_key.items():
                best = best_offer(job, ev, offers, knobs, catalog, cache)
                if best is not None:
                    rows.append(Row(best[0], best[2], best[1], intervals=row_intervals(job, best[2], best[0])))
    if not_offered:
        grouped: dict[str, list[str]] = {}
        for item in not_offered:
            what, _, where = item.partition(" on ")
            grouped.setdefault(what, []).append(where)
        notes.append("not offered: " + "; ".join(f"{g} on {', '.join(w)}" for g, w in grouped.items()))
    return rows, unfit, notes


def mark_rows(rows: list[Row], deadline_s: float | None, budget_usd: float | None) -> list[Row]:
    ok = []
    for r in rows:
        if not r.est.feasible:
            r.excluded = "; ".join(r.est.reasons)
        elif deadline_s is not None and r.est.wall_clock_s > deadline_s:
            r.excluded = f"misses deadline ({r.est.wall_clock_s / 3600:.3g} h > {deadline_s / 3600:.3g} h)"
        elif budget_usd is not None and r.est.total_cost_usd > budget_usd:
            r.excluded = f"over budget (${r.est.total_cost_usd:,.2f} > ${budget_usd:,.2f})"
        else:
            ok.append(r)
    if ok:
        min(ok, key=lambda r: r.est.total_cost_usd).marks.append("cheapest")
        min(ok, key=lambda r: r.est.wall_clock_s).marks.append("fastest")
        for r in pareto(ok):
            r.marks.append("pareto")
    return ok


def row_intervals(job: Job, ev: Evaluation, est: Any) -> dict:
    """P10/P50/P90 of a priced row (none for a run that cannot make progress: no invented time or price)."""
    from sizeup.pipeline import figure_intervals

    if not est.feasible or ev.setup is None:
        return {}
    tree = job.tree
    timing_kernel = tree.execution.timing_kernel if tree is not None else "fused"
    figures = {"tokens_per_s": ("throughput", ev.tokens_per_s), "wall_clock_s": ("time", est.wall_clock_s),
               "peak_reserved_bytes": ("memory", ev.memory_bytes)}
    return figure_intervals(ev.setup, job.model.id, getattr(ev.gpu, "id", ""), timing_kernel, job.kernel, figures,
                            (est.compute_cost_usd, est.total_cost_usd, "wall_clock_s"))


def row_dict(r: Row) -> dict:
    d = cost_dict(r.est, r.ev.gpu)
    d.update({
        "throughput_tokens_per_sec": r.ev.tokens_per_s,
        "precision": str(r.ev.setup.precision), "peft": str(r.ev.setup.peft), "micro_batch": r.ev.setup.micro_batch,
        "recompute": str(r.ev.setup.recompute), "sharding": r.ev.setup.sharding.value,
        "grad_accum": r.ev.setup.grad_accum, "memory_reserved_bytes": r.ev.memory_bytes,
        "checkpoint_bytes": r.files["checkpoint"].bytes, "marks": list(r.marks), "excluded": r.excluded or None,
        "intervals": r.intervals or None,
    })
    if not r.est.feasible:  # no invented time or price
        d.update(estimated_hours=None, cost_breakdown=None, wall_clock_s=None, billed_s=None, compute_cost_usd=None,
                 storage_cost_usd=None, egress_cost_usd=None, total_cost_usd=None, energy_kwh=None, co2_kg=None)
    return d


def table_row(r: Row) -> tuple:
    from sizeup.units import format_usd

    e = r.est
    if not e.feasible:  # no time or price is invented for a run that cannot make progress
        st = r.ev.setup
        return (e.platform, e.gpu_id, f"{e.gpus}", e.pricing, f"mb {st.micro_batch}", f"{e.price_usd_per_gpu_hour:.3g}",
                "-", f"{r.ev.tokens_per_s:,.0f}" if r.ev.tokens_per_s else "-", "-", "-", "-", "-",
                e.price_as_of.split(" ")[0][:10], "infeasible: " + "; ".join(e.reasons))
    tbps = cost_dict(e, r.ev.gpu)["usd_per_tbps_hour"]
    from sizeup.report import Num

    # typed: the GPU count is the raw number (CSV `gpus`), the paid whole instances stay in the display
    paid = Num.shown(e.gpus, f"{e.gpus}" if e.gpus_paid == e.gpus else f"{e.gpus} ({e.gpus_paid} paid)")
    st = r.ev.setup
    fit = f"mb {st.micro_batch}" + ("" if str(st.recompute) == "none" else f", {st.recompute} recompute") + \
        ("" if st.sharding.value == "none" else f", {st.sharding.value}")
    return (
        e.platform, e.gpu_id, paid, e.pricing, fit,
        f"{e.price_usd_per_gpu_hour:.3g}", f"{tbps:.2f}" if tbps is not None else "-",
        f"{r.ev.tokens_per_s:,.0f}" if r.ev.tokens_per_s else "-",
        f"{e.wall_clock_s / 3600:.3g}", f"{e.billed_s / 3600:.3g}",
        format_usd(e.compute_cost_usd), format_usd(e.total_cost_usd),
        e.price_as_of.split(" ")[0][:10], ", ".join(r.marks) or r.excluded,
    )


ROW_TERM_NAMES = ("throughput/tokens_per_s", "time/wall_clock", "cost/billed_time", "cost/compute", "cost/storage",
                  "cost/egress", "cost/total")


def price_terms(est: Any, gpu: Any) -> list:
    """Terms for the table's $/GPU-h and $/TB/s-h columns (prices are catalog inputs with as_of + source)."""
    from sizeup.core.cost import usd_per_tbps_hour
    from sizeup.core.explain import Term

    gpus_per_instance = est.price_usd_per_hour / est.price_usd_per_gpu_hour if est.price_usd_per_gpu_hour else 1
    out = [Term("price/usd_per_gpu_hour", est.price_usd_per_gpu_hour, "USD/GPU-h", "instance_price / gpus_per_instance",
                {"instance_price": est.price_usd_per_hour, "gpus_per_instance": gpus_per_instance,
                 "instance": est.instance, "pricing": est.pricing, "as_of": est.price_as_of},
                f"{est.platform} price ({est.price_source})")]
    hbm = getattr(gpu, "hbm_bytes_per_s", 0.0)
    tbps = usd_per_tbps_hour(est.price_usd_per_gpu_hour, hbm)
    if tbps is not None:
        out.append(Term("price/usd_per_tbps_hour", tbps, "USD/(TB/s)-h", "usd_per_gpu_hour / (hbm_bytes_per_s / 1e12)",
                        {"usd_per_gpu_hour": est.price_usd_per_gpu_hour, "hbm_bytes_per_s": hbm},
                        "seed 003 (cost per unit of memory bandwidth); HBM bandwidth from the GPU catalog"))
    return out


def row_terms(r: Row) -> list:
    """The figures one compare row shows, each explained, named '<platform>/<gpus>x<gpu>/<pricing>: <figure>'."""
    from dataclasses import replace as _replace

    label = f"{r.est.platform}/{r.est.gpus}x{r.est.gpu_id}/{r.est.pricing}"
    picked = [t for t in tuple(r.ev.terms) + tuple(r.est.terms) if t.name in ROW_TERM_NAMES]
    return [_replace(t, name=f"{label}: {t.name}") for t in price_terms(r.est, r.ev.gpu) + picked]


TABLE_COLUMNS = ["platform", "gpu", "gpus", "pricing", "fits with", "$/GPU-h", "$/TB/s-h", "tok/s", "hours",
                 "billed h", "compute", "total", "as_of", "marks"]


# ------------------------------------------------------------------------------ impact


IMPACT_CONFIGS = (
    ("no optimisation", "fp32", "none"),
    ("mixed precision only", "fp16-mixed", "none"),
    ("PEFT only", "fp32", "lora"),
    ("both", "fp16-mixed", "lora"),
)


def impact_rows(job: Job, gpu: Any, gpus: int, offers: list, knobs: Any, terms_out: list | None = None) -> list[dict]:
    """Seed 004's optimisation-impact table with the project's physics (memory fit first).

    terms_out: when a list, the Terms of each row's figures are appended to it (named '<configuration>: ...')."""
    from dataclasses import replace as _replace

    from sizeup.core.explain import Term
    from sizeup.core.types import Peft, Precision

    out = []
    row_terms_by_label: dict[str, list] = {}
    for label, prec, peft in IMPACT_CONFIGS:
        j = job.with_(precision=Precision(prec), peft=Peft(peft))
        ev = evaluate(j, gpu, gpus)
        row_terms_by_label[label] = [_replace(t, name=f"{label}: {t.name}") for t in ev.memory_terms
                                     if t.name == "memory/peak_reserved"]
        row: dict[str, Any] = {"configuration": label, "precision": prec, "peft": peft, "fits": ev.fits,
                               "memory_reserved_bytes": ev.memory_bytes, "reasons": list(ev.reasons)}
        if ev.fits:
            best = best_offer(j, ev, offers, knobs)
            if best is None:
                row.update(fits=False, reasons=["no instance of this size fits"])
                out.append(row)
                continue
            est, _, ev = best
            row.update(hours=est.wall_clock_s / 3600, total_cost_usd=est.total_cost_usd,
                       throughput_tokens_per_sec=ev.tokens_per_s, platform=est.platform, instance=est.instance)
            row_terms_by_label[label] += [_replace(t, name=f"{label}: {t.name}")
                                          for t in tuple(ev.terms) + tuple(est.terms)
                                          if t.name in ("throughput/tokens_per_s", "time/wall_clock", "cost/total")]
        out.append(row)
    fitting = [r for r in out if r["fits"]]
    for r in fitting:
        slowest_h = max(x["hours"] for x in fitting)
        dearest_usd = max(x["total_cost_usd"] for x in fitting)
        r["speedup_vs_slowest"] = slowest_h / r["hours"] if r["hours"] else None
        r["savings_vs_most_expensive_usd"] = dearest_usd - r["total_cost_usd"]
        label = r["configuration"]
        if r["speedup_vs_slowest"] is not None:
            row_terms_by_label[label].append(Term(
                f"{label}: impact/speedup", r["speedup_vs_slowest"], "x", "hours_slowest / hours",
                {"hours_slowest": slowest_h, "hours": r["hours"]}, "wall-clock of the slowest configuration that fits"))
        row_terms_by_label[label].append(Term(
            f"{label}: impact/savings", r["savings_vs_most_expensive_usd"], "USD", "cost_most_expensive - cost",
            {"cost_most_expensive": dearest_usd, "cost": r["total_cost_usd"]},
            "total cost of the most expensive configuration that fits"))
    if terms_out is not None:
        for label, _, _ in IMPACT_CONFIGS:
            terms_out.extend(row_terms_by_label[label])
    return out




def job_cost(train_estimate: Any, job: Any, catalog: Any = None) -> dict:
    """The cost of one job's run on its platform (`job.pricing`), with the user's price/billing overrides: the one
    pricing path of `sizeup train`, the pipeline and audit."""
    from sizeup.catalog import load_catalog

    pr = job.pricing
    if catalog is None:
        catalog = load_catalog(extra_files=pr.catalogs) if pr.catalogs else load_catalog()
    overrides = OfferOverrides(pr.price_per_gpu_hour, pr.billing_increment_s, pr.min_billing_s, pr.preemption_rate,
                               pr.restart_s)
    knobs = cost_knobs(restart_s=pr.restart_s, checkpoints_kept=pr.checkpoints_kept, retain_s=pr.retain_s)
    w = job.workload
    return cost_section(train_estimate, pr.platform, pr.pricing, job.gpu, model=job.model, setup=job.setup,
                        tokens=train_estimate.tokens, dataset_tokens=w.total_tokens / w.epochs if w else None,
                        catalog=catalog, overrides=overrides, knobs=knobs, max_price_age_days=pr.max_price_age_days)


def check_offers(job: Any, catalog: Any = None) -> None:
    """The job's platform rents its GPU with its pricing kind (one line listing what it has, otherwise): checked
    before anything is estimated, so a plan that does not fit is not the only answer to a typo."""
    from sizeup.catalog import load_catalog

    pr = job.pricing
    if not pr.platform or job.gpu is None:
        return
    catalog = catalog or (load_catalog(extra_files=pr.catalogs) if pr.catalogs else load_catalog())
    offers_for(catalog, pr.platform, job.gpu.id, parse_pricing(pr.pricing))
