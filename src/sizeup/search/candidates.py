"""Legal training plans as numpy arrays (struct of arrays), built by vectorised cartesian products.

Like Calculon's `optimal_execution.py` generators, only legal plans are produced; unlike it, nothing loops over
plans in Python: the outer layout grid (GPU count x tp x pp x cp x ep) is a `np.meshgrid`, the inner strategy
grid (sharding x micro-batch x recompute x offload x global batch) is expanded with `np.repeat`/`np.tile`, and
each legality rule is one boolean mask. Every rule counts how many combinations it removed ("pruned by rule").

Legality rules (sources):
  tp | attention heads, and tp | KV heads or KV heads | tp (replicated KV)   Megatron-LM arguments.py checks;
                                                                             sizeup.core.memory.check_setup
  tp <= GPUs per node unless allowed (TP all-reduces every layer: NVLink)   Megatron-LM / NeMo guidance
  pp | layers (uneven stages only when explicitly allowed)                   Megatron-LM arguments.py
  cp | seq                                                                   Megatron-LM context parallel
  ep | experts, ep | dp, MoE only                                            Megatron-LM MoE; check_setup
  tp*pp*cp | GPUs, dp = GPUs / (tp*pp*cp)                                    torchtitan ParallelDims._validate
  global batch = micro-batch x dp x grad accumulation                        DeepSpeed train_batch_size rule
  ZeRO-2/3 are incompatible with pipeline parallelism                        DeepSpeed pipeline docs
  optimizer CPU offload needs a sharded optimizer (ZeRO / FSDP / dist-opt)   ZeRO-Offload (Ren et al. 2021)
  sharding with dp = 1 and hybrid FSDP inside one node duplicate other plans (redundant, removed)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from sizeup.core.types import ModelArch, Offload, Recompute, Sharding

SHARDINGS: tuple[Sharding, ...] = tuple(Sharding)
# the plan search tries the three classic policies; op-sac / attention-only / layer-fraction are framework-specific
# choices a job states (TrainSetup.recompute) rather than search dimensions
RECOMPUTES: tuple[Recompute, ...] = (Recompute.NONE, Recompute.SELECTIVE, Recompute.FULL)
OFFLOADS: tuple[Offload, ...] = (Offload.NONE, Offload.CPU)
DEFAULT_MICRO_BATCHES = (1, 2, 4, 8)
DEFAULT_MAX_CP = 8

RULES = (
    "tp must divide the attention heads",
    "tp must divide the KV heads (or be a multiple of them)",
    "tp must stay inside one node",
    "pp must divide the layers",
    "pp cannot exceed the layers",
    "cp must divide the sequence length",
    "ep needs a mixture-of-experts model",
    "ep must divide the experts",
    "tp*pp*cp must divide the GPU count",
    "ep must divide the data-parallel degree",
    "outside --min-gpus/--max-gpus",
    "global batch must be a multiple of micro-batch x dp",
    "sharding with dp = 1 is the same as none",
    "hybrid FSDP inside one node is the same as fsdp-full",
    "ZeRO-2/3 are incompatible with pipeline parallelism (DeepSpeed)",
    "CPU offload needs a sharded optimizer",
)


@dataclass(frozen=True)
class SearchSpace:
    """What the search may vary. None = the default range (see `layout_grid`)."""

    seq_len: int
    global_batches: tuple[int, ...]
    """Sequences per optimizer step (kept fixed: grad accumulation = B / (b * dp))."""
    gpu_counts: tuple[int, ...] | None = None
    max_gpus: int = 1024
    min_gpus: int = 1
    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    cp: tuple[int, ...] | None = None
    ep: tuple[int, ...] | None = None
    micro_batches: tuple[int, ...] = DEFAULT_MICRO_BATCHES
    shardings: tuple[Sharding, ...] = SHARDINGS
    recomputes: tuple[Recompute, ...] = RECOMPUTES
    offloads: tuple[Offload, ...] = OFFLOADS
    max_cp: int = DEFAULT_MAX_CP
    allow_cross_node_tp: bool = False
    uneven_pp: bool = False


@dataclass(frozen=True)
class Candidates:
    """Legal plans, one entry per plan in every array (int64 degrees, small-int strategy indices).

    sharding / recompute / offload are indices into SHARDINGS / RECOMPUTES / OFFLOADS.
    `pruned` counts, per rule, the combinations of the full grid that rule removed; `considered` is the grid size.
    """

    gpus: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    cp: np.ndarray
    ep: np.ndarray
    dp: np.ndarray
    micro_batch: np.ndarray
    grad_accum: np.ndarray
    global_batch: np.ndarray
    sharding: np.ndarray
    recompute: np.ndarray
    offload: np.ndarray
    pruned: Mapping[str, int] = field(default_factory=dict)
    considered: int = 0

    ARRAYS = ("gpus", "tp", "pp", "cp", "ep", "dp", "micro_batch", "grad_accum", "global_batch",
              "sharding", "recompute", "offload")

    @property
    def size(self) -> int:
        return int(self.gpus.shape[0])

    def take(self, index) -> "Candidates":
        return Candidates(**{name: getattr(self, name)[index] for name in self.ARRAYS},
                          pruned=self.pruned, considered=self.considered)

    def chunks(self, chunk: int):
        for start in range(0, self.size, chunk):
            yield start, self.take(slice(start, start + chunk))


def _powers_of_two(limit: int) -> list[int]:
    out, v = [], 1
    while v <= limit:
        out.append(v)
        v *= 2
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def default_gpu_counts(node_size: int, max_gpus: int, min_gpus: int = 1,
                       instance_sizes: tuple[int, ...] = ()) -> tuple[int, ...]:
    """GPU counts to try: whole instances when instance sizes are given (a platform is named), else powers of
    two up to a node plus every multiple of the node size, up to max_gpus."""
    counts: set[int] = set()
    if instance_sizes:
        for g in set(instance_sizes):
            # several instances only when each is a full node (the GPUs' inter-node network); else one instance
            counts.update(range(g, max_gpus + 1, g) if g >= max(1, node_size) else [g])
    else:
        counts.update(_powers_of_two(max_gpus))
        counts.update(range(max(1, node_size), max_gpus + 1, max(1, node_size)))
    return tuple(sorted(c for c in counts if min_gpus <= c <= max_gpus))


def layout_values(model: ModelArch, space: SearchSpace, node_size: int) -> dict[str, list[int]]:
    """Values each degree may take before the legality rules (the rules then remove the illegal ones)."""
    L = model.num_layers
    tp = list(space.tp) if space.tp else _powers_of_two(max(1, model.num_heads))
    if space.pp:
        pp = list(space.pp)
    else:
        pp = sorted(set(_divisors(L)) | set(_powers_of_two(L)))
    cp = list(space.cp) if space.cp else _powers_of_two(max(1, space.max_cp))
    if space.ep:
        ep = list(space.ep)
    elif model.is_moe:
        ep = sorted(set(_powers_of_two(model.num_experts)) | set(_divisors(model.num_experts)))
    else:
        ep = [1]
    return {"tp": tp, "pp": pp, "cp": cp, "ep": ep}


def generate(model: ModelArch, space: SearchSpace, node_size: int, gpu_counts: tuple[int, ...]) -> Candidates:
    """Every legal plan of `space` on GPUs with `node_size` GPUs per node and the given GPU counts."""
    vals = layout_values(model, space, node_size)
    inner = (len(space.shardings) * len(space.micro_batches) * len(space.recomputes) * len(space.offloads)
             * len(space.global_batches))
    G, T, P, C, E = np.meshgrid(np.asarray(gpu_counts, dtype=np.int64), np.asarray(vals["tp"], dtype=np.int64),
                                np.asarray(vals["pp"], dtype=np.int64), np.asarray(vals["cp"], dtype=np.int64),
                                np.asarray(vals["ep"], dtype=np.int64), indexing="ij")
    G, T, P, C, E = (x.ravel() for x in (G, T, P, C, E))
    considered = int(G.size) * inner
    pruned: dict[str, int] = {}
    keep = np.ones(G.size, dtype=bool)

    def rule(name: str, bad: np.ndarray, multiplicity: int) -> None:
        nonlocal keep
        removed = keep & bad
        if removed.any():
            pruned[name] = pruned.get(name, 0) + int(removed.sum()) * multiplicity
        keep &= ~bad

    a, k, L = model.num_heads, max(1, model.num_kv_heads), model.num_layers
    rule(RULES[0], a % T != 0, inner)
    if not model.is_mla:
        rule(RULES[1], (T > 1) & (k % T != 0) & (T % k != 0), inner)
    if not space.allow_cross_node_tp:
        rule(RULES[2], T > max(1, node_size), inner)
    if space.uneven_pp:
        rule(RULES[4], P > L, inner)
    else:
        rule(RULES[3], L % P != 0, inner)
    rule(RULES[5], space.seq_len % C != 0, inner)
    if not model.is_moe:
        rule(RULES[6], E > 1, inner)
    else:
        rule(RULES[7], model.num_experts % E != 0, inner)
    unit = T * P * C
    rule(RULES[8], G % unit != 0, inner)
    D = np.where(G % unit == 0, G // np.maximum(unit, 1), 0)
    rule(RULES[9], (E > 1) & ((D == 0) | (D % E != 0)), inner)
    rule(RULES[10], (G < space.min_gpus) | (G > space.max_gpus), inner)
    G, T, P, C, E, D = (x[keep] for x in (G, T, P, C, E, D))

    # ---- inner strategy grid per surviving layout, factorised so illegal combinations are never built:
    #      (layout x micro-batch x global batch) for the batch rule, (layout x sharding x offload) for the
    #      sharding rules, then their per-layout product x recompute.
    S = np.asarray([SHARDINGS.index(s) for s in space.shardings], dtype=np.int8)
    B = np.asarray(space.micro_batches, dtype=np.int64)
    R = np.asarray([RECOMPUTES.index(r) for r in space.recomputes], dtype=np.int8)
    O = np.asarray([OFFLOADS.index(o) for o in space.offloads], dtype=np.int8)
    GB = np.asarray(space.global_batches, dtype=np.int64)
    n_lay = G.size
    # A: layout x micro-batch x global batch
    la, bi, gi = (x.ravel() for x in np.meshgrid(np.arange(n_lay), np.arange(B.size), np.arange(GB.size),
                                                 indexing="ij"))
    bad_a = GB[gi] % (B[bi] * D[la]) != 0
    pruned_a = int(bad_a.sum()) * S.size * R.size * O.size
    if pruned_a:
        pruned[RULES[11]] = pruned.get(RULES[11], 0) + pruned_a
    la, bi, gi = la[~bad_a], bi[~bad_a], gi[~bad_a]
    n_a = np.bincount(la, minlength=n_lay)
    # B: layout x sharding x offload, rules applied in order on the survivors of the batch rule
    lb, si, oi = (x.ravel() for x in np.meshgrid(np.arange(n_lay), np.arange(S.size), np.arange(O.size),
                                                 indexing="ij"))
    sh, off = S[si], O[oi]
    keep_b = np.ones(lb.size, dtype=bool)
    none_i, hybrid_i = SHARDINGS.index(Sharding.NONE), SHARDINGS.index(Sharding.FSDP_HYBRID)
    z23 = np.isin(sh, [SHARDINGS.index(Sharding.ZERO2), SHARDINGS.index(Sharding.ZERO3)])
    weight = n_a[lb] * R.size  # combinations each (layout, sharding, offload) entry stands for
    for name, bad in ((RULES[12], (sh != none_i) & (D[lb] == 1)),
                      (RULES[13], (sh == hybrid_i) & (G[lb] <= max(1, node_size))),
                      (RULES[14], z23 & (P[lb] > 1)),
                      (RULES[15], (off != OFFLOADS.index(Offload.NONE)) & (sh == none_i))):
        removed = keep_b & bad
        n = int(weight[removed].sum())
        if n:
            pruned[name] = pruned.get(name, 0) + n
        keep_b &= ~bad
    lb, sh, off = lb[keep_b], sh[keep_b], off[keep_b]
    n_b = np.bincount(lb, minlength=n_lay)
    start_b = np.concatenate(([0], np.cumsum(n_b)[:-1]))  # lb is sorted by layout (meshgrid order)
    # A x B within each layout: repeat each A entry n_b[layout] times, walk that layout's B block
    reps = n_b[la]
    a_idx = np.repeat(np.arange(la.size), reps)
    offset = np.arange(a_idx.size) - np.repeat(np.cumsum(reps) - reps, reps)
    b_idx = start_b[la[a_idx]] + offset
    # x recompute
    a_idx, b_idx = np.repeat(a_idx, R.size), np.repeat(b_idx, R.size)
    rc = np.tile(R, int(reps.sum()))
    lay = la[a_idx]
    mb, gb = B[bi[a_idx]], GB[gi[a_idx]]
    dp = D[lay]
    return Candidates(gpus=G[lay], tp=T[lay], pp=P[lay], cp=C[lay], ep=E[lay], dp=dp,
                      micro_batch=mb, grad_accum=gb // np.maximum(mb * dp, 1), global_batch=gb,
                      sharding=sh[b_idx], recompute=rc, offload=off[b_idx], pruned=pruned, considered=considered)


def is_legal(model: ModelArch, space: SearchSpace, node_size: int, plan: Mapping[str, int]) -> list[str]:
    """The rules one plan (dict of degrees, indices as in Candidates) breaks; [] when legal. For tests and users."""
    one = {name: np.asarray([plan[name]]) for name in ("gpus", "tp", "pp", "cp", "ep")}
    bad: list[str] = []
    t, p, c, e, g = (int(one[n][0]) for n in ("tp", "pp", "cp", "ep", "gpus"))
    k = max(1, model.num_kv_heads)
    if model.num_heads % t:
        bad.append(RULES[0])
    if not model.is_mla and t > 1 and k % t and t % k:
        bad.append(RULES[1])
    if not space.allow_cross_node_tp and t > node_size:
        bad.append(RULES[2])
    if (p > model.num_layers) if space.uneven_pp else (model.num_layers % p):
        bad.append(RULES[4] if space.uneven_pp else RULES[3])
    if space.seq_len % c:
        bad.append(RULES[5])
    if e > 1 and (not model.is_moe or model.num_experts % e):
        bad.append(RULES[6] if not model.is_moe else RULES[7])
    if g % (t * p * c):
        bad.append(RULES[8])
        return bad
    dp = g // (t * p * c)
    if e > 1 and dp % e:
        bad.append(RULES[9])
    if plan["global_batch"] != plan["micro_batch"] * dp * plan["grad_accum"]:
        bad.append(RULES[11])
    return bad


__all__ = ["Candidates", "SearchSpace", "generate", "default_gpu_counts", "is_legal", "RULES", "SHARDINGS",
           "RECOMPUTES", "OFFLOADS"]
