"""A published point as a job: the point's structured fields and what the prose table reads from its text become
job-flag values, and the one job parser (sizeup.job.build_job) builds the job the prediction uses. The same values
are the `sizeup train ...` command each predicted row carries (JSON key `command`)."""

from __future__ import annotations

import re
from typing import Any

from sizeup.core.types import Offload, Peft, PositionKind, Recompute


def point_framework(point) -> str | None:
    """The framework profile the point's source or text names (validate/data/frameworks.yaml), or None."""
    from sizeup.validate.mapping import framework_for

    return framework_for(point).get("profile")


def sp_stated(point) -> bool:
    """The point says whether sequence parallelism is on (in its recompute or free-text fields); when it does not,
    the framework profile's sequence_parallel_with_tp applies."""
    from sizeup.validate.prose import mentions

    return any(mentions(t).get("sequence_parallel") is not None
               for t in (point.parallel.recompute, point.parallel.other) if t)


def point_values(point, arch, gpu, setup) -> dict[str, Any]:
    """Job-flag values of a point whose plan was read into `setup` (sizeup.validate.mapping.build_setup)."""
    from sizeup.validate.mapping import compiled, infer_loss, transformer_engine

    text = point.text()
    v: dict[str, Any] = {"model": arch.id, "gpu": gpu.id, "gpus": setup.gpus, "gpus_per_node": setup.gpus_per_node,
                         "seq": setup.seq_len, "micro_batch": setup.micro_batch,
                         "global_batch": setup.global_batch, "tp": setup.tp, "pp": setup.pp, "cp": setup.cp,
                         "ep": setup.ep, "virtual_pp": setup.virtual_pp, "pp_schedule": setup.pp_schedule.value,
                         "zero": setup.sharding.value, "precision": setup.precision.value,
                         "optimizer": ("paged-" if setup.paged_optimizer else "") + setup.optimizer.value,
                         "recompute": setup.recompute.value, "attention": setup.attention.value}
    if setup.decoder_seq_len:
        v["decoder_seq"] = setup.decoder_seq_len
    if setup.recompute == Recompute.LAYER_FRACTION:
        v["recompute_layers"] = setup.recompute_fraction
    if setup.tp > 1 and (setup.sequence_parallel or sp_stated(point) or not point_framework(point)):
        v["sequence_parallel"] = setup.sequence_parallel
    if point.parallel.sharding is None and point_framework(point) and setup.sharding.value == "none":
        del v["zero"]  # not stated: the framework profile's default sharding applies (job parser)
    if arch.position == PositionKind.LEARNED and arch.num_position_embeddings:
        v["positions"] = arch.num_position_embeddings
    if not setup.fused_optimizer:
        v["foreach"] = True
    if setup.optimizer_in_backward:
        v["optimizer_in_backward"] = True
    if setup.offload_optimizer != Offload.NONE:
        v["offload_optimizer"] = setup.offload_optimizer.value
    if setup.offload_params != Offload.NONE:
        v["offload_params"] = setup.offload_params.value
    if setup.offload_activations:
        v["offload_activations"] = True
    if setup.offload_auto_cap:
        v["offload_auto_cap"] = setup.offload_auto_cap
    if setup.peft == Peft.ADAPTER:
        v.update(peft=setup.peft.value, trainable_params=setup.trainable_params)
        if setup.nf4_base:
            v["nf4_base"] = True
        if setup.adapter_linear_scales:
            v["adapter_linear_scales"] = True
    elif setup.peft != Peft.NONE:
        v.update(peft=setup.peft.value, lora_rank=setup.lora_rank, lora_targets=",".join(setup.lora_targets))
    if setup.dropout:
        v["dropout"] = setup.dropout
    if setup.packed_doc_tokens:
        v["packed_doc_tokens"] = setup.packed_doc_tokens
    fw = point_framework(point)
    if fw:
        v["framework"] = fw
        if setup.peft != Peft.NONE:
            from sizeup.job.frameworks import framework_profile

            if framework_profile(fw)["lora_impl"] == "none":
                v["lora_impl"] = "peft"
    v["compile"] = compiled(point)
    if transformer_engine(point):
        v["kernel"] = "te"
    loss = infer_loss(point)
    if loss:
        v["loss"] = loss
    return v


def point_job(point, arch, gpu, setup, catalog=None):
    """(Job, reproducible): the job of a point's plan, and whether `sizeup train` rebuilds the same model from the
    values (a catalog preset, with --positions for learned tables). `catalog`: the catalog the point's GPU and
    model were resolved in (the validator's, e.g. with a user --catalog file); None = the packaged one."""
    from sizeup.job import build_job

    values = point_values(point, arch, gpu, setup)
    job = build_job(values, catalog, model=arch)
    reproducible = False
    try:
        reproducible = build_job(values, catalog).model == arch
    except Exception:
        reproducible = False
    return job, reproducible
