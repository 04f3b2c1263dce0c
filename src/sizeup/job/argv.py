"""A Job back to flag values and to the equivalent command line (validate's `command`, the web page's URL)."""

from __future__ import annotations

from typing import Any

from sizeup.core.types import Offload, Peft, PipelineSchedule, Recompute


def job_values(job) -> dict[str, Any]:
    """Flag values that rebuild the same job with build_job (explicit where a default could differ)."""
    p, b, ex = job.parallelism, job.batch, job.execution
    v: dict[str, Any] = {"model": job.model.id}
    from sizeup.core.types import PositionKind

    if job.model.position == PositionKind.LEARNED and job.model.num_position_embeddings:
        v["positions"] = job.model.num_position_embeddings
    if job.gpu is not None:
        v["gpu"] = job.gpu.id
    elif job.cluster.memory_bytes:
        v["gpu"] = f"{job.cluster.memory_bytes / 2**30:.6g}GiB"
    v["gpus"] = job.cluster.gpus
    if job.gpu is None or job.cluster.gpus_per_node != (job.gpu.node_size or 8):
        v["gpus_per_node"] = job.cluster.gpus_per_node
    if job.workload is not None:
        w = job.workload
        if w.tokens is not None:
            v["tokens"] = f"{w.tokens:.17g}"
        else:
            v["samples"] = f"{w.samples:.17g}"
            v["tokens_per_sample"] = f"{w.tokens_per_sample:.17g}"
        if w.epochs != 1.0:
            v["epochs"] = w.epochs
    v.update(seq=b.seq_len, micro_batch=b.micro_batch, global_batch=b.global_batch)
    if b.decoder_seq_len:
        v["decoder_seq"] = b.decoder_seq_len
    if b.packed_doc_tokens:
        v["packed_doc_tokens"] = b.packed_doc_tokens
    for name in ("tp", "pp", "cp", "ep", "virtual_pp"):
        if getattr(p, name) != 1:
            v[name] = getattr(p, name)
    if p.schedule == PipelineSchedule.GPIPE or (p.schedule == PipelineSchedule.INTERLEAVED and p.virtual_pp == 1):
        v["pp_schedule"] = p.schedule.value
    if p.tp > 1:
        v["sequence_parallel"] = p.sequence_parallel
    if p.cp > 1:
        v["cp_impl"] = p.cp_impl.value
    for name in ("zero_quantized_weights", "zero_quantized_gradients"):
        if getattr(p, name):
            v[name] = True
    v["zero"] = p.sharding.value
    v["precision"] = job.precision.precision.value
    if job.precision.fp8_recipe:
        v["fp8_recipe"] = job.precision.fp8_recipe.value
    opt = job.optimizer
    v["optimizer"] = ("paged-" if opt.paged else "") + opt.kind.value
    if not opt.fused:
        v["foreach"] = True
    if opt.in_backward:
        v["optimizer_in_backward"] = True
    v["recompute"] = job.recompute.policy.value
    if job.recompute.layers_fraction < 1.0:
        v["recompute_layers"] = f"{job.recompute.layers_fraction:.17g}"
    if job.offload.optimizer != Offload.NONE:
        v["offload_optimizer"] = job.offload.optimizer.value
    if job.offload.params != Offload.NONE:
        v["offload_params"] = job.offload.params.value
    if job.offload.activations:
        v["offload_activations"] = True
    if job.offload.auto_cap:
        v["offload_auto_cap"] = job.offload.auto_cap
    if job.peft.method != Peft.NONE:
        if job.peft.method == Peft.ADAPTER:
            v.update(peft=job.peft.method.value, trainable_params=job.peft.trainable_params)
            if job.peft.adapter_linear_scales:
                v["adapter_linear_scales"] = True
            if job.peft.nf4_base:
                v["nf4_base"] = True
                v["nf4_saves_inputs"] = job.peft.nf4_saves_inputs
        else:
            v.update(peft=job.peft.method.value, lora_rank=job.peft.rank, lora_targets=",".join(job.peft.targets),
                     lora_impl=job.peft.impl.value, lora_fp32_adapters=job.peft.fp32_adapters)
            if job.peft.method == Peft.QLORA:
                v["nf4_saves_inputs"] = job.peft.nf4_saves_inputs
    if ex.framework != "generic":
        v["framework"] = ex.framework
    if job.parallelism.sharding.value.startswith("fsdp"):
        v["fsdp_no_sync"] = ex.fsdp_no_sync
        v["fsdp_mixed_units"] = ex.fsdp_mixed_units
    if "kernel" in ex.overridden:
        v["kernel"] = ex.timing_kernel
    v["compile"] = ex.compile
    v["attention"] = ex.attention.value
    if ex.loss is not None:
        v["loss"] = ex.loss
    if ex.dropout:
        v["dropout"] = ex.dropout
    if ex.fragmentation is not None:
        v["fragmentation"] = ex.fragmentation
    for name in ("dp_overlap", "tp_overlap"):
        if getattr(ex, name) is not None and name.replace("_overlap", "") and getattr(ex, name) != 0.0:
            v[name] = getattr(ex, name)
    pr = job.pricing
    if pr.platform:
        v["platform"] = pr.platform
        v["pricing"] = pr.pricing
    for name in ("price_per_gpu_hour", "billing_increment_s", "min_billing_s", "preemption_rate", "restart_s",
                 "checkpoints_kept"):
        if getattr(pr, name) is not None:
            v[name] = getattr(pr, name)
    return v


def values_argv(values: dict[str, Any]) -> list[str]:
    """Flag values -> argv (booleans as --flag / --no-flag; the model as the positional argument)."""
    out: list[str] = []
    for key, val in values.items():
        if key == "model" or val is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(val, bool):
            out.append(flag if val else "--no-" + key.replace("_", "-"))
        elif isinstance(val, (list, tuple)):
            for item in val:
                out += [flag, str(item)]
        else:
            out += [flag, f"{val:.17g}" if isinstance(val, float) else str(val)]
    return out


def job_argv(job, command: str = "train") -> list[str]:
    values = job_values(job)
    if command not in ("train", "compare", "search") and job.workload is not None:
        for key in ("tokens", "samples", "tokens_per_sample", "epochs"):
            values.pop(key, None)
    return [command, str(values.pop("model"))] + values_argv(values)
