"""Token budgets for multi-modal samples: each input stream tokenised its own way, summed per sample
and per hour of recorded data.

Stream rates (tokens per second of recorded data):
  text:   tokens_per_second, or a fixed tokens_per_sample
  video:  fps x patches_per_frame                    (patches after pooling; ViT: (H/p)(W/p)/pool^2)
  audio:  (sample_rate_hz / hop_samples) x codebooks (neural codec frame rate, e.g. EnCodec 24 kHz/320 = 75 Hz)
  sensor: rate_hz x values_per_step / values_per_token
Source: the definitions themselves (ViT, Dosovitskiy et al. 2021 sec. 3.1; EnCodec, Defossez et al. 2022 sec. 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Mapping

from sizeup.core.explain import Term
from sizeup.errors import SizeupError
from sizeup.units import HOUR_S


class StreamKind(StrEnum):
    TEXT = "text"
    VIDEO = "video"
    AUDIO = "audio"
    SENSOR = "sensor"


@dataclass(frozen=True)
class Stream:
    """One input stream. Only the fields of its kind are used."""

    name: str
    kind: StreamKind
    # text
    tokens_per_second: float = 0.0
    tokens_per_sample: float = 0.0
    # video
    fps: float = 0.0
    patches_per_frame: float = 0.0
    # audio
    sample_rate_hz: float = 0.0
    hop_samples: float = 0.0
    frame_rate_hz: float = 0.0
    codebooks: float = 1.0
    # sensor
    rate_hz: float = 0.0
    values_per_step: float = 1.0
    values_per_token: float = 1.0


@dataclass(frozen=True)
class StreamBudget:
    name: str
    kind: str
    tokens_per_second: float
    tokens_per_sample: float
    formula: str
    inputs: Mapping[str, float]


@dataclass(frozen=True)
class TokenBudget:
    sample_seconds: float
    streams: tuple[StreamBudget, ...]
    tokens_per_sample: float
    tokens_per_hour: float
    samples: float
    total_tokens: float
    target_tokens: float
    data_hours_for_target: float
    samples_for_target: float
    terms: tuple[Term, ...] = field(default=())


def stream_rate(stream: Stream) -> tuple[float, str, dict]:
    """Tokens per second of recorded data for one stream, with its formula and inputs."""
    k = stream.kind
    if k == StreamKind.TEXT:
        return stream.tokens_per_second, "tokens_per_second", {"tokens_per_second": stream.tokens_per_second}
    if k == StreamKind.VIDEO:
        return (stream.fps * stream.patches_per_frame, "fps * patches_per_frame",
                {"fps": stream.fps, "patches_per_frame": stream.patches_per_frame})
    if k == StreamKind.AUDIO:
        frame_rate = stream.frame_rate_hz or (stream.sample_rate_hz / stream.hop_samples if stream.hop_samples else 0.0)
        return (frame_rate * stream.codebooks, "(sample_rate_hz / hop_samples) * codebooks",
                {"sample_rate_hz": stream.sample_rate_hz, "hop_samples": stream.hop_samples,
                 "frame_rate_hz": frame_rate, "codebooks": stream.codebooks})
    return (stream.rate_hz * stream.values_per_step / stream.values_per_token,
            "rate_hz * values_per_step / values_per_token",
            {"rate_hz": stream.rate_hz, "values_per_step": stream.values_per_step,
             "values_per_token": stream.values_per_token})


def token_budget(streams: tuple[Stream, ...], sample_seconds: float, samples: float = 0.0,
                 target_tokens: float = 0.0) -> TokenBudget:
    """Per-sample and per-hour tokens of a multi-stream sample, and the data needed for a target."""
    parts = []
    for s in streams:
        rate, formula, inputs = stream_rate(s)
        per_sample = s.tokens_per_sample if (s.kind == StreamKind.TEXT and s.tokens_per_sample) else rate * sample_seconds
        if s.kind == StreamKind.TEXT and s.tokens_per_sample:
            rate = s.tokens_per_sample / sample_seconds if sample_seconds else 0.0
            formula, inputs = "tokens_per_sample / sample_seconds", {"tokens_per_sample": s.tokens_per_sample}
        parts.append(StreamBudget(s.name, s.kind.value, rate, per_sample, formula, inputs))
    per_sample = sum(p.tokens_per_sample for p in parts)
    per_hour = sum(p.tokens_per_second for p in parts) * HOUR_S
    total = per_sample * samples
    if not all(math.isfinite(x) for x in (per_sample, per_hour, total)):
        # each input is finite, but their product is not (e.g. 30 fps x 16 patches x 1e308 s)
        raise SizeupError("the token budget overflows a float: stream rates x sample_seconds x samples exceed 1e308 "
                          "tokens; check the units of sample_seconds, the rates and samples")
    hours_needed = target_tokens / per_hour if (target_tokens and per_hour) else 0.0
    samples_ratio = target_tokens / per_sample if (target_tokens and per_sample) else 0.0
    if not (math.isfinite(hours_needed) and math.isfinite(samples_ratio)):
        raise SizeupError("the data needed for the target overflows a float: the target is over 1e308 times the "
                          "tokens per sample or per hour; check their units")
    samples_needed = math.ceil(samples_ratio)
    terms = [Term(f"tokens/per_sample/{p.name}", p.tokens_per_sample, "tokens",
                  f"({p.formula}) * sample_seconds", {**p.inputs, "sample_seconds": sample_seconds},
                  "stream definition") for p in parts]
    terms.append(Term("tokens/per_sample", per_sample, "tokens", "sum over streams", {p.name: p.tokens_per_sample for p in parts}))
    terms.append(Term("tokens/per_hour_of_data", per_hour, "tokens", "3600 * sum(stream tokens per second)",
                      {p.name: p.tokens_per_second for p in parts}))
    if samples:
        terms.append(Term("tokens/total", total, "tokens", "tokens_per_sample * samples", {"samples": samples}))
    if target_tokens:
        terms.append(Term("data/hours_for_target", hours_needed, "h", "target_tokens / tokens_per_hour",
                          {"target_tokens": target_tokens, "tokens_per_hour": per_hour}))
    return TokenBudget(sample_seconds, tuple(parts), per_sample, per_hour, samples, total, target_tokens,
                       hours_needed, samples_needed, tuple(terms))
