"""Outputs other tools can use: tidy CSV (csv module + pandas, numeric columns numeric), --json valid against
`sizeup schema COMMAND`, tables no wider than the terminal at COLUMNS=100 and 120, grouped --help."""

from __future__ import annotations

import csv
import io
import json

import pytest

from sizeup.cli import COMMAND_TO_MODULE, HELP_GROUPS, main

MAIN = {
    "memory": ["memory", "llama-2-7b", "--gpu", "t4", "--peft", "qlora", "--seq", "512"],
    "train": ["train", "llama-3-8b", "--gpu", "h100-sxm", "--gpus", "8", "--tokens", "10B"],
    "compare": ["compare", "llama-2-7b", "--tokens", "100M", "--peft", "lora", "--gpu", "t4,a10,a100-80gb,h100-sxm"],
    "search": ["search", "gpt2", "--tokens", "1B", "--gpu", "h100", "--max-gpus", "8"],
    "scale": ["scale", "--sizes", "10M,1B"],
    "infer": ["infer", "llama-2-7b", "--gpu", "a10"],
    "serve-plan": ["serve-plan", "llama-3-8b", "--rps", "5", "--gpu", "l40s"],
}
JSON = dict(MAIN, **{
    "params": ["params", "llama-2-7b"], "models": ["models"], "gpus": ["gpus"], "platforms": ["platforms"],
    "budget": ["budget", "--phase", "dev:3:4:0.62"],
    "export": ["export", "deepspeed", "llama-3-8b", "--gpus", "8", "--zero", "2"],
    "tokens": ["tokens", "--sample-seconds", "10", "--stream", "text:tokens=64", "--samples", "1M"],
    "audit": ["audit", "examples/claims/seed004-t4-full.yaml"], "validate": ["validate", "--worst", "3"],
    "fit-budget": ["fit-budget", "--budget", "200", "--params", "100M", "--gpu", "a100-80gb", "--gpus", "1"],
    "frameworks": ["frameworks"],
})


def run(capsys, argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("width", [100, 120])
@pytest.mark.parametrize("name", sorted(MAIN))
def test_tables_fit_the_terminal(capsys, monkeypatch, name, width):
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, err = run(capsys, MAIN[name])
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= width
    # no number is split across lines: every line of a table body has whole cells (no dangling digits at a border)
    for line in out.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            assert not any(c[:1] in ",." and c[1:2].isdigit() for c in cells), line


def test_wide_shows_every_column(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    _, narrow, _ = run(capsys, MAIN["search"])
    _, wide, _ = run(capsys, MAIN["search"] + ["--wide"])
    assert "--wide shows all" in narrow and "vs #1" not in narrow.split("what was pruned")[0]
    assert "vs #1" in wide and "platform" in wide and "pricing" in wide


@pytest.mark.parametrize("name", sorted(MAIN))
def test_csv_is_tidy_and_loads_into_pandas(capsys, name):
    pd = pytest.importorskip("pandas")
    code, out, err = run(capsys, MAIN[name] + ["--csv"])
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert len({len(r) for r in rows}) == 1 and len(rows) >= 2  # one table, one header row
    header = rows[0]
    assert len(set(header)) == len(header) and all(h == h.lower() and " " not in h for h in header)
    frame = pd.read_csv(io.StringIO(out), na_values=["n/a"], keep_default_na=False)
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    assert numeric, header


def test_csv_splits_a_figure_and_its_p10_p90_range_into_numbers():
    """'28.0 ms (25.6 ms–52.5 ms)' in a figure/value table -> ttft_ms, ttft_p10_ms, ttft_p90_ms columns; a range whose
    ends carry another unit than the figure stays text."""
    from sizeup.report import Table, table_csv

    t = Table("closed form", ["figure", "value", "note"],
              [("TTFT", "28.0 ms (25.6 ms–52.5 ms)", "prefill"), ("wall-clock", "59.0 min (50.0 min–1.2 h)", ""),
               ("batch", "8", "")])
    header, row = list(csv.reader(io.StringIO(table_csv(t))))
    got = dict(zip(header, row))
    assert got["ttft_ms"] == "28" and got["ttft_p10_ms"] == "25.6" and got["ttft_p90_ms"] == "52.5"
    assert got["ttft_note"] == "prefill" and got["wall_clock"] == "59.0 min (50.0 min–1.2 h)"


def test_csv_units_in_header_and_table_choice(capsys, tmp_path):
    code, out, err = run(capsys, MAIN["memory"] + ["--csv"])
    assert out.splitlines()[0] == "component,memory_gib,share_percent" and "GiB" not in out
    assert "other tables: fit" in err
    code, out, _ = run(capsys, MAIN["memory"] + ["--csv", "--table", "fit"])
    assert code == 0 and out.splitlines()[0].startswith("gpu,gpu_memory_gib,")
    assert main(MAIN["memory"] + ["--csv", "--table", "nope"]) == 2
    assert "no table 'nope'" in capsys.readouterr().err
    code, out, _ = run(capsys, MAIN["search"] + ["--csv-dir", str(tmp_path)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert code == 0 and "plans.csv" in files and len(files) >= 2
    assert all(len({len(r) for r in csv.reader(open(tmp_path / f))}) == 1 for f in files)
    other = tmp_path / "memory"
    code, out, _ = run(capsys, MAIN["memory"] + ["--csv", f"{other}/"])
    assert code == 0 and sorted(p.name for p in other.iterdir()) == ["fit.csv", "memory.csv"]


@pytest.mark.parametrize("name", sorted(JSON))
def test_json_matches_its_schema(capsys, name):
    jsonschema = pytest.importorskip("jsonschema")
    code, out, err = run(capsys, ["schema", name])
    assert code == 0, err
    schema = json.loads(out)
    code, out, err = run(capsys, JSON[name] + ["--json"])
    assert code == 0, err
    jsonschema.validate(json.loads(out), schema)
    if name in ("train", "memory"):
        code, out, _ = run(capsys, JSON[name] + ["--json", "--explain"])
        jsonschema.validate(json.loads(out), schema)


@pytest.mark.parametrize("argv", [
    MAIN["train"] + ["--platform", "lambda"],
    MAIN["search"] + ["--export", "deepspeed"],
    MAIN["memory"] + ["--explain"],
], ids=["train-platform", "search-export", "memory-explain"])
def test_json_with_options_matches_its_schema(capsys, argv):
    jsonschema = pytest.importorskip("jsonschema")
    _, out, _ = run(capsys, ["schema", argv[0]])
    schema = json.loads(out)
    code, out, err = run(capsys, argv + ["--json"])
    assert code == 0, err
    jsonschema.validate(json.loads(out), schema)


def test_unknown_storage_cost_is_na_not_zero(capsys):
    """Lambda's catalog entry has no storage price: the cost is unknown (n/a / null), never $0.0000."""
    code, out, _ = run(capsys, MAIN["train"] + ["--platform", "lambda", "--explain"])
    assert code == 0
    line = next(ln for ln in out.splitlines() if "storage cost" in ln)
    assert "n/a" in line and "$0" not in line
    assert "no storage price" in out
    code, out, _ = run(capsys, MAIN["train"] + ["--platform", "lambda", "--json"])
    data = json.loads(out)
    assert data["cost_breakdown"]["storage_cost"] is None and data["cost"]["storage_cost_usd"] is None
    code, out, _ = run(capsys, MAIN["train"] + ["--platform", "lambda", "--csv", "--table", "cost"])
    assert "storage_cost" in out.splitlines()[0] and "n/a" in out.splitlines()[1]


@pytest.mark.trace
def test_trace_json_matches_its_schema(capsys, tmp_path):
    pytest.importorskip("transformers")
    jsonschema = pytest.importorskip("jsonschema")
    cfg = {"model_type": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 172,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 256, "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    _, out, _ = run(capsys, ["schema", "trace"])
    schema = json.loads(out)
    code, out, err = run(capsys, ["trace", str(path), "--seq", "32", "--json"])
    assert code == 0, err
    jsonschema.validate(json.loads(out), schema)


def test_every_json_command_has_a_schema():
    from sizeup.report.schemas import OUTPUTS

    no_json = {"demo", "schema", "plot", "serve"}  # tables only; a schema; a chart file; a web server
    assert set(COMMAND_TO_MODULE) - no_json == set(OUTPUTS)


def test_schema_refuses_unknown_command(capsys):
    assert main(["schema", "nope"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_help_is_grouped_with_full_descriptions(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for group, _ in HELP_GROUPS:
        assert f"{group}:" in out
    grouped = {n for _, names in HELP_GROUPS for n in names}
    assert set(COMMAND_TO_MODULE) <= grouped
    assert "..." not in out.split("Size a model:")[1]
    assert "--install-completion" in out and "--show-completion" in out


def test_show_completion_prints_a_script():
    """In a fresh process: typer writes the script through a console bound at first use, which another test's
    captured stdout may hold in a shared test process."""
    import os
    import subprocess
    import sys

    # typer detects the parent shell (shellingham): under `make` that is sh, which it cannot complete; its test hook
    # makes --show-completion take the shell name as a value instead
    env = {**os.environ, "SHELL": "/bin/bash", "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run([sys.executable, "-c", "import sys; from sizeup.cli import main; "
                           "sys.exit(main(['--show-completion', 'bash']))"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0 and "complete" in done.stdout, done.stderr


@pytest.mark.parametrize("header, column", [
    ("binding / reason", "binding_and_reason"), ("mean running / queued", "mean_running_and_queued"),
    ("max req/s/replica", "max_req_per_s_per_replica"), ("$/1M out", "usd_per_1m_out"),
])
def test_csv_column_names_read_a_bare_slash_as_per_and_a_spaced_one_as_and(header, column):
    from sizeup.report import snake

    assert snake(header) == column
