"""`sizeup serve`: the JSON API answers exactly what the CLI's --json prints; bad input is 400 + the CLI's line
and the field it names; size limits are 413; a job past the time limit is cut and the server keeps serving."""

import io
import json
import urllib.error
import urllib.parse
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from sizeup.cli import main  # noqa: E402
from sizeup.web.app import BackgroundServer  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SEED004 = {"model": "llama-2-7b", "peft": "lora", "precision": "fp16-mixed", "tokens": "15M", "seq": 512,
           "global-batch": 16, "gpus": 1, "gpu": "a10", "platform": "lambda"}


@pytest.fixture(scope="module")
def srv():
    s = BackgroundServer(workers=1, timeout_s=10.0)
    yield s
    s.stop()


def cli_json(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def http(url, data=None, method=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def argv_of(command, job):
    argv = [command, job["model"]] if "model" in job else [command]
    for k, v in job.items():
        if k != "model":
            argv += [f"--{k}", str(v)]
    return argv + ["--json"]


@pytest.mark.parametrize("command, job", [
    ("train", SEED004),
    ("train", dict(SEED004, framework="hf-trainer")),
    ("memory", {"model": "llama-2-7b", "gpu": "a10", "peft": "lora"}),
    ("compare", {"model": "llama-2-7b", "tokens": "15M", "peft": "lora", "gpu": "a10,l4", "platform": "lambda,aws"}),
    ("infer", {"model": "llama-3-8b", "gpu": "h100-sxm", "batch": 8}),
    ("infer", {"model": "deepseek-v3", "gpu": "h200", "tp": 8, "ep": 8, "weights": "fp8", "batch": 4,
               "requests": 200}),
    ("infer", {"model": "llama-3-8b", "gpu": "a100-80gb", "engine": "sglang", "kv-dtype": "fp8", "rps": 2,
               "requests": 200}),
    ("serve-plan", {"model": "llama-3-8b", "gpu": "a100-80gb", "rps": 3, "engine": "vllm", "platform": "gcp",
                    "requests": 200}),
    ("serve-plan", {"model": "llama-3-8b", "gpu": "a100-80gb", "rps": 3, "tp": 2, "requests": 200}),
    ("serve-plan", {"model": "mixtral-8x7b", "gpu": "h100-sxm", "rps": 2, "ep": 2, "requests": 200}),
])
def test_api_equals_cli_json(srv, command, job):
    code, out, _ = cli_json(argv_of(command, job))
    assert code == 0
    status, body, headers = http(f"{srv.url}/api/{command}?" + urllib.parse.urlencode(job))
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert body == out  # byte for byte what `sizeup ... --json` prints
    status, body2, _ = http(f"{srv.url}/api/{command}", json.dumps(job).encode(), "POST",
                            {"content-type": "application/json"})
    assert status == 200 and body2 == out


def test_bad_input_is_400_with_the_cli_line_and_field(srv):
    job = dict(SEED004, tokens="lots")
    code, _, err = cli_json(argv_of("train", job))
    assert code == 2
    status, body, _ = http(f"{srv.url}/api/train?" + urllib.parse.urlencode(job))
    assert status == 400
    answer = json.loads(body)
    assert answer["error"] == err.strip().removeprefix("error: ") and answer["field"] == "tokens"
    status, body, _ = http(f"{srv.url}/api/train?model=llama-2-7b&gpu=not-a-gpu")
    assert status == 400 and json.loads(body)["field"] == "gpu" and "not-a-gpu" in json.loads(body)["error"]


@pytest.mark.parametrize("query, status, field", [
    ("model=../../etc/passwd.json", 400, "model"),
    ("model=llama-2-7b&catalog=/etc/x.yaml", 400, "catalog"),
    ("model=llama-2-7b&plot=/tmp/x.svg", 400, "plot"),
    ("model=llama-2-7b&bad%20key=1", 400, "bad key"),
])
def test_web_jobs_cannot_touch_server_files(srv, query, status, field):
    code, body, _ = http(f"{srv.url}/api/train?{query}")
    assert code == status and json.loads(body)["field"] == field


def test_unknown_command_is_404(srv):
    code, body, _ = http(f"{srv.url}/api/rm?model=x")
    assert code == 404 and "unknown command" in json.loads(body)["error"]


def test_size_limits_413(srv):
    big = json.dumps({"model": "llama-2-7b", "pad": "x" * 1_100_000}).encode()
    code, body, _ = http(f"{srv.url}/api/train", big, "POST", {"content-type": "application/json"})
    assert code == 413 and "1 MB" in json.loads(body)["error"]
    config = json.dumps({"model_type": "llama", "pad": "x" * 300_000})
    code, body, _ = http(f"{srv.url}/api/params", json.dumps({"config": config}).encode(), "POST",
                         {"content-type": "application/json"})
    assert code == 413 and json.loads(body)["field"] == "config" and "256 KB" in json.loads(body)["error"]


def test_pasted_config_gives_the_same_answer_as_the_file(srv, tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
           "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
           "max_position_embeddings": 2048, "tie_word_embeddings": False, "rms_norm_eps": 1e-5}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    code, out, _ = cli_json(["memory", str(path), "--gpu", "t4", "--json"])
    assert code == 0
    status, body, _ = http(f"{srv.url}/api/memory", json.dumps({"config": json.dumps(cfg), "gpu": "t4"}).encode(),
                           "POST", {"content-type": "application/json"})
    assert status == 200
    a, b = json.loads(out), json.loads(body)
    assert b["per_gpu"] == a["per_gpu"] and b["peak_reserved_bytes"] == a["peak_reserved_bytes"]
    status, body, _ = http(f"{srv.url}/api/memory", json.dumps({"config": "{not json", "gpu": "t4"}).encode(), "POST")
    assert status == 400 and json.loads(body)["field"] == "config"


def test_long_job_is_cut_and_the_server_keeps_serving(srv):
    pool = srv.server.pool
    restarts = pool.stats["restarts"]
    pool.timeout_s = 0.05
    try:
        code, body, _ = http(f"{srv.url}/api/search?model=llama-3-70b&tokens=1T&max-gpus=4096&top=3")
    finally:
        pool.timeout_s = 10.0
    assert code == 504 and "stopped" in json.loads(body)["error"]
    assert pool.stats["restarts"] == restarts + 1
    code, _, _ = http(f"{srv.url}/api/memory?model=gpt2&gpu=t4")
    assert code == 200


def test_page_renders_tables_chart_and_explain(srv):
    code, html, _ = http(f"{srv.url}/?view=train&" + urllib.parse.urlencode(SEED004))
    assert code == 200
    assert "<svg" in html and "Roofline" in html and "<table>" in html and 'id="explain"' in html
    code, html, _ = http(f"{srv.url}/?view=train&model=llama-2-7b&gpu=a10&tokens=lots")
    assert code == 400 and 'id="err-tokens"' in html and "cannot read count" in html
    code, css, _ = http(f"{srv.url}/static/style.css")
    assert code == 200 and "body" in css


def test_serving_form_offers_engines_kv_dtype_and_platform(srv):
    from sizeup.catalog.engines import load_engines

    code, html, _ = http(f"{srv.url}/?view=serve-plan")
    assert code == 200
    for name in ("engine", "kv-dtype", "platform", "pricing", "rps"):
        assert f'name="{name}"' in html, name
    for engine in load_engines():
        assert f'<option value="{engine}"' in html, engine
    # a chosen engine reaches the command: the page names its profile
    code, html, _ = http(f"{srv.url}/?view=infer&model=llama-3-8b&gpu=h100-sxm&batch=4&engine=lmdeploy")
    assert code == 200 and "TurboMind" in html


def test_infer_page_for_a_replica_that_does_not_fit(srv):
    """70B in 16-bit on one 24 GB L4 does not fit: the page is the answer (fits no, no latency or price), not a 500."""
    code, html, _ = http(f"{srv.url}/?view=infer&model=llama-3-70b&gpu=l4")
    assert code == 200
    assert 'id="sum-fits">no<' in html and 'id="sum-tpot">-<' in html and 'id="sum-usd-out">-<' in html
    assert "--tp" in html  # the fixes are shown


def test_infer_page_takes_a_length_spread_as_the_cli_does(srv):
    job = {"model": "llama-3-8b", "gpu": "h100-sxm", "prompt-len": "p50=512,p95=2048", "rps": "2", "requests": "200"}
    code, out, _ = cli_json(argv_of("infer", job))
    assert code == 0
    data = json.loads(out)
    code, html, _ = http(f"{srv.url}/?view=infer&" + urllib.parse.urlencode(job))
    assert code == 200 and "730 in + 128 out" in html and data["prompt_len"] == 730


def test_serve_plan_page_headline_is_the_cli_best_option(srv):
    job = {"model": "llama-3-8b", "gpu": "h100-sxm", "rps": "3", "engine": "vllm", "kv-dtype": "fp8",
           "platform": "aws", "requests": "200"}
    code, out, _ = cli_json(argv_of("serve-plan", job))
    best = json.loads(out)["best"]
    code, html, _ = http(f"{srv.url}/?view=serve-plan&" + urllib.parse.urlencode(job))
    assert code == 200
    assert f'id="sum-best">{best["replicas"]} x {best["gpu_id"]} tp{best["tp"]}<' in html
    assert f'id="sum-month">${best["usd_per_month"]:,.2f}<' in html
    assert f'id="sum-usd-out">{best["usd_per_1m_output_tokens"]:,.3f}<' in html


def test_page_for_a_job_that_does_not_fit(srv):
    code, html, _ = http(f"{srv.url}/?view=train&model=llama-2-7b&gpu=t4&tokens=15M")
    assert code == 200
    assert 'id="sum-fits">no<' in html and 'id="sum-hours">-<' in html and "<svg" in html


@pytest.mark.parametrize("argv, message", [
    (["serve", "--port", "70000"], "--port must be in 1..65535"),
    (["serve", "--workers", "0"], "--workers must be in 1..64"),
    (["serve", "--timeout-s", "-1"], "--timeout-s must be > 0"),
])
def test_serve_bad_flags_are_one_line_exit_2(argv, message):
    code, out, err = cli_json(argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err


def test_page_post_with_a_pasted_config(srv):
    cfg = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
           "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
           "max_position_embeddings": 2048, "tie_word_embeddings": False}
    body = urllib.parse.urlencode({"view": "memory", "config": json.dumps(cfg), "gpu": "t4"}).encode()
    code, html, _ = http(f"{srv.url}/", body, "POST", {"content-type": "application/x-www-form-urlencoded"})
    assert code == 200 and 'id="sum-peak"' in html and "<svg" in html
    assert "not part of the link" in html  # the share link cannot carry the pasted config
    body = urllib.parse.urlencode({"view": "memory", "config": "x" * 300_000, "gpu": "t4"}).encode()
    code, html, _ = http(f"{srv.url}/", body, "POST", {"content-type": "application/x-www-form-urlencoded"})
    assert code == 413 and 'id="err-config"' in html and "256 KB" in html


# ---------------------------------------------------------------- the page never answers 500, whatever the job

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_MODELS = ["llama-3-8b", "llama-3-70b", "mixtral-8x7b", "gemma-2-9b", "gpt2", "qwen3-30b-a3b", "nope-model"]
_GPUS = ["l4", "t4", "a100-40gb", "h100-sxm", "rtx-4090", "h100-sxm,l4", "zzz"]
_VALUE = {"tp": ["1", "2", "8", "0", "-1", "x"], "ep": ["1", "2", "3", "0", "x"], "batch": ["1", "64", "100000", "0", "1.5"],
          "rps": ["0.5", "5", "1e9", "0", "-2", "inf", "nan"], "prompt-len": ["128", "32000", "p50=512,p95=2048", "0"],
          "output-len": ["1", "256", "1e7", "-5"], "weights": ["bf16", "int4", "fp8", "int3"],
          "kv-dtype": ["fp8", "int8", "", "fp4"], "engine": ["vllm", "lmdeploy-0.1", "llama.cpp", "hf-generate", "x"],
          "requests": ["50", "0", "-1"], "platform": ["aws", "lambda", "nowhere"], "pricing": ["spot", "on-demand", "??"],
          "ttft-p95": ["2s", "10ms", "soon"], "tpot-p95": ["50ms", "1us", "-"],
          "tokens": ["15M", "2T", "0", "lots"], "seq": ["512", "131072", "0"], "micro-batch": ["1", "64", "-1"],
          "gpus": ["1", "8", "4096", "0"], "zero": ["3", "fsdp-full", "9"], "peft": ["lora", "qlora", "x"],
          "precision": ["bf16-mixed", "fp8", "fp64"], "deadline": ["72h", "1s", "-3d"], "budget": ["5000", "0", "x"]}
_VIEW_FIELDS = {"infer": ["tp", "ep", "batch", "rps", "prompt-len", "output-len", "weights", "kv-dtype", "engine", "requests",
                          "platform", "pricing"],
                "serve-plan": ["tp", "ep", "rps", "prompt-len", "output-len", "weights", "kv-dtype", "engine",
                               "requests", "platform", "ttft-p95", "tpot-p95"],
                "train": ["tokens", "seq", "micro-batch", "gpus", "zero", "peft", "precision", "platform", "pricing"],
                "memory": ["seq", "micro-batch", "gpus", "zero", "peft", "precision"],
                "compare": ["tokens", "gpus", "peft", "precision", "platform", "pricing", "deadline", "budget"]}


@st.composite
def serving_jobs(draw):
    view = draw(st.sampled_from(sorted(_VIEW_FIELDS)))
    job = {"view": view, "model": draw(st.sampled_from(_MODELS)), "gpu": draw(st.sampled_from(_GPUS))}
    for name in draw(st.lists(st.sampled_from(_VIEW_FIELDS[view]), max_size=5, unique=True)):
        job[name] = draw(st.sampled_from(_VALUE[name]))
    if view == "serve-plan":
        job.setdefault("rps", "2")
    if view in ("infer", "serve-plan"):
        job.setdefault("requests", "100")
    return job


@settings(max_examples=int(__import__("os").environ.get("SIZEUP_WEB_FUZZ_N", "60")), deadline=None,
          derandomize=__import__("os").environ.get("SIZEUP_WEB_FUZZ_N") is None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(job=serving_jobs())
def test_pages_answer_200_or_400_never_500(srv, job):
    """Random serving and training jobs, good and bad: the page is an answer (200, infeasible included) or the CLI's one line
    next to a field (400); never a server error, never NaN on the page."""
    code, html, _ = http(f"{srv.url}/?" + urllib.parse.urlencode(job))
    assert code in (200, 400), (job, code, html[-500:])
    assert "NaN" not in html and "Traceback" not in html
    if code == 400:
        assert 'id="error"' in html or 'class="err"' in html, job
