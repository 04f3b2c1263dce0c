"""The one table of job flags: every field of a job that a user can set, with its flag, type, help and the
section of the job tree it fills. The CLI builds every job command's options from this table (so every
command that takes a job parses every job flag; the ones a command refuses are hidden from its --help and answer
one line saying why), scenario files use the same names (snake_case), and the
web form and the JSON API use them too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobFlag:
    name: str
    """snake_case key (scenario files, JSON, web form); the flag is --name-with-dashes."""
    kind: str
    """text | int | float | bool | count | list"""
    section: str
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


JOB_FLAGS: tuple[JobFlag, ...] = (
    # model
    JobFlag("positions", "int", "model", "Size of a learned position table (GPT-2/OPT/MPT-style models; benchmark "
                                         "configs set it to the sequence length)."),
    # workload
    JobFlag("tokens", "count", "workload", "Training tokens, with suffixes: 15M, 2B, 1.5T."),
    JobFlag("samples", "count", "workload", "Training samples (sequences), e.g. 10000 or 10K."),
    JobFlag("tokens_per_sample", "count", "workload", "Average tokens per sample."),
    JobFlag("epochs", "float", "workload", "Passes over the samples (default 1)."),
    # cluster
    JobFlag("gpu", "text", "cluster", "GPU kind from the catalog (h100-sxm, a100-80gb, t4; see 'sizeup gpus'); "
                                      "memory and trace also take a size like 24GiB."),
    JobFlag("gpus", "text", "cluster", "Number of GPUs (default 1)."),
    JobFlag("gpus_per_node", "int", "cluster", "GPUs per node / NVLink domain (default: the GPU's node size)."),
    # batch
    JobFlag("seq", "int", "batch", "Sequence length in tokens (default 2048, or the model's context if shorter)."),
    JobFlag("decoder_seq", "int", "batch", "Target (decoder) tokens per sequence of an encoder-decoder model (T5); "
                                           "--seq is then the encoder's input length (default: = --seq)."),
    JobFlag("micro_batch", "int", "batch", "Sequences per GPU per forward/backward (default 1)."),
    JobFlag("global_batch", "int", "batch", "Sequences per optimizer step (default: about 1M tokens, at least "
                                            "100 steps; see docs/methodology.md 'Defaults')."),
    JobFlag("grad_accum", "int", "batch", "Gradient accumulation steps (else derived from --global-batch)."),
    JobFlag("packed_doc_tokens", "text", "batch", "Sequences packed from documents of this mean length in tokens, or "
                                                  "a catalog dataset (squad-v1.1), with document-masked attention "
                                                  "(flash varlen / TE THD / FlexAttention): attention only within each "
                                                  "document (default: one document per sequence)."),
    # parallelism
    JobFlag("tp", "int", "parallelism", "Tensor-parallel degree (default 1)."),
    JobFlag("pp", "int", "parallelism", "Pipeline-parallel degree (default 1)."),
    JobFlag("virtual_pp", "int", "parallelism", "Virtual pipeline stages per GPU (interleaved 1F1B; default 1)."),
    JobFlag("pp_schedule", "text", "parallelism", "1f1b | interleaved | gpipe (default 1f1b; interleaved with --virtual-pp)."),
    JobFlag("cp", "int", "parallelism", "Context-parallel degree (default 1)."),
    JobFlag("ep", "int", "parallelism", "Expert-parallel degree, MoE only (default 1)."),
    JobFlag("zero_quantized_weights", "bool", "parallelism", "ZeRO++ qwZ: int8 parameter all-gathers (needs --zero 3)."),
    JobFlag("zero_quantized_gradients", "bool", "parallelism", "ZeRO++ qgZ: int4 gradient reduce-scatter (needs --zero 3)."),
    JobFlag("cp_impl", "text", "parallelism", "Context parallelism: ring (ring attention, K/V passed between ranks) | "
                                              "ulysses (DeepSpeed-Ulysses all-to-all over heads) (default: the framework's)."),
    JobFlag("sequence_parallel", "bool", "parallelism", "Megatron sequence parallelism (default: the framework's rule)."),
    JobFlag("zero", "text", "parallelism", "Sharding: none (DDP), 1, 2, 3, fsdp-full, fsdp-grad-op, fsdp-hybrid, "
                                           "megatron-distopt (default: the least sharding that fits)."),
    # precision
    JobFlag("precision", "text", "precision", "fp32 | tf32 | fp16-mixed | bf16-mixed | bf16 | fp8 (default bf16-mixed; "
                                              "fp16-mixed on GPUs without bf16)."),
    JobFlag("fp8_recipe", "text", "precision", "fp8 scaling recipe: delayed | tensorwise | rowwise | block "
                                               "(default: the framework's)."),
    # optimizer
    JobFlag("optimizer", "text", "optimizer", "adamw | adam8bit | adafactor | sgd | lion, or paged-adamw / "
                                              "paged-adamw8bit (default adamw)."),
    JobFlag("foreach", "bool", "optimizer", "Non-fused (foreach) optimizer step (default: fused)."),
    JobFlag("optimizer_in_backward", "bool", "optimizer", "Fuse the optimizer step into backward (torchtune "
                                                          "optimizer_in_bwd)."),
    # recompute
    JobFlag("recompute", "text", "recompute", "Activation checkpointing: none | selective | full (selective means "
                                              "what the framework calls selective; default none)."),
    JobFlag("recompute_layers", "text", "recompute", "Checkpoint only some layers: a fraction (0.25), 'K/L' "
                                                     "(21/80) or 'every-N' (default all layers)."),
    # offload
    JobFlag("offload_optimizer", "text", "offload", "none | cpu | nvme: optimizer states off the GPU (ZeRO-Offload)."),
    JobFlag("offload_params", "text", "offload", "none | cpu | nvme: sharded parameters off the GPU (needs --zero 3)."),
    JobFlag("offload_auto_cap", "float", "offload", "Adaptive placement (Colossal-AI Gemini auto): offload only past "
                                                    "this fraction of GPU memory (Colossal-AI default 0.9)."),
    JobFlag("offload_activations", "bool", "offload", "Saved activations in host memory (activation offloading)."),
    # peft
    JobFlag("peft", "text", "peft", "none | lora | qlora | adapter (default none: full training). adapter: a frozen "
                                   "16-bit base with a small trained set outside the Linear inputs (prompt/prefix "
                                   "tuning, LLaMA-Adapter, IA3, OFT, VeRA, ...), sized by --trainable-params."),
    JobFlag("fsdp_no_sync", "bool", "execution", "FSDP gradient accumulation under no_sync: unsharded gradients between "
                                                 "micro-steps (default: the framework's)."),
    JobFlag("fsdp_mixed_units", "bool", "execution", "FSDP units holding LoRA adapters and frozen weights together: "
                                                     "gradients for the whole unit (default: the framework's)."),
    JobFlag("trainable_params", "float", "peft", "Trained parameter count of --peft adapter (e.g. 1.2e6)."),
    JobFlag("adapter_linear_scales", "bool", "peft", "--peft adapter scaling every Linear's output with a trained "
                                                     "vector and training the norms (LLaMA-Adapter v2)."),
    JobFlag("nf4_saves_inputs", "bool", "peft", "4-bit base Linears keep their inputs (bitsandbytes MatMul4Bit; "
                                                "torchao NF4 does not) (default: the framework's)."),
    JobFlag("nf4_base", "bool", "peft", "--peft adapter on a 4-bit NF4 base (bitsandbytes Linear4bit; QLoRA implies it)."),
    JobFlag("lora_rank", "int", "peft", "LoRA rank r (default 16)."),
    JobFlag("lora_targets", "text", "peft", "LoRA targets: q,k,v,o,gate,up,down, or all / attn / mlp, or "
            "peft-default (Hugging Face PEFT's targets for the model type, e.g. q,v for Llama) (default q,k,v,o)."),
    JobFlag("lora_fp32_adapters", "bool", "peft", "LoRA adapters in fp32 on the 16-bit base, each adapted Linear "
                                                  "casting its input (Hugging Face PEFT) (default: the framework's)."),
    JobFlag("lora_impl", "text", "peft", "How adapters run: peft (eager modules) | fused (fused kernels) "
                                         "(default: the framework's)."),
    # execution
    JobFlag("framework", "text", "execution", "Framework profile (see 'sizeup frameworks'): megatron, nemo, torchtitan, "
                                              "fsdp, deepspeed, hf-trainer, llamafactory, torchtune, unsloth, axolotl, "
                                              "llm-foundry, litgpt, nanogpt, maxtext, liger."),
    JobFlag("kernel", "text", "execution", "Kernel family: fused | te | eager (hf-eager = eager) (default: the framework's)."),
    JobFlag("attention", "text", "execution", "flash (no s x s scores kept) | math (eager attention) (default: the framework's)."),
    JobFlag("loss", "text", "execution", "Loss head: full | vocab-parallel | chunked | fused-linear (default: the framework's)."),
    JobFlag("compile", "bool", "execution", "torch.compile on (elementwise ops fused) (default: the framework's)."),
    JobFlag("dropout", "float", "execution", "Dropout probability (default 0)."),
    JobFlag("fragmentation", "float", "execution", "Allocator fragmentation fraction (default from overheads.yaml)."),
    JobFlag("dp_overlap", "float", "execution", "Fraction of the data-parallel collectives hidden behind compute, 0..1."),
    JobFlag("tp_overlap", "float", "execution", "Fraction of the tensor-parallel collectives hidden behind compute, 0..1."),
    # pricing
    JobFlag("platform", "text", "pricing", "Cloud platform id (aws, gcp, azure, lambda, runpod, modal, coreweave, vast, "
                                           "...; see 'sizeup platforms')."),
    JobFlag("pricing", "text", "pricing", "on-demand | spot | reserved (default on-demand)."),
    JobFlag("price_per_gpu_hour", "float", "pricing", "Your price in USD per GPU-hour (overrides the catalog's)."),
    JobFlag("billing_increment_s", "float", "pricing", "Billing increment in seconds (overrides the platform's)."),
    JobFlag("min_billing_s", "float", "pricing", "Minimum billed time in seconds (overrides the platform's)."),
    JobFlag("preemption_rate", "float", "pricing", "Spot preemptions per instance-hour (overrides the catalog)."),
    JobFlag("restart_s", "float", "pricing", "Seconds lost to each restart after a preemption or failure."),
    JobFlag("checkpoints_kept", "int", "pricing", "Checkpoints kept on storage."),
    JobFlag("retain", "text", "pricing", "Keep storage after the run, e.g. 30d."),
    JobFlag("catalog", "list", "pricing", "Extra catalog YAML with your own prices (repeatable)."),
    JobFlag("max_price_age_days", "int", "pricing", "Warn when a price is older than this many days (default 180)."),
)

FLAG_BY_NAME = {f.name: f for f in JOB_FLAGS}
JOB_FLAG_NAMES = tuple(f.name for f in JOB_FLAGS)
SECTIONS = tuple(dict.fromkeys(f.section for f in JOB_FLAGS))
