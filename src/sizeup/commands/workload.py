"""`sizeup tokens`: multi-modal token budgets, data hours and compute-optimal suggestions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sizeup.cli import app
from sizeup.commands.common import CsvOpt, ExplainOpt, JsonOpt, MarkdownOpt, SamplesOpt, TokensOpt, emit
from sizeup.errors import SizeupError

STREAM_KEYS = {
    "fps": "fps", "patches": "patches_per_frame", "patches_per_frame": "patches_per_frame",
    "rate": None, "sample_rate": "sample_rate_hz", "sample_rate_hz": "sample_rate_hz", "hop": "hop_samples",
    "hop_samples": "hop_samples", "frame_rate": "frame_rate_hz", "frame_rate_hz": "frame_rate_hz",
    "codebooks": "codebooks", "values": "values_per_step", "values_per_step": "values_per_step",
    "per_token": "values_per_token", "values_per_token": "values_per_token", "tokens": "tokens_per_sample",
    "tokens_per_sample": "tokens_per_sample", "tps": "tokens_per_second", "tokens_per_second": "tokens_per_second",
    "rate_hz": "rate_hz", "name": "name",
}


def parse_stream(text: str) -> dict:
    """'video:fps=30,patches=64' -> {'kind': 'video', 'fps': 30, 'patches_per_frame': 64}."""
    from sizeup.units import parse_count

    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    if kind not in ("text", "video", "audio", "sensor"):
        raise SizeupError(f"unknown stream kind {kind!r} in --stream {text!r}; allowed: text, video, audio, sensor "
                          "(e.g. video:fps=30,patches=64)")
    out: dict = {"kind": kind}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in STREAM_KEYS:
            raise SizeupError(f"bad stream field {item!r} in {text!r}; allowed: {', '.join(sorted(STREAM_KEYS))}")
        field = STREAM_KEYS[key] or {"audio": "sample_rate_hz", "sensor": "rate_hz", "video": "fps", "text": "tokens_per_second"}[kind]
        out[field] = value.strip() if field == "name" else parse_count(value)
    return out


@app.command("tokens")
def tokens_cmd(
    spec: Annotated[Optional[Path], typer.Argument(help="YAML with sample_seconds and streams (see examples/tokens/).")] = None,
    stream: Annotated[Optional[list[str]], typer.Option("--stream", help="kind:key=value,... e.g. video:fps=30,patches=64; audio:rate=48000,hop=320,codebooks=8; sensor:rate=30,values=24,per_token=24; text:tokens=512")] = None,
    sample_seconds: Annotated[Optional[float], typer.Option("--sample-seconds", help="Seconds of recorded data per sample.")] = None,
    samples: SamplesOpt = None,
    target_tokens: TokensOpt = None,
    params: Annotated[Optional[str], typer.Option("--params", help="Model size (e.g. 100M) for compute-optimal suggestions.")] = None,
    json_: JsonOpt = False,
    csv_: CsvOpt = False,
    markdown: MarkdownOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Token budget of multi-modal samples: per stream, per sample, per hour of data; data hours for a target.

    Examples:

      sizeup tokens --sample-seconds 10 --stream video:fps=30,patches=16 --stream audio:rate=48000,hop=960,codebooks=4 --stream text:tokens=64 --samples 1M

      sizeup tokens examples/tokens/vr-session.yaml --tokens 2B --params 100M
    """
    from pydantic import ValidationError

    from sizeup.catalog import read_user_yaml
    from sizeup.core.scaling import compute_optimal
    from sizeup.core.tokens import token_budget
    from sizeup.errors import pydantic_message
    from sizeup.report import Report, Table
    from sizeup.schema import TokensFile
    from sizeup.units import format_count, parse_count

    raw: dict = {}
    if spec is not None:
        if not spec.exists():
            raise SizeupError(f"token spec {str(spec)!r} not found")
        raw = read_user_yaml(spec, "token spec") or {}
        if not isinstance(raw, dict):
            raise SizeupError(f"{spec}: expected a mapping with sample_seconds and streams")
    if stream:
        raw["streams"] = [parse_stream(s) for s in stream]
    if sample_seconds is not None:
        raw["sample_seconds"] = sample_seconds
    for key, value in (("samples", samples), ("target_tokens", target_tokens), ("params", params)):
        if value is not None:
            raw[key] = value
    if not raw.get("streams"):
        raise SizeupError("give the streams: a spec file or one or more --stream kind:key=value,...")
    if "sample_seconds" not in raw:
        raise SizeupError("give --sample-seconds (seconds of recorded data per sample)")
    try:
        tf = TokensFile.model_validate(raw)
    except ValidationError as exc:
        raise SizeupError(pydantic_message(exc)) from None
    n_samples = parse_count(tf.samples) if tf.samples is not None else 0.0
    target = parse_count(tf.target_tokens) if tf.target_tokens is not None else 0.0
    budget = token_budget(tuple(s.to_core() for s in tf.streams), tf.sample_seconds, n_samples, target)
    rows = [(p.name, p.kind, f"{p.tokens_per_second:,.4g}", f"{p.tokens_per_sample:,.4g}", p.formula) for p in budget.streams]
    rows.append(("total", "", f"{budget.tokens_per_hour / 3600:,.4g}", f"{budget.tokens_per_sample:,.4g}", "sum"))
    summary = [("tokens per sample", f"{budget.tokens_per_sample:,.0f}"),
               ("tokens per hour of data", f"{budget.tokens_per_hour:,.0f} ({format_count(budget.tokens_per_hour)})")]
    if n_samples:
        summary += [("samples", f"{n_samples:,.0f}"), ("total tokens", f"{budget.total_tokens:,.0f} ({format_count(budget.total_tokens)})"),
                    ("hours of data", f"{n_samples * tf.sample_seconds / 3600:,.1f}")]
    if target:
        summary += [("target tokens", format_count(target)), ("data hours for target", f"{budget.data_hours_for_target:,.1f}"),
                    ("samples for target", f"{budget.samples_for_target:,.0f}")]
    data = {"sample_seconds": tf.sample_seconds, "tokens_per_sample": budget.tokens_per_sample,
            "tokens_per_hour": budget.tokens_per_hour, "samples": n_samples, "total_tokens": budget.total_tokens,
            "target_tokens": target, "data_hours_for_target": budget.data_hours_for_target,
            "samples_for_target": budget.samples_for_target,
            "streams": [{"name": p.name, "kind": p.kind, "tokens_per_second": p.tokens_per_second,
                         "tokens_per_sample": p.tokens_per_sample, "formula": p.formula, "inputs": dict(p.inputs)}
                        for p in budget.streams]}
    terms = list(budget.terms)
    from sizeup.core.explain import Term

    if n_samples:
        terms.append(Term("data/hours", n_samples * tf.sample_seconds / 3600, "h", "samples * sample_seconds / 3600",
                          {"samples": n_samples, "sample_seconds": tf.sample_seconds}, "definition"))
    if target:
        terms.append(Term("data/samples_for_target", budget.samples_for_target, "samples",
                          "ceil(target_tokens / tokens_per_sample)",
                          {"target_tokens": target, "tokens_per_sample": budget.tokens_per_sample}, "definition"))
    tokens_for_plan = target or budget.total_tokens
    if tf.params is not None and tokens_for_plan:
        co = compute_optimal(parse_count(tf.params), tokens_for_plan)
        summary += [("chinchilla: tokens for this model (20/param)", format_count(co.rule_tokens)),
                    ("chinchilla: model for these tokens", format_count(co.rule_params_for_tokens)),
                    ("fitted law optimum at same compute", f"{format_count(co.law_params)} params on {format_count(co.law_tokens)} tokens"),
                    ("verdict", co.verdict)]
        data["compute_optimal"] = {"tokens_per_param": co.tokens_per_param, "rule_tokens": co.rule_tokens,
                                   "rule_params": co.rule_params_for_tokens, "law_params": co.law_params,
                                   "law_tokens": co.law_tokens, "verdict": co.verdict}
        terms += list(co.terms)
    emit(Report(data=data, tables=[Table("token budget per stream", ["stream", "kind", "tokens/s of data", "tokens/sample", "formula"], rows),
                                   Table("summary", ["figure", "value"], summary)], terms=terms),
         json_, csv_, markdown, explain)
