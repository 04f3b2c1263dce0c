"""How many training configurations per second `sizeup search` evaluates on this machine (goal: >= 1,000,000/s).

Space: Llama-3-70B, 1T tokens, seq 8192, up to 1024 GPUs of 4 kinds (H100 SXM, H200, B200, A100 80GB SXM),
every sharding (8), recompute mode (3), optimizer offload (2), micro-batch 1-8, tp/pp/cp/dp and global batches
256-2048 (2^k, 3*2^k, 5*2^k). "Evaluated" = legal plan x GPU kind whose memory was computed (plans that fit are
then timed and priced). Not a timed test: run it by hand.

    .venv/bin/python benchmarks/search_speed.py [--repeat 3] [--chunk 262144]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=1 << 18)
    ap.add_argument("--max-gpus", type=int, default=1024)
    args = ap.parse_args()

    from sizeup.catalog import load_catalog
    from sizeup.catalog.overheads import load_overheads
    from sizeup.commands.compare import offers_for
    from sizeup.commands.search import global_batches
    from sizeup.core.timing import default_knobs
    from sizeup.search.candidates import SearchSpace
    from sizeup.search.search import Constraints, Target, search

    cat = load_catalog()
    model = cat.model("llama-3-70b")
    targets = []
    for name in ("h100-sxm", "h200", "b200", "a100-80gb-sxm"):
        gpu = cat.gpu(name)
        offers = [o for pid in cat.platforms for o in offers_for(cat, pid, gpu.id, "on-demand", strict=False)]
        targets.append(Target(gpu, tuple(offers)))
    gbs, _ = global_batches("256-2048", 8192)
    space = SearchSpace(seq_len=8192, global_batches=gbs, max_gpus=args.max_gpus)
    knobs, ov = default_knobs(), load_overheads()
    rates = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        r = search(model, 1e12, space, targets, objective="time", top=10,
                   constraints=Constraints(deadline_s=30 * 86400), knobs=knobs, overheads=ov, chunk=args.chunk)
        wall = time.perf_counter() - t0
        rates.append(r.evaluated / wall)
        print(f"run {i + 1}: evaluated {r.evaluated:,} configs (grid {r.considered:,}), {r.fits_memory:,} fit, "
              f"{r.feasible:,} feasible, {wall:.2f} s -> {r.evaluated / wall:,.0f} configs/s")
    best = r.plans[0] if r.plans else None
    print(f"median rate: {statistics.median(rates):,.0f} configs/s (goal 1,000,000/s)")
    if best:
        print(f"best: {best.gpus}x {best.gpu} tp/pp/dp/cp={best.tp}/{best.pp}/{best.dp}/{best.cp} {best.sharding.value} "
              f"mb={best.micro_batch} accum={best.grad_accum} recompute={best.recompute.value} -> {best.days:.2f} days")


if __name__ == "__main__":
    main()
