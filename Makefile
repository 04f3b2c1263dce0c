# Two entry points for a fresh clone (README quick start): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
SIZEUP := $(VENV)/bin/sizeup
# CPU build of torch, installed before transformers so that nothing pulls a CUDA build.
TORCH_PIN := torch==2.13.0

.PHONY: demo test venv install install-dev install-trace install-web install-export-check chromium bench clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	touch $@

venv: $(VENV)/.created

install: venv
	$(PIP) install -e .

install-dev: install
	$(PIP) install -e ".[dev]"

install-trace: install-dev
	$(PIP) install "$(TORCH_PIN)"
	$(PIP) install -e ".[trace]"

demo: install
	$(SIZEUP) demo

# web extra + Playwright's Python API for the browser tests; never a downloaded browser (Debian's chromium)
install-web: install-dev
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PIP) install -e ".[web,browser-tests]"

chromium:
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: install-trace install-web install-export-check chromium
	SIZEUP_REQUIRE_BROWSER=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pytest -n 2 tests
# The target frameworks' config parsers for the export round-trip tests, against the CPU torch above.
install-export-check: install-trace
	$(PIP) install -e ".[export-check]"
	DS_BUILD_OPS=0 $(PIP) install --no-deps --no-build-isolation "deepspeed==0.19.8" "torchtitan==0.2.2"


bench: install
	$(PY) benchmarks/cli_speed.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
