"""The web page in a real headless Chromium (Debian's chromium driven by Playwright; no browser is downloaded):
seed 004's job gives the same hours and cost as `sizeup train --json`; compare and search views; an explain;
a shared URL reloads the same answer; bad input shows the CLI's one line next to its field."""

import io
import json
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from sizeup.cli import main

CHROMIUM = "/usr/bin/chromium"
REQUIRED = os.environ.get("SIZEUP_REQUIRE_BROWSER") == "1"  # `make test` sets it: there a skip is a failure
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return f"needs the web extra and playwright ({exc.name} missing)"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return "needs Debian's chromium (apt-get install chromium)"
    return None


if _missing():
    if REQUIRED:
        pytest.fail(_missing(), pytrace=False)
    pytest.skip(_missing(), allow_module_level=True)

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from sizeup.web.app import BackgroundServer  # noqa: E402

SEED004 = {"model": "llama-2-7b", "tokens": "15M", "seq": "512", "global-batch": "16", "gpus": "1", "gpu": "a10",
           "platform": "lambda"}
SEED004_SELECT = {"precision": "fp16-mixed", "peft": "lora"}


def cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def srv():
    s = BackgroundServer(workers=2, timeout_s=10.0)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


def fill(page, values, selects=None):
    for name, value in values.items():
        page.fill(f"#f-{name}", value)
    for name, value in (selects or {}).items():
        page.select_option(f"#f-{name}", value)


def test_seed004_compare_search_explain_share_and_bad_input(srv, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    page.goto(f"{srv.url}/?view=train")
    fill(page, SEED004, SEED004_SELECT)
    page.click("#run")
    page.wait_for_selector("#sum-hours")

    # same hours and cost as `sizeup train ... --json`
    argv = ["train", "llama-2-7b", "--peft", "lora", "--precision", "fp16-mixed", "--tokens", "15M", "--seq", "512",
            "--global-batch", "16", "--gpus", "1", "--gpu", "a10", "--platform", "lambda", "--json"]
    code, out, _ = cli(argv)
    assert code == 0
    data = json.loads(out)
    assert page.inner_text("#sum-hours") == str(data["cost"]["estimated_hours"])
    assert page.inner_text("#sum-cost") == f"{data['cost']['total_cost_usd']:.4f}"
    assert page.locator("#chart svg").count() == 1
    shot = DOCS / "web.png" if os.environ.get("SIZEUP_UPDATE_SCREENSHOT") == "1" else tmp_path / "web.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    # open an --explain: the formula of the first figure becomes visible
    first = page.locator("#explain details").first
    expect(first.locator(".formula")).not_to_be_visible()
    first.locator("summary").click()
    expect(first.locator(".formula")).to_be_visible()
    assert "formula:" in first.inner_text()

    # reload the shared URL in a fresh page: same answer
    share = page.get_attribute("#share", "href")
    assert "peft=lora" in share and "tokens=15M" in share
    other = browser.new_page()
    other.goto(srv.url + share)
    assert other.inner_text("#sum-hours") == str(data["cost"]["estimated_hours"])
    assert other.inner_text("#sum-cost") == f"{data['cost']['total_cost_usd']:.4f}"
    other.close()

    # comparison view: the job carries over; several GPUs and platforms
    page.click("#view-compare")
    page.wait_for_selector("#f-gpu")
    assert page.input_value("#f-tokens") == "15M"
    fill(page, {"gpu": "a10,l4,a100-40gb-sxm", "platform": "lambda,aws,gcp"})
    page.click("#run")
    page.wait_for_selector("#sum-rows")
    assert int(page.inner_text("#sum-rows")) > 2
    assert "Pareto front" in page.inner_html("#chart")

    # search view with the Pareto chart
    page.click("#view-search")
    page.wait_for_selector("#f-objective")
    page.select_option("#f-objective", "pareto")
    fill(page, {"max-gpus": "8", "gpu": "a10,l4,a100-40gb-sxm", "platform": "lambda,aws"})
    page.click("#run")
    page.wait_for_selector("#sum-plans")
    assert int(page.inner_text("#sum-plans")) >= 1
    assert "Pareto front" in page.inner_html("#chart") and "Search (pareto)" in page.inner_html("#chart")

    # bad input: the CLI's one line, next to the field it names
    page.click("#view-train")
    page.wait_for_selector("#f-tokens")
    assert page.locator("#f-objective").count() == 0  # search-only fields are not part of the train view
    fill(page, {"tokens": "lots", "gpu": "a10", "platform": "lambda"})
    page.click("#run")
    page.wait_for_selector("#err-tokens")
    assert "tokens=lots" in page.url and "objective" not in page.url
    code, _, err = cli(["train", "llama-2-7b", "--tokens", "lots", "--gpu", "a10", "--json"])
    assert code == 2
    assert page.inner_text("#err-tokens") == err.strip().removeprefix("error: ")
    assert page.get_attribute("#f-tokens", "aria-invalid") == "true"
    page.close()


def test_serving_plan_view_with_an_engine_matches_the_cli(srv, browser):
    """The serving views in the browser: pick an engine and a KV dtype from their menus, run, and the headline is
    `sizeup serve-plan --json`'s best option; the infer view of a model that does not fit says so."""
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    page.goto(f"{srv.url}/?view=serve-plan")
    fill(page, {"model": "llama-3-8b", "gpu": "h100-sxm", "rps": "3", "platform": "aws", "requests": "200"},
         {"engine": "sglang", "kv-dtype": "fp8"})
    page.click("#run")
    page.wait_for_selector("#sum-best")
    code, out, _ = cli(["serve-plan", "llama-3-8b", "--gpu", "h100-sxm", "--rps", "3", "--platform", "aws",
                        "--requests", "200", "--engine", "sglang", "--kv-dtype", "fp8", "--json"])
    assert code == 0
    best = json.loads(out)["best"]
    assert page.inner_text("#sum-best") == f"{best['replicas']} x {best['gpu_id']} tp{best['tp']}"
    assert page.inner_text("#sum-usd-out") == f"{best['usd_per_1m_output_tokens']:,.3f}"
    assert "engine=sglang" in page.url and "kv-dtype=fp8" in page.url

    page.goto(f"{srv.url}/?view=infer")
    fill(page, {"model": "llama-3-70b", "gpu": "l4"})
    page.click("#run")
    page.wait_for_selector("#sum-fits")
    assert page.inner_text("#sum-fits") == "no" and page.inner_text("#sum-tpot") == "-"
    page.close()
