"""Bad-input fuzzing of the whole CLI (issue 15): hypothesis strategies for argument vectors and input files.

Used by tests/test_fuzz.py (a bounded, derandomized run inside `make test`) and by `make fuzz`
(HYPOTHESIS_PROFILE=long, >= 5,000 cases, counts printed). Every case runs in-process through
`sizeup.cli.main` with stdout/stderr captured and a per-run time bound, inside a fresh temporary
directory (the current directory during the run, so nothing a command writes escapes it).

The contract checked for every case (`problems()` returns what broke it):
  - the exit code is 0 or 2 (1 = an internal error: a bug, whatever the input);
  - on exit 2, stderr is exactly one line starting with 'error:';
  - no 'Traceback' anywhere and no Python warning ('RuntimeWarning', ...) on stderr or raised;
  - no NaN/inf shown to the user, no negative quantity in JSON output (signed differences excepted);
  - the run ends within RUN_BOUND_S.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import signal
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

# Per-run bounds: CPU seconds (what a run costs, independent of how loaded the machine is) and wall-clock
# seconds (catches a run blocked without using CPU, e.g. on a FIFO).
RUN_BOUND_S = 20.0
WALL_BOUND_S = 120.0
# `calibrate --refit` refits the whole development set (every point predicted, the serving points simulated) and,
# since the seventh session, fits the serving knobs on the inference rows (the validator's inference category re-run
# at each grid value of tp_allreduce_exposed_s, calib/serving.py): about 60 CPU-s on the 2-core development machine
# (16 CPU-s before), too close to RUN_BOUND_S to tell a hang from a refit; it gets its own bound.
REFIT_BOUND_S = 150.0

# --------------------------------------------------------------------------- what the commands take


def command_table() -> dict[str, tuple[list[str], list[str], list[str]]]:
    """name -> (positional names, value options, flag options), read from the typer app itself."""
    import typer

    from sizeup.cli import app, register

    register()
    group = typer.main.get_command(app)
    table = {}
    for name, cmd in group.commands.items():
        pos, opts, flags = [], [], []
        for p in cmd.params:
            if p.param_type_name != "option":
                pos.append(p.name)
            elif p.is_flag and not p.opts[0] == "--min-gpus":
                flags.append(p.opts[0])
            else:
                opts.append(p.opts[0])
        table[name] = (pos, opts, flags)
    return table


# Commands left out of the bounded run: `trace` builds torch models (seconds each; it has its own tests),
# `demo` replays whole data sets (seconds each), `serve` starts a web server (it runs until stopped).
SLOW = {"trace", "demo", "serve"}

PRESETS = ["llama-2-7b", "gpt2", "llama-3-8b", "mixtral-8x7b", "llama-2-70b", "deepseek-v3", "gemma-2-2b"]
GPUS = ["h100", "a100-80gb", "t4", "tpu-v5e", "gaudi2", "rtx-4090", "mi300x", "24GiB", "h100,a100-80gb", "a10"]

# Plausible values per option (the fuzz mixes them with HOSTILE values and files).
GOOD = {
    "--gpu": GPUS, "--buy-gpu": GPUS, "--gpus": ["1", "2", "8", "64", "1,8"], "--max-gpus": ["8", "64", "4096"],
    "--tokens": ["1B", "10M", "1,500,000", "2T"], "--samples": ["10000", "10K"], "--tokens-per-sample": ["512"],
    "--epochs": ["1", "3"], "--seq": ["512", "2048", "8192"], "--micro-batch": ["1", "4"],
    "--global-batch": ["16", "512"], "--grad-accum": ["1", "8"],
    "--precision": ["bf16-mixed", "fp16-mixed", "fp32", "tf32", "fp8", "bf16", "mixed"],
    "--optimizer": ["adamw", "adam8bit", "sgd", "lion", "adafactor"], "--zero": ["0", "1", "2", "3", "fsdp"],
    "--tp": ["1", "2", "8"], "--pp": ["1", "2"], "--cp": ["1", "2"], "--ep": ["1", "8"],
    "--recompute": ["none", "selective", "full"], "--peft": ["none", "lora", "qlora"], "--lora-rank": ["8", "16"],
    "--platform": ["aws", "lambda", "modal", "gcp"], "--pricing": ["on-demand", "spot"],
    "--deadline": ["2d", "12h", "1w"], "--budget": ["$5000", "50k", "1M"], "--sort": ["cost", "time"],
    "--offload": ["none", "cpu"], "--offload-optimizer": ["cpu", "none"], "--offload-params": ["cpu", "none"],
    "--phase": ["dev:3:4:0.62", "prod:3:1:lambda/a10", "x:1:1:modal/t4"], "--purchase-usd": ["1599"],
    "--power-w": ["450"], "--pue": ["1.2"], "--usd-per-kwh": ["0.18"], "--utilization": ["0.5"],
    "--amortize-months": ["36"], "--rent-usd-per-hour": ["0.7"], "--prompt-len": ["512", "p50=512,p95=2048"],
    "--output-len": ["128", "p50=200,p95=800"], "--batch": ["1", "32"], "--concurrency": ["8"], "--rps": ["5"],
    "--ttft-p95": ["2s"], "--tpot-p95": ["50ms"], "--weights": ["bf16", "int4", "fp8"], "--kv-dtype": ["fp8", "bf16"],
    "--stream": ["video:fps=30,patches=16", "audio:rate=48000,hop=960,codebooks=4", "text:tokens=64"],
    "--sample-seconds": ["10"], "--params": ["7B", "125M"], "--sizes": ["125M,350M", "1B"],
    "--tokens-per-param": ["20"], "--samples-per-param": ["1"], "--vocab": ["32000"], "--top": ["3", "10"],
    "--objective": ["cost", "time"], "--tolerance": ["0.25"], "--mfu-min": ["0.05"], "--vendor": ["nvidia", "amd"],
    "--kernel": ["fused", "eager"], "--layers": ["2"], "--worst": ["5"], "--max-age-days": ["365"],
    "--price-per-gpu-hour": ["2.5"], "--preemption-rate": ["0.05"], "--restart-s": ["600"],
    "--checkpoints-kept": ["2"], "--retain": ["30d"], "--attention": ["flash", "math"], "--fragmentation": ["0.1"],
    "--dropout": ["0.1"], "--export": ["deepspeed"], "--gpu-memory-utilization": ["0.9"],
}
HOSTILE = [
    "0", "-1", "-0", "nan", "NaN", "inf", "-inf", "1e308", "1e300T", "1e308TiB", "99999999999999999999",
    "18446744073709551616", "1180591620717411303424", "1,5B", "1,5", "15,00", "1.5", "0.5", "2048.5", "", " ",
    "abc", "$-5", "-$5", "1e-320", "5e-324", "1..8", "8,", ",", "0x10", "１２", "h100;rm -rf /", "potato", "-7B",
    "true", "null", "'", "\x00", "p50=-1,p95=2", "dev:nan:4:0.62", "dev:3:4:-5", "video:fps=1e308,patches=1",
    "a" * 300, "1e30", "1e29", "65537", "1048577",
]


def json_values() -> st.SearchStrategy:
    return st.sampled_from([0, -1, 1, 2, 7, 4096.7, 4096.0, True, False, "32", None, 1e308, -1e308, 2 ** 70,
                            [], {}, "nan", 1e-300, 10 ** 9, 128, 0.5])


def yaml_scalars() -> st.SearchStrategy:
    return st.sampled_from([".nan", ".inf", "-.inf", "-3d", "-50", "true", "2048.5", "sideways", "0", "-1", "1e308",
                            "99999999999999999999", "[]", "{}", "null", "'1,5B'", "7B", "h100", "'h100;x'", "3",
                            "1B", "2d", "$5000", "[1, 2]", "{a: 1}", "2048", "llama-2-7b", "lora", "fp32"])


# --------------------------------------------------------------------------- files

LLAMA = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 32,
         "num_attention_heads": 32, "intermediate_size": 11008, "max_position_embeddings": 4096}
GPT2 = {"model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024}
MIXTRAL = {"model_type": "mixtral", "vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
           "num_local_experts": 8, "num_experts_per_tok": 2}
SCENARIO_KEYS = ["model", "gpu", "gpus", "tokens", "samples", "tokens_per_sample", "epochs", "seq", "micro_batch",
                 "global_batch", "precision", "zero", "peft", "lora_rank", "platform", "pricing", "deadline", "budget",
                 "sort", "phases", "buy", "timing", "max_gpus", "recompute", "optimizer", "junk_key"]
CLAIM_KEYS = ["model", "params", "tokens", "samples", "tokens_per_sample", "epochs", "gpu", "gpus", "micro_batch",
              "seq", "precision", "peft", "platform"]
CLAIMED_KEYS = ["throughput_tokens_per_s", "throughput_samples_per_s", "wall_clock_hours", "gpu_hours", "cost_usd",
                "price_per_gpu_hour", "peak_memory_gb"]
SPECIAL = ["fifo", "dir", "missing", "binary", "deep_json", "deep_yaml", "alias_bomb", "empty", "list"]


@dataclass
class FileSpec:
    kind: str       # config, scenario, claims, tokens, catalog, points, or a SPECIAL kind
    content: object = None
    suffix: str = ".yaml"


def _mutated(base: dict, keys: list[str], values: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(lambda muts: {**base, **dict(muts)}, st.lists(st.tuples(st.sampled_from(keys), values),
                                                                   max_size=3))


def config_files() -> st.SearchStrategy:
    keys = sorted(set(LLAMA) | set(GPT2) | set(MIXTRAL) | {"head_dim", "attention_bias", "tie_word_embeddings"})
    base = st.sampled_from([LLAMA, GPT2, MIXTRAL])
    return base.flatmap(lambda b: _mutated(b, keys, json_values())).map(lambda d: FileSpec("config", d, ".json"))


def scenario_files() -> st.SearchStrategy:
    good = st.fixed_dictionaries({"model": st.sampled_from(PRESETS[:3]), "gpu": st.sampled_from(["h100", "t4"]),
                                  "tokens": st.sampled_from(["1B", "10M"])})
    extra = st.dictionaries(st.sampled_from(SCENARIO_KEYS), yaml_scalars(), max_size=3)
    return st.builds(lambda g, e: {**g, **e}, good, extra).map(lambda d: FileSpec("scenario", d))


def claims_files() -> st.SearchStrategy:
    base = {"model": "gpt2", "tokens": "10B", "gpu": "a100-80gb", "gpus": 8,
            "claimed": {"throughput_tokens_per_s": 1200000, "wall_clock_hours": 2.3}}
    extra = st.dictionaries(st.sampled_from(CLAIM_KEYS), yaml_scalars(), max_size=3)
    claimed = st.dictionaries(st.sampled_from(CLAIMED_KEYS), yaml_scalars(), max_size=2)
    return st.builds(lambda e, c: {**base, **e, "claimed": {**base["claimed"], **c}}, extra, claimed).map(
        lambda d: FileSpec("claims", d))


def token_files() -> st.SearchStrategy:
    stream = st.sampled_from([{"kind": "video", "fps": 30, "patches_per_frame": 16},
                              {"kind": "audio", "sample_rate_hz": 48000, "hop_samples": 960},
                              {"kind": "text", "tokens_per_second": 3}, {"kind": "sensor", "rate_hz": 30}])
    field_ = st.sampled_from(["fps", "patches_per_frame", "sample_rate_hz", "hop_samples", "codebooks", "rate_hz",
                              "tokens_per_second", "values_per_step", "kind"])
    streams = st.lists(st.builds(lambda s, m: {**s, **dict(m)}, stream,
                                 st.lists(st.tuples(field_, yaml_scalars()), max_size=2)), min_size=1, max_size=3)
    top = st.dictionaries(st.sampled_from(["sample_seconds", "samples", "target_tokens", "params"]), yaml_scalars(),
                          max_size=2)
    return st.builds(lambda s, t: {"sample_seconds": 10, "streams": s, **t}, streams, top).map(
        lambda d: FileSpec("tokens", d))


def catalog_files() -> st.SearchStrategy:
    def entry(muts):
        gpu = {"name": "Fuzz GPU", "vendor": "nvidia", "memory": {"value": 80, "unit": "GB", "source": "x"}}
        gpu.update(dict(muts))
        return {"gpus": {"fuzz-gpu": gpu}}

    keys = st.sampled_from(["name", "vendor", "memory", "peak_flops_per_s", "match", "efficiency", "tdp_w"])
    return st.lists(st.tuples(keys, yaml_scalars()), max_size=3).map(entry).map(lambda d: FileSpec("catalog", d))


def points_files() -> st.SearchStrategy:
    from sizeup.catalog import read_yaml
    from sizeup.validate.points import DEV_SET

    first = (read_yaml(DEV_SET) or {}).get("points", [{}])[0]
    keys = sorted(first) or ["id"]
    return st.lists(st.tuples(st.sampled_from(keys), yaml_scalars()), max_size=3).map(
        lambda muts: FileSpec("points", {"points": [{**first, **dict(muts)}]}))


def special_files() -> st.SearchStrategy:
    return st.sampled_from(SPECIAL).map(lambda k: FileSpec(k))


def write_file(spec: FileSpec, folder: Path, index: int) -> str:
    """Materialise a FileSpec in `folder`; returns the path to pass on the command line."""
    import yaml

    path = folder / f"f{index}{spec.suffix}"
    if spec.kind == "fifo":
        os.mkfifo(path)
    elif spec.kind == "dir":
        path.mkdir()
    elif spec.kind == "missing":
        pass
    elif spec.kind == "binary":
        path.write_bytes(b"\x00\xff\xfe" * 100)
    elif spec.kind == "deep_json":
        path = path.with_suffix(".json")
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif spec.kind == "deep_yaml":
        path.write_text("[" * 5_000 + "]" * 5_000)
    elif spec.kind == "alias_bomb":
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
        path.write_text("\n".join(lines) + "\n")
    elif spec.kind == "empty":
        path.write_text("")
    elif spec.kind == "list":
        path.write_text("- 1\n- 2\n")
    elif spec.suffix == ".json":
        path.write_text(json.dumps(spec.content))
    else:
        text = yaml.safe_dump(spec.content, sort_keys=False)
        # the hostile scalars are YAML source text: put them back unquoted (.nan, -3d, [1, 2], ...)
        text = re.sub(r"'(\.nan|\.inf|-\.inf|null|true|\[\]|\{\}|\[1, 2\]|\{a: 1\}|-?\d[\w.]*)'", r"\1", text)
        path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- argument vectors


@dataclass
class Case:
    argv: list[str]
    files: list[FileSpec] = field(default_factory=list)


FILE_FOR_TARGET = {"audit": "claims", "tokens": "tokens", "validate": "points"}


def _target(command: str, hostile: bool = True) -> st.SearchStrategy:
    kind = FILE_FOR_TARGET.get(command)
    if not hostile:  # a plausible target: a preset, or the example file of the command
        examples = {"claims": ["examples/claims/consistent-example.yaml", "examples/claims/seed004-t4-lora.yaml"],
                    "tokens": ["examples/tokens/vr-session.yaml"], "points": []}.get(
            kind, ["examples/seed004.yaml", "examples/llama3-8b-fsdp.yaml"] if command in ("compare", "budget") else [])
        root = Path(__file__).parent.parent
        return st.sampled_from([str(root / e) for e in examples] or PRESETS)
    if kind == "claims":
        files = st.one_of(claims_files(), special_files())
    elif kind == "tokens":
        files = st.one_of(token_files(), special_files())
    elif kind == "points":
        files = st.one_of(points_files(), special_files())
    else:
        files = st.one_of(config_files(), scenario_files(), special_files())
    names = st.sampled_from(PRESETS + ["potato", "llama;2", " ", "Llama-2 7B", "meta-llama/Llama-2-7b-hf"])
    return st.one_of(files, names)


def _value(option: str, hostile: bool = True) -> st.SearchStrategy:
    good = GOOD.get(option, ["1", "2", "0.5"])
    if not hostile and option not in ("--catalog", "--tokens-spec"):
        return st.sampled_from(good)
    # plausible values three times as often as hostile ones, so that many cases get past the parsers
    strategies = [st.sampled_from(good), st.sampled_from(good), st.sampled_from(good), st.sampled_from(HOSTILE)]
    if option in ("--catalog",):
        strategies = [catalog_files(), special_files()]
    elif option in ("--tokens-spec",):
        strategies = [token_files(), special_files()]
    return st.one_of(*strategies)


@st.composite
def cases(draw, table: dict, commands: list[str]) -> Case:
    command = draw(st.sampled_from(commands))
    pos, opts, flags = table[command]
    argv: list[str] = [command]
    files: list[FileSpec] = []

    def add(value) -> None:
        if isinstance(value, FileSpec):
            files.append(value)
            argv.append(f"@file{len(files) - 1}")
        else:
            argv.append(value)

    if command == "export":
        add(draw(st.sampled_from(["deepspeed", "torchtitan", "accelerate", "megatron", "fsdp", "potato"])))
        pos = pos[1:]
    # half the cases are plausible (presets, example files, good values) so that many runs get past the
    # parsers and their outputs are judged; the other half mix in hostile values and files
    hostile = draw(st.booleans())
    if pos and draw(st.booleans() if command not in FILE_FOR_TARGET else st.just(True)):
        add(draw(_target(command, hostile)))
    chosen = draw(st.lists(st.sampled_from(opts), max_size=5 if hostile else 3, unique=True)) if opts else []
    for opt in chosen:
        argv.append(opt)
        add(draw(_value(opt, hostile)))
    for flag in draw(st.lists(st.sampled_from(flags), max_size=2, unique=True)) if flags else []:
        argv.append(flag)
    if "--json" not in argv and "--csv" not in argv and "--markdown" not in argv and "--json" in flags \
            and draw(st.booleans()):
        argv.append("--json")
    return Case(argv, files)


# --------------------------------------------------------------------------- running and judging


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    seconds: float
    warnings: list[str]
    timed_out: bool = False


class _Timeout(BaseException):
    pass


def bound_for(argv: list[str]) -> float:
    """CPU-second bound of one case: REFIT_BOUND_S for a calibration refit, RUN_BOUND_S otherwise."""
    return REFIT_BOUND_S if argv[:1] == ["calibrate"] and "--refit" in argv else RUN_BOUND_S


def run_case(case: Case, bound_s: float | None = None) -> Outcome:
    """Run one case in-process in a fresh temporary directory; stdout/stderr captured; SIGALRM bounds the time
    (bound_s, default bound_for(case.argv))."""
    from sizeup.cli import main

    if bound_s is None:
        bound_s = bound_for(case.argv)

    with tempfile.TemporaryDirectory(prefix="sizeup-fuzz-") as tmp:
        folder = Path(tmp)
        paths = [write_file(spec, folder, i) for i, spec in enumerate(case.files)]
        argv = [paths[int(a[5:])] if a.startswith("@file") else a for a in case.argv]
        out, err = io.StringIO(), io.StringIO()
        old_cwd = os.getcwd()
        old_handlers = (signal.getsignal(signal.SIGALRM), signal.getsignal(signal.SIGPROF))

        def alarm(signum, frame):
            raise _Timeout()

        signal.signal(signal.SIGALRM, alarm)
        signal.signal(signal.SIGPROF, alarm)
        t0 = time.perf_counter()
        code, timed_out = None, False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                os.chdir(folder)
                signal.setitimer(signal.ITIMER_PROF, bound_s)
                signal.setitimer(signal.ITIMER_REAL, max(bound_s, WALL_BOUND_S))
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = main(argv)
            except _Timeout:
                timed_out = True
            except SystemExit as exc:  # main returns codes; an escaped exit is still judged
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception as exc:  # noqa: BLE001 - escaped from main: the worst outcome
                import traceback

                err.write("Traceback (escaped main)\n" + "".join(traceback.format_exception(exc)))
                code = 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.setitimer(signal.ITIMER_PROF, 0)
                signal.signal(signal.SIGALRM, old_handlers[0])
                signal.signal(signal.SIGPROF, old_handlers[1])
                os.chdir(old_cwd)
        seconds = time.perf_counter() - t0
        return Outcome(code, out.getvalue(), err.getvalue(), seconds,
                       [f"{w.category.__name__}: {w.message}" for w in caught], timed_out)


_NAN = re.compile(r"(?<![\w/.-])(nan|inf|-inf)(?![\w])", re.IGNORECASE)
_WARNING = re.compile(r"\b\w*Warning\b")
# JSON keys whose values are signed by nature (differences, errors, changes): negatives allowed there
_SIGNED = re.compile(r"(error|delta|diff|change|bias|vs_|_vs|relative|rel_|signed|log|slope|offset|saving|margin"
                     r"|headroom|residual|skew|exponent)", re.IGNORECASE)


def _negatives(data, path: str = "") -> list[str]:
    found = []
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(k, str) and _SIGNED.search(k):
                continue
            found += _negatives(v, f"{path}.{k}")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += _negatives(v, f"{path}[{i}]")
    elif isinstance(data, float) and not math.isfinite(data):
        found.append(f"{path}={data}")
    elif isinstance(data, (int, float)) and not isinstance(data, bool) and data < 0:
        found.append(f"{path}={data}")
    return found


def problems(case: Case, out: Outcome) -> list[str]:
    """The ways this outcome breaks the contract (empty = fine), each a short label: detail."""
    found = []
    if out.timed_out:
        return [f"hang: no answer within {bound_for(case.argv):g} CPU-s / {WALL_BOUND_S:g} s"]
    if out.code not in (0, 2):
        found.append(f"exit-{out.code}: {out.stderr.strip()[:200]}")
    if "Traceback" in out.stdout + out.stderr:
        found.append("traceback")
    if out.code == 2:
        lines = out.stderr.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("error:"):
            found.append(f"multi-line error: {len(lines)} lines: {out.stderr.strip()[:200]!r}")
    if _WARNING.search(out.stderr) or out.warnings:
        found.append(f"warning: {(out.warnings or [_WARNING.search(out.stderr).group(0)])[0][:200]}")
    if out.code == 0:
        data = None
        if "--json" in case.argv and out.stdout.strip():
            try:
                data = json.loads(out.stdout, parse_constant=lambda c: float(c.lower().replace("infinity", "inf")))
            except ValueError:
                data = None
        if data is not None:  # JSON is judged by its numbers (a string "nan" is the user's own text)
            neg = _negatives(data)
            if neg:
                found.append(f"negative/nan in JSON: {', '.join(neg[:3])}")
        else:
            echoed = {w.lower() for a in case.argv for w in re.findall(r"[A-Za-z]+", a)} | {
                w.lower() for f in case.files for w in re.findall(r"[A-Za-z]+", str(f.content))}
            m = _NAN.search(out.stdout)
            if m and m.group(1).lower().lstrip("-") not in echoed:  # not the user's own word shown back
                found.append(f"nan/inf: ...{out.stdout[max(0, m.start() - 60):m.end() + 20]!r}")
        if re.search(r"\$-\d", out.stdout) and not any("$-" in a for a in case.argv):
            found.append("negative: a negative dollar amount")
    return found


def label(problem: str) -> str:
    return problem.split(":", 1)[0]


def merge_reports(prefix: str) -> dict:
    """Add up the per-worker reports PREFIX.*.json of a `make fuzz` run."""
    import collections
    import glob

    counts: dict = collections.defaultdict(collections.Counter)
    examples: dict = collections.defaultdict(list)
    for name in sorted(glob.glob(f"{prefix}.*.json")):
        with open(name) as fh:
            report = json.load(fh)
        for group, values in report["counts"].items():
            for key, value in values.items():
                if group == "slowest_s":
                    counts[group][key] = max(counts[group][key], value)
                else:
                    counts[group][key] += value
        for kind, items in report["examples"].items():
            examples[kind].extend(items)
    return {"counts": {k: dict(v) for k, v in counts.items()}, "examples": dict(examples)}


if __name__ == "__main__":  # python tests/fuzz_cli.py .fuzz-report
    import sys

    merged = merge_reports(sys.argv[1] if len(sys.argv) > 1 else ".fuzz-report")
    c = merged["counts"]
    problems = c.get("problems", {})
    print(f"fuzz: {c.get('cases', {}).get('total', 0)} cases; exit codes {c.get('exit', {})}; "
          f"slowest {c.get('slowest_s', {}).get('max', 0)} s")
    for kind in ("exit-1", "traceback", "multi-line error", "nan/inf", "negative", "negative/nan in JSON",
                 "warning", "hang"):
        print(f"  {kind:22s} {problems.get(kind, 0)}")
    for kind, items in merged["examples"].items():
        for item in items[:3]:
            print(f"  e.g. {kind}: {item['argv']} -> {item['problem'][:200]}")
    sys.exit(1 if problems else 0)
