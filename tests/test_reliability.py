"""Issue 15: every reproduction of the bad-input campaign, one test each (classes 1-10).

Each bad input must give exit 2 and exactly one 'error:' line (or a correct result where the input is legal);
nothing may print NaN/inf, a negative quantity, a traceback or a warning. The cases that belonged to the typed job
description (timing overrides, strict scenario values, TrainSetup checks at construction, scenario files for
params/serve-plan/trace) are fixed by it (issue 11) and run as plain tests.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fuzz_cli  # noqa: E402



def run(*argv: str) -> fuzz_cli.Outcome:
    out = fuzz_cli.run_case(fuzz_cli.Case([str(a) for a in argv]), bound_s=60)
    assert not out.timed_out, f"{argv}: no answer within 60 s"
    return out


def refused(*argv: str, fragment: str = "") -> str:
    """Assert exit 2 with one 'error:' line (containing `fragment`) and nothing else wrong; return the line."""
    out = run(*argv)
    assert out.code == 2, (argv, out.code, out.stderr, out.stdout[-500:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
    assert not out.warnings, out.warnings
    assert "internal error" not in lines[0], lines[0]
    assert fragment.lower() in lines[0].lower(), (fragment, lines[0])
    return lines[0]


def accepted(*argv: str) -> fuzz_cli.Outcome:
    """Assert exit 0 and the whole fuzz contract (no NaN/inf/negatives/warnings)."""
    out = run(*argv)
    assert out.code == 0, (argv, out.stderr)
    problems = fuzz_cli.problems(fuzz_cli.Case(list(argv)), out)
    assert not problems, problems
    return out


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


LLAMA = dict(fuzz_cli.LLAMA)


def config(tmp_path: Path, **changes) -> str:
    data = {**LLAMA, **changes}
    return write(tmp_path / "config.json", json.dumps(data))


# ---------------------------------------------------------------- 1. precisions the accelerator cannot run


@pytest.mark.parametrize("gpu", ["tpu-v5e", "tpu-v4", "tpu-v5p", "gaudi2"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16-mixed"])
def test_precision_without_a_compute_path_is_refused(gpu, precision):
    # a plan that fits (an infeasible plan is a result with no time, and never reaches the compute dtype)
    line = refused("train", "llama-2-7b", "--gpu", gpu, "--gpus", "64", "--zero", "3", "--precision", precision,
                   "--tokens", "1B", "--recompute", "full", "--seq", "512", fragment="cannot run --precision")
    assert "bf16" in line  # names a precision that works


def test_search_and_compare_refuse_or_skip_without_nan():
    refused("search", "llama-2-7b", "--gpu", "tpu-v5e", "--precision", "fp32", "--tokens", "1B",
            fragment="cannot run")
    refused("compare", "llama-2-7b", "--gpu", "tpu-v5e", "--precision", "fp32", "--tokens", "1B", "--gpus", "64",
            "--zero", "3", "--recompute", "full", "--seq", "512", fragment="cannot run")


def test_fp8_refusal_recommends_a_precision_that_runs():
    line = refused("train", "llama-2-7b", "--gpu", "tpu-v5e", "--precision", "fp8", "--tokens", "1B",
                   fragment="no fp8")
    recommended = line.split("--precision", 1)[1].split()[0]
    assert "fp16" not in line
    accepted("train", "llama-2-7b", "--gpu", "tpu-v5e", "--gpus", "16", "--zero", "3", "--precision", recommended,
             "--tokens", "1B")


# ---------------------------------------------------------------- 3. NaN, inf and negatives in structured values


@pytest.mark.parametrize("phase, fragment", [("dev:nan:4:0.62", "months"), ("dev:3:4:-5", "negative"),
                                             ("dev:3:inf:1", "runs_per_month"), ("dev:3:4:$-5", "negative")])
def test_budget_phase_values(phase, fragment):
    refused("budget", "--phase", phase, fragment=fragment)


def test_budget_scenario_buy_values(tmp_path):
    path = write(tmp_path / "s.yaml", "model: llama-2-7b\ntokens: 1B\nbuy: {gpu: rtx-4090, pue: .nan}\n")
    refused("budget", path, fragment="pue")
    path = write(tmp_path / "s2.yaml", "model: llama-2-7b\ntokens: 1B\nbuy: {gpu: rtx-4090, purchase_usd: -5}\n")
    refused("budget", path, fragment="purchase_usd")


@pytest.mark.parametrize("phases", ["true", "5", "{a: 1}", "[1]"])
def test_budget_scenario_phases_of_the_wrong_shape(tmp_path, phases):
    # found by `make fuzz`: `phases: true` was an internal error
    refused("budget", write(tmp_path / "s.yaml", f"model: llama-2-7b\ntokens: 1B\nphases: {phases}\n"),
            fragment="phases")


@pytest.mark.parametrize("key, value", [("deadline", "-3d"), ("budget", "-50")])
def test_scenario_negative_deadline_and_budget(tmp_path, key, value):
    path = write(tmp_path / "s.yaml", f"model: gpt2\ntokens: 10M\ngpu: h100\n{key}: {value}\n")
    refused("compare", path, fragment="negative")


@pytest.mark.parametrize("argv, fragment", [
    (["compare", "gpt2", "--gpu", "h100", "--tokens", "10M", "--budget", "$-5"], "negative"),
    (["compare", "gpt2", "--gpu", "h100", "--tokens", "10M", "--budget", "1e300T"], "out of range"),
    (["memory", "llama-2-7b", "--gpu", "1e308TiB"], ""),
    (["tokens", "--sample-seconds", "10", "--stream", "video:fps=1e308,patches=16"], "out of range"),
])
def test_suffix_overflow_and_negative_money(argv, fragment):
    refused(*argv, fragment=fragment)


def test_audit_negative_params(tmp_path):
    path = write(tmp_path / "c.yaml", "params: -7B\ntokens: 1B\ngpu: a100-80gb\ngpus: 8\n"
                                      "claimed: {wall_clock_hours: 10}\n")
    refused("audit", path, fragment="params")


# ---------------------------------------------------------------- 4. scenario timing overrides (job tree)


@pytest.mark.parametrize("override", ["{dp_overlap: .nan}", "{matmul_training_fraction: .inf}",
                                      "{dp_overlap: [1]}", "{dp_overlap: fast}"])
def test_scenario_timing_overrides_are_validated(tmp_path, override):
    path = write(tmp_path / "s.yaml", f"model: gpt2\ntokens: 10M\ngpu: h100\ntiming: {override}\n")
    refused("train", path)


# ---------------------------------------------------------------- 5. bad input reported as an internal error


@pytest.mark.parametrize("changes, fragment", [
    ({"num_attention_heads": 0}, "num_attention_heads"), ({"hidden_size": 4096.7}, "whole number"),
    ({"num_hidden_layers": True}, "num_hidden_layers"), ({"num_hidden_layers": 10 ** 9}, "16,384"),
    ({"vocab_size": 2 ** 70}, "vocab_size"), ({"attention_bias": "false"}, "true or false"),
])
@pytest.mark.parametrize("command", ["params", "memory", "train"])
def test_config_json_values(tmp_path, changes, fragment, command):
    extra = {"memory": ["--gpu", "h100"], "train": ["--gpu", "h100", "--tokens", "1B"]}.get(command, [])
    refused(command, config(tmp_path, **changes), *extra, fragment=fragment)


def test_moe_with_zero_experts_is_refused(tmp_path):
    path = write(tmp_path / "config.json", json.dumps({**fuzz_cli.MIXTRAL, "num_local_experts": 0}))
    refused("params", path, fragment="num_local_experts")


def test_deeply_nested_files(tmp_path):
    deep = write(tmp_path / "config.json", "[" * 100_000 + "]" * 100_000)
    refused("params", deep, fragment="nested")
    deep_yaml = write(tmp_path / "claims.yaml", "[" * 5_000 + "]" * 5_000)
    refused("audit", deep_yaml, fragment="nested")


def test_alias_bomb_is_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    refused("audit", write(tmp_path / "c.yaml", "\n".join(lines) + "\n"), fragment="values")


@pytest.mark.parametrize("flag", ["--seq", "--micro-batch", "--gpus"])
def test_integers_past_int64(flag):
    refused("train", "llama-2-7b", "--gpu", "h100", "--tokens", "1B", flag, str(2 ** 63), fragment="must be <=")


@pytest.mark.parametrize("argv", [
    ["infer", "llama-2-7b", "--gpu", "h100", "--prompt-len", "1e308T"],
    ["fit-budget", "--params", "1e308T", "--budget", "1000", "--gpu", "h100"],
    ["search", "llama-2-7b", "--gpu", " ", "--tokens", "1B"],
    ["trace", "gpt2", "--micro-batch", "1099511627776"],
])
def test_internal_errors_are_now_refusals(argv):
    refused(*argv)


def test_claims_with_zero_samples(tmp_path):
    path = write(tmp_path / "c.yaml", "model: llama-2-7b\nsamples: 0\ntokens_per_sample: 512\ngpu: a100-80gb\n"
                                      "claimed: {wall_clock_hours: 10}\n")
    refused("audit", path, fragment="samples")


def test_hidden_not_divisible_by_heads_for_classes_that_derive_head_dim(tmp_path):
    path = write(tmp_path / "config.json", json.dumps({**fuzz_cli.GPT2, "n_embd": 770}))
    refused("params", path, fragment="not divisible")


# ---------------------------------------------------------------- 6. resources: sizes that drive work, special files


def test_max_gpus_bound_is_stated():
    refused("search", "llama-2-7b", "--gpu", "h100", "--tokens", "1B", "--max-gpus", str(2 ** 70),
            fragment="1,048,576")


def test_gpu_counts_grow_with_log_of_max_gpus():
    from sizeup.search.candidates import default_gpu_counts

    small = default_gpu_counts(8, 1024)
    assert small == tuple(sorted(set([1, 2, 4] + list(range(8, 1025, 8)))))  # unchanged below LINEAR_NODES nodes
    huge = default_gpu_counts(8, 1 << 20)
    assert len(huge) < 400 and huge[-1] == 1 << 20 and all(c % 8 == 0 for c in huge if c >= 8)
    steps = [b / a for a, b in zip(huge, huge[1:]) if a >= 8 * 128]
    assert max(steps) < 1.1  # ~4% apart: no large gap above the linear part


@pytest.mark.parametrize("kind", ["fifo", "dir"])
@pytest.mark.parametrize("command", ["compare", "budget", "audit", "validate", "tokens", "params"])
def test_special_files_are_refused_without_blocking(tmp_path, kind, command):
    path = tmp_path / ("in.json" if command == "params" else "in.yaml")
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    refused(command, str(path))


def test_oversized_file_is_refused(tmp_path, monkeypatch):
    import sizeup.catalog as catalog

    path = tmp_path / "c.yaml"
    path.write_text("x: 1\n" * 100)
    monkeypatch.setattr(catalog, "MAX_FILE_BYTES", 64)
    with pytest.raises(catalog.SizeupError, match="limit"):
        catalog.read_user_bytes(path, "claims file", catalog.MAX_FILE_BYTES)


# ---------------------------------------------------------------- 7. silently misread input


def test_ambiguous_comma_is_refused_and_thousands_accepted():
    refused("train", "llama-2-7b", "--gpu", "h100", "--tokens", "1,5B", fragment="ambiguous")
    a = accepted("train", "llama-2-7b", "--gpu", "h100", "--gpus", "8", "--zero", "3", "--tokens", "1,500,000",
                 "--json")
    assert json.loads(a.stdout)["tokens"] == 1_500_000


def test_offload_params_without_zero3():
    refused("memory", "llama-2-7b", "--gpu", "h100", "--offload-params", "cpu", "--zero", "1", fragment="--zero 3")
    # without --zero, ZeRO-3 is implied and said so (never silently ignored)
    out = accepted("memory", "llama-2-7b", "--gpu", "h100", "--offload-params", "cpu", "--json")
    assert json.loads(out.stdout)["setup"]["sharding"] == "zero3"


@pytest.mark.parametrize("argv, fragment", [
    (["gpus", "--vendor", "potato"], "vendor"),
    (["audit", "examples/claims/consistent-example.yaml", "--mfu-min", "-1"], "--mfu-min"),
    (["train", "llama-2-7b", "--gpu", "h100;rm -rf /", "--tokens", "1B"], "';'"),
])
def test_mistyped_values_are_refused(argv, fragment):
    refused(*argv, fragment=fragment)


@pytest.mark.parametrize("line, fragment", [("seq: 2048.5", "seq"), ("sort: sideways", "sort"),
                                            ("seq: true", "seq")])
def test_compare_scenario_values(tmp_path, line, fragment):
    refused("compare", write(tmp_path / "s.yaml", f"model: gpt2\ntokens: 10M\ngpu: h100\n{line}\n"),
            fragment=fragment)


def test_train_scenario_seq_true(tmp_path):
    refused("train", write(tmp_path / "s.yaml", "model: gpt2\ntokens: 10M\ngpu: h100\nseq: true\n"), fragment="seq")


# ---------------------------------------------------------------- 8. conventions


@pytest.mark.parametrize("command", ["params", "serve-plan", "trace"])
def test_every_command_takes_a_scenario_file(tmp_path, command):
    path = write(tmp_path / "s.yaml", "model: gpt2\ntokens: 10M\ngpu: h100\nrps: 1\n")
    accepted(command, path)


def test_no_error_points_to_a_missing_hardware_command():
    src = Path(__file__).parent.parent / "src" / "sizeup"
    offenders = [p.name for p in src.rglob("*.py") if "sizeup hardware" in p.read_text()]
    assert offenders == []


def test_infer_kv_budget_is_never_negative():
    out = accepted("infer", "llama-2-70b", "--gpu", "t4", "--json")
    data = json.loads(out.stdout)
    assert data["fits"] is False and data["kv_budget_bytes_per_gpu"] == 0


def test_bad_catalog_error_is_capped(tmp_path):
    import yaml

    gpus = {f"g{i}": {"name": "x" * 1000, "memory": "lots"} for i in range(300)}
    path = tmp_path / "cat.yaml"
    path.write_text(yaml.safe_dump({"gpus": gpus}))
    line = refused("gpus", "--catalog", str(path))
    assert len(line) <= 700


def test_pydantic_messages_list_the_first_problems_and_a_count():
    from pydantic import BaseModel, ValidationError

    from sizeup.errors import MAX_PROBLEMS, pydantic_message

    class M(BaseModel):
        a: list[int]

    with pytest.raises(ValidationError) as exc:
        M(a=["x"] * 50)
    text = pydantic_message(exc.value)
    assert text.count("valid integer") == MAX_PROBLEMS and f"and {50 - MAX_PROBLEMS} more problems" in text


# ---------------------------------------------------------------- 9. library entry points (job tree)


@pytest.mark.parametrize("kwargs", [{"gpus": 0}, {"micro_batch": 0}, {"gpus": 12, "tp": 8}])
def test_train_setup_validates_at_construction(kwargs):
    from sizeup.core.types import TrainSetup

    with pytest.raises(Exception):
        TrainSetup(**kwargs)


# ---------------------------------------------------------------- 10. numpy warnings in successful runs


@pytest.mark.parametrize("argv", [
    ["train", "llama-2-7b", "--gpu", "tpu-v5e", "--gpus", "16", "--zero", "3", "--tokens", "1B"],
    ["search", "llama-2-7b", "--gpu", "t4,h100", "--tokens", "1B", "--top", "3"],
    ["compare", "llama-2-7b", "--gpu", "t4,a100-80gb,tpu-v5e", "--gpus", "1,8", "--tokens", "1B"],
    ["infer", "llama-2-70b", "--gpu", "t4"],
    ["serve-plan", "llama-3-8b", "--rps", "5", "--gpu", "h100,t4"],
    ["fit-budget", "--budget", "1000", "--gpu", "h100", "--tokens", "1B"],
    ["scale", "--sizes", "125M,1B", "--gpus", "a100-80gb,8xh100-sxm"],
    ["memory", "mixtral-8x7b", "--gpu", "mi300x", "--zero", "3", "--gpus", "8"],
])
def test_successful_runs_raise_no_warnings(argv):
    accepted(*argv)


# ---------------------------------------------------------------- 2. the catalog cache


# the `cache` fixture (a fresh cache folder) is in conftest.py


def _entry(folder: Path) -> Path:
    files = sorted(folder.glob("catalog-*.json"))
    assert len(files) == 1, files
    return files[0]


def _gpt2_params() -> int:
    from sizeup.catalog import Catalog, catalog_cache
    from sizeup.core.params import count_params

    catalog_cache.reset()
    return count_params(Catalog().model("gpt2")).total


def test_cache_is_private_data_only_and_verified(cache):
    from sizeup.catalog import catalog_cache

    old = os.umask(0)
    try:
        reference = _gpt2_params()
    finally:
        os.umask(old)
    entry = _entry(cache)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600
    doc = json.loads(entry.read_text())
    assert doc["format"] == catalog_cache.FORMAT and doc["schema"] == catalog_cache.SCHEMA_VERSION
    assert len(doc["sources_sha256"]) == 64 and len(doc["payload_sha256"]) == 64
    assert _gpt2_params() == reference  # a warm run reads the cache and agrees


def test_tampered_entry_is_ignored_and_rebuilt(cache):
    reference = _gpt2_params()
    entry = _entry(cache)
    doc = json.loads(entry.read_text())
    doc["entries"]["models/gpt2.yaml"]["num_layers"] = 1000  # silently change the model
    entry.write_text(json.dumps(doc))
    assert _gpt2_params() == reference
    assert json.loads(_entry(cache).read_text())["entries"]["models/gpt2.yaml"]["num_layers"] != 1000


@pytest.mark.parametrize("content", [b"\x80\x04\x95garbage", b"{not json", b"[]", b'{"format": "other"}'])
def test_corrupt_entry_is_ignored_and_rebuilt(cache, content):
    reference = _gpt2_params()
    entry = _entry(cache)
    entry.write_bytes(content)
    assert _gpt2_params() == reference
    assert json.loads(_entry(cache).read_text())["format"] == "sizeup-catalog-cache"


def test_planted_pickle_never_runs_and_is_pruned(cache, tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    cache.mkdir(parents=True, mode=0o700)
    for name in ("models-0123456789abcdef0123.pickle", "gpus-0123456789abcdef0123.pickle"):
        (cache / name).write_bytes(pickle.dumps(Evil()))
    reference = _gpt2_params()
    assert not marker.exists()
    assert not list(cache.glob("*.pickle"))  # old pickle entries are pruned when the cache is written
    assert reference > 0


def test_entry_with_loose_mode_or_symlink_is_not_trusted(cache):
    reference = _gpt2_params()
    entry = _entry(cache)
    doc = json.loads(entry.read_text())
    os.chmod(entry, 0o644)
    from sizeup.catalog import catalog_cache

    assert catalog_cache.load_entries(cache, doc["sources_sha256"]) is None
    entry.unlink()
    other = cache.parent / "elsewhere.json"
    other.write_text(json.dumps(doc))
    os.chmod(other, 0o600)
    entry.symlink_to(other)
    assert catalog_cache.load_entries(cache, doc["sources_sha256"]) is None
    assert _gpt2_params() == reference


def test_stale_entries_are_pruned_beyond_the_most_recent(cache):
    """Writing an entry keeps it and the KEEP_RECENT - 1 most recently written others (another checkout's or
    version's catalog sharing the folder is not evicted on every call); older ones and temp files go."""
    _gpt2_params()
    from sizeup.catalog import catalog_cache

    current = sorted(cache.glob("catalog-*.json"))[0]
    doc = json.loads(current.read_text())
    others = []
    for i in range(5):
        other = cache / f"catalog-v1-{i:032d}.json"
        other.write_text("{}")
        os.chmod(other, 0o600)
        os.utime(other, (1_000_000 + i, 1_000_000 + i))  # older first
        others.append(other)
    tmp = cache / ".catalog-1-abc.tmp"
    tmp.write_text("")
    catalog_cache.write_entries(cache, doc["sources_sha256"], doc["entries"])
    kept = catalog_cache.KEEP_RECENT - 1
    assert current.exists() and not tmp.exists()
    assert [o.exists() for o in others] == [False] * (5 - kept) + [True] * kept


def test_cache_directory_owned_by_someone_else_is_not_used(cache, monkeypatch):
    from sizeup.catalog import catalog_cache

    cache.mkdir(parents=True, mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 12345)
    assert catalog_cache.private_dir(create=True) is None
    assert _gpt2_params() > 0  # runs without the cache


def test_catalog_package_does_not_use_pickle():
    src = Path(__file__).parent.parent / "src" / "sizeup"
    assert not [p.name for p in src.rglob("*.py") if "import pickle" in p.read_text()]


# --------------------------------------------------------------------------- found by `make fuzz` (fifth session)


def test_search_scenario_counts_that_are_not_numbers_are_one_line(tmp_path):
    """A scenario whose max_gpus is '$5000' reached int() inside `search` and ended as an internal error (exit 1)."""
    scen = write(tmp_path / "s.yaml", "model: gpt2\ntokens: 10M\ngpu: t4\nmax_gpus: '$5000'\n")
    refused("search", scen, "--top", "3", "--uneven-pp", fragment="--max-gpus must be a whole number")


def test_token_budget_that_overflows_a_float_is_refused(tmp_path):
    """30 fps x 16 patches x 1e308 s of data per sample printed 'tokens per sample: inf'."""
    spec = write(tmp_path / "t.yaml", "sample_seconds: 1e308\nstreams:\n- {kind: video, fps: 30, patches_per_frame: 16}\n")
    refused("tokens", spec, fragment="overflows")


def test_calibration_refit_with_run_options_is_refused():
    """`calibrate --refit` used to accept and ignore the options of calibrating from a run (job flags, --holdout)."""
    refused("calibrate", "--refit", "--grad-accum", "1", "--compile", fragment="options for calibrating from a run")
