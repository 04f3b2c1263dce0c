"""Read measured step time, throughput and peak memory from training logs of the common frameworks.

Each parser follows the exact line its framework prints (the format strings are quoted below with where they
live); a log is read by whichever parser finds the most step records in it. Values come back in SI units
(seconds, tokens/s, bytes) per logged step, so `sizeup calibrate` can fit on one part and check another.

- Megatron-LM (megatron/training/training.py training_log):
    ' iteration {:8d}/{:8d} | consumed samples: {:12d} | elapsed time per iteration (ms): {:.1f} |
      [throughput per GPU (TFLOP/s/GPU): {:.1f} |] learning rate: ... | global batch size: {:5d} | ...'
  and report_memory: '[Rank 0] (after N iterations) memory (MB) | allocated: ... | max allocated: ... |
      reserved: ... | max reserved: ...'
- NeMo (Lightning progress bar with NeMo's timing callback): 'Epoch 0: : 100%|...| 50/50 [..., reduced_train_loss=6.130,
      global_step=50.0, consumed_samples=76800.0, train_step_timing in s=5.900, ...]'
- torchtitan (torchtitan/components/metrics.py MetricsProcessor.log, ANSI colours stripped):
    'step: {step:2}  loss: {loss:7.4f}  [grad_norm: ...  ]memory: {max_reserved_gib:5.2f}GiB({pct:.2f}%)
      tps: {round(tps):,}  tflops: {tflops:,.2f}  mfu: {mfu:.2f}%'   (tps = tokens/s per GPU)
- Hugging Face Trainer (ProgressCallback prints the logs dict): "{'loss': 1.23, 'grad_norm': ..., 'learning_rate': ...,
      'epoch': 0.1}" per logging step and "{'train_runtime': 123.4, 'train_samples_per_second': 12.3,
      'train_steps_per_second': 0.5, 'train_loss': ..., 'epoch': 1.0}" at the end
- DeepSpeed (deepspeed/utils/timer.py ThroughputTimer.stop):
    'epoch={}/micro_step={}/global_step={}, RunningAvgSamplesPerSec={}, CurrSamplesPerSec={}, MemAllocated={}GB,
      MaxMemAllocated={}GB'   (samples/s of the global batch, engine: batch_size=self.train_batch_size(); GB = 1024**3)
- torchtune (torchtune/training/metric_logging.py StdoutLogger/DiskLogger.log_dict):
    'Step {step} | name:value name:value ...' with tokens_per_second_per_gpu, peak_memory_active,
      peak_memory_alloc, peak_memory_reserved (GiB: torchtune get_memory_stats divides by 1024**3)
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sizeup.errors import SizeupError

GIB = 2.0**30
MIB = 2.0**20
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Record:
    """One logged step (or one logging window) of a training run; SI units, None = not in the log."""

    step: int
    step_time_s: float | None = None
    tokens_per_s_per_gpu: float | None = None
    tokens_per_s: float | None = None
    """Tokens per second of the whole job."""
    samples_per_s: float | None = None
    """Samples (sequences) per second of the whole job (global batch / step time)."""
    tflops_per_gpu: float | None = None
    mfu: float | None = None
    """Fraction, as the framework computes it (its own FLOP count and peak)."""
    peak_memory_bytes: float | None = None
    memory_kind: str = ""
    """'reserved' (torch max_memory_reserved, what nvidia-smi is close to) or 'allocated'."""


@dataclass
class ParsedLog:
    format: str
    records: list[Record] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    """Whole-run figures a framework prints once (HF Trainer train_runtime / train_samples_per_second)."""
    per_step: bool = True
    """False when every record carries the same whole-run figure (HF Trainer): no held-out part exists."""


def _num(text: str) -> float:
    return float(text.replace(",", ""))


# --------------------------------------------------------------------------- parsers

_MEG_ITER = re.compile(r"iteration\s+(\d+)/\s*\d+\s*\|.*?elapsed time per iteration \(ms\):\s*([\d.]+)")
_MEG_TFLOPS = re.compile(r"throughput per GPU \(TFLOP/s/GPU\):\s*([\d.]+)")
_MEG_MEM = re.compile(r"memory \(MB\)\s*\|\s*allocated:\s*([\d.]+)\s*\|\s*max allocated:\s*([\d.]+)\s*\|\s*"
                      r"reserved:\s*([\d.]+)\s*\|\s*max reserved:\s*([\d.]+)")


def parse_megatron(text: str) -> ParsedLog:
    out = ParsedLog("megatron")
    mem = None
    for line in text.splitlines():
        m = _MEG_ITER.search(line)
        if m:
            rec = Record(int(m.group(1)), step_time_s=float(m.group(2)) / 1e3)
            t = _MEG_TFLOPS.search(line)
            if t:
                rec.tflops_per_gpu = float(t.group(1)) * 1e12
            out.records.append(rec)
            continue
        m = _MEG_MEM.search(line)
        if m:
            mem = float(m.group(4)) * MIB  # max reserved (MB = 1024**2 in megatron/training/utils.py report_memory)
    if mem is not None:
        for rec in out.records:
            rec.peak_memory_bytes, rec.memory_kind = mem, "reserved"
    return out


_NEMO = re.compile(r"global_step=([\d.]+).*?train_step_timing in s=([\d.]+)")


def parse_nemo(text: str) -> ParsedLog:
    out = ParsedLog("nemo")
    seen = set()
    for chunk in re.split(r"[\r\n]", text):
        m = _NEMO.search(chunk)
        if m:
            step = int(float(m.group(1)))
            if step in seen:  # the progress bar redraws the same step
                continue
            seen.add(step)
            out.records.append(Record(step, step_time_s=float(m.group(2))))
    return out


_TITAN = re.compile(r"step:\s*(\d+)\s+loss:.*?memory:\s*([\d.]+)GiB\(\s*[\d.]+%\)\s+tps:\s*([\d,]+)"
                    r"(?:\s+tflops:\s*([\d,.]+))?(?:\s+mfu:\s*([\d.]+)%)?")


def parse_torchtitan(text: str) -> ParsedLog:
    out = ParsedLog("torchtitan")
    for line in _ANSI.sub("", text).splitlines():
        if "validate step" in line:
            continue
        m = _TITAN.search(line)
        if m:
            out.records.append(Record(
                int(m.group(1)), tokens_per_s_per_gpu=_num(m.group(3)),
                tflops_per_gpu=_num(m.group(4)) * 1e12 if m.group(4) else None,
                mfu=float(m.group(5)) / 100.0 if m.group(5) else None,
                peak_memory_bytes=float(m.group(2)) * GIB, memory_kind="reserved"))
    return out


_DICT = re.compile(r"\{'[a-z_]+':.*\}")


def parse_hf_trainer(text: str) -> ParsedLog:
    out = ParsedLog("hf-trainer", per_step=False)
    step = 0
    for line in text.splitlines():
        m = _DICT.search(line)
        if not m:
            continue
        try:
            d = ast.literal_eval(m.group(0))
        except (ValueError, SyntaxError):
            continue
        if not isinstance(d, dict):
            continue
        if "train_runtime" in d:
            for key in ("train_runtime", "train_samples_per_second", "train_steps_per_second"):
                if key in d:
                    out.summary[key] = float(d[key])
            continue
        if "loss" in d and "epoch" in d:
            step += 1
            out.records.append(Record(step))
    if out.summary.get("train_steps_per_second"):
        # the Trainer reports whole-run rates only: one record per logging step carries the run's step time
        st = 1.0 / out.summary["train_steps_per_second"]
        sps = out.summary.get("train_samples_per_second")
        for rec in out.records:
            rec.step_time_s, rec.samples_per_s = st, sps
        if not out.records:
            out.records.append(Record(1, step_time_s=st, samples_per_s=sps))
    else:
        out.records = []
    return out


_DS = re.compile(r"global_step=(\d+),\s*RunningAvgSamplesPerSec=([\d.eE+-]+),\s*CurrSamplesPerSec=([\d.eE+-]+),\s*"
                 r"MemAllocated=([\d.]+)GB,\s*MaxMemAllocated=([\d.]+)GB")


def parse_deepspeed(text: str) -> ParsedLog:
    out = ParsedLog("deepspeed")
    for line in text.splitlines():
        m = _DS.search(line)
        if m:
            out.records.append(Record(int(m.group(1)), samples_per_s=float(m.group(3)),
                                      peak_memory_bytes=float(m.group(5)) * GIB, memory_kind="allocated"))
    return out


_TUNE = re.compile(r"Step (\d+) \| (.*)")


def parse_torchtune(text: str) -> ParsedLog:
    out = ParsedLog("torchtune")
    for line in text.splitlines():
        m = _TUNE.search(line)
        if not m:
            continue
        kv = dict(re.findall(r"([A-Za-z_]+):([-\d.eE+]+)", m.group(2)))
        if "tokens_per_second_per_gpu" not in kv:
            continue
        rec = Record(int(m.group(1)), tokens_per_s_per_gpu=float(kv["tokens_per_second_per_gpu"]))
        if "peak_memory_reserved" in kv:
            rec.peak_memory_bytes, rec.memory_kind = float(kv["peak_memory_reserved"]) * GIB, "reserved"
        elif "peak_memory_alloc" in kv:
            rec.peak_memory_bytes, rec.memory_kind = float(kv["peak_memory_alloc"]) * GIB, "allocated"
        out.records.append(rec)
    return out


PARSERS: dict[str, Callable[[str], ParsedLog]] = {
    "megatron": parse_megatron, "nemo": parse_nemo, "torchtitan": parse_torchtitan,
    "hf-trainer": parse_hf_trainer, "deepspeed": parse_deepspeed, "torchtune": parse_torchtune,
}


def parse_log(path: str | Path, fmt: str | None = None) -> ParsedLog:
    """The log's step records, by the named format or the parser that finds the most of them."""
    p = Path(path)
    if not p.is_file():
        raise SizeupError(f"log file not found: {p}")
    try:
        text = p.read_text(errors="replace")
    except OSError as exc:
        raise SizeupError(f"cannot read {p}: {exc.strerror or exc}") from None
    return parse_text(text, fmt, str(p))


def parse_text(text: str, fmt: str | None = None, where: str = "log") -> ParsedLog:
    if fmt:
        if fmt not in PARSERS:
            raise SizeupError(f"--format {fmt!r} unknown; use one of {', '.join(PARSERS)}")
        parsed = PARSERS[fmt](text)
    else:
        parsed = max((f(text) for f in PARSERS.values()), key=lambda r: len(r.records))
    if not parsed.records:
        raise SizeupError(f"{where}: no training-step lines found (read Megatron-LM, NeMo, torchtitan, HF Trainer, "
                          f"DeepSpeed and torchtune logs; see 'sizeup calibrate --help')")
    return parsed
