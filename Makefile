# Two entry points for a fresh clone (README quick start): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
SIZEUP := $(VENV)/bin/sizeup
# CPU build of torch, installed before transformers so that nothing pulls a CUDA build.
TORCH_PIN := torch==2.13.0

.PHONY: demo test venv install install-dev install-trace bench fuzz clean

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

test: install-trace
	$(PY) -m pytest -n 2 tests

bench: install
	$(PY) benchmarks/cli_speed.py

# Bad-input fuzz of every command, long profile (>= 5,000 cases; counts printed, reports in .fuzz-report.*.json)
fuzz: install-dev
	rm -f .fuzz-report.*.json
	HYPOTHESIS_PROFILE=long SIZEUP_FUZZ_REPORT=.fuzz-report $(PY) -m pytest -n 2 -q -p no:cacheprovider tests/test_fuzz.py
	$(PY) tests/fuzz_cli.py .fuzz-report

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
