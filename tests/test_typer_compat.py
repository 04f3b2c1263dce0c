"""The typer shim (sizeup/_typer_compat.py) and the lazy catalog model index: same behaviour, less work.

Fails loudly when typer changes under the shim (version or the names it replaces)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
import typer._coercion as coercion
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.models import OptionInfo
import typer.core as core

from sizeup import _typer_compat
from sizeup.cli import main


def test_typer_is_a_version_the_shim_was_written_for():
    assert typer.__version__.startswith(_typer_compat.TYPER_VERSIONS), (
        f"typer {typer.__version__}: re-check src/sizeup/_typer_compat.py against typer/core.py and "
        "typer/_coercion.py, then update TYPER_VERSIONS")
    assert _typer_compat.install()
    assert core.build_runtime_param is _typer_compat.lazy_build_runtime_param
    assert coercion.build_runtime_param is _typer_compat._original_build
    assert "build_runtime_param" in core._TyperParameter.get_runtime_param.__code__.co_names
    assert hasattr(coercion.RuntimeParam, "coerce") and hasattr(coercion.RuntimeParam, "_coerce_value")


def test_options_not_given_build_no_converter(monkeypatch, capsys):
    built = []
    original = _typer_compat._original_build
    monkeypatch.setattr(_typer_compat, "_original_build", lambda d: built.append(d.annotation) or original(d))
    assert main(["params", "gpt2", "--json"]) == 0
    assert main(["train", "llama-2-7b", "--gpu", "a100-80gb", "--gpus", "8", "--tokens", "1B", "--seq", "1024",
                 "--json"]) == 0
    capsys.readouterr()
    assert built == []  # plain str / decimal values take the fast path: no converter at all
    assert main(["train", "llama-2-7b", "--gpu", "a100-80gb", "--gpus", "+8", "--tokens", "1B", "--seq", "1_024",
                 "--json"]) == 0
    capsys.readouterr()
    assert built == [int]  # only the given option that needs typer's converter (a train command has ~65)


_ANNOTATIONS = st.sampled_from([str, int, float])
_TEXT = st.one_of(st.from_regex(r"[0-9]{1,20}(\.[0-9]{0,16})?", fullmatch=True),
                  st.from_regex(r"[ +\-_.eE0-9a-z]{0,12}", fullmatch=True), st.text(max_size=12))


@settings(max_examples=400, deadline=None)
@given(annotation=_ANNOTATIONS, text=_TEXT)
def test_fast_path_returns_what_typers_own_converter_returns(annotation, text):
    """Independent reference: typer's converter (pydantic TypeAdapter) built by typer itself."""
    descriptor = coercion.resolve_type_descriptor(annotation, OptionInfo())
    known, value = _typer_compat.plain_value(descriptor, text)
    if not known:
        return
    expected = _typer_compat._original_build(descriptor)._coerce_value(text, param=None, ctx=None)
    assert type(value) is type(expected) and value == expected


def test_fast_path_leaves_constrained_and_custom_options_to_typer():
    for info in (OptionInfo(min=1), OptionInfo(max=3), OptionInfo(clamp=True), OptionInfo(parser=int)):
        descriptor = coercion.resolve_type_descriptor(int, info)
        assert _typer_compat.plain_value(descriptor, "5") == (False, None)
    path = coercion.resolve_type_descriptor(Path, OptionInfo())
    assert _typer_compat.plain_value(path, "x.yaml") == (False, None)


def test_a_plain_estimate_does_not_import_typers_pydantic_adapters():
    code = ("import sys, io, contextlib\nfrom sizeup.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = main(['memory', 'llama-2-7b', '--gpu', 'a100-80gb', '--gpus', '8', '--seq', '2048'])\n"
            "print(rc, 'typer._adapters' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "False"]


def test_bad_values_are_still_one_line_exit_2(capsys):
    assert main(["memory", "llama-2-7b", "--gpu", "a100-80gb", "--seq", "abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "--seq" in err
    assert main(["train", "llama-2-7b", "--gpu", "a100-80gb", "--micro-batch", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_lazy_model_index_matches_the_validated_catalog():
    """The index built from each file's aliases equals the one built from every validated ModelArch."""
    from sizeup.catalog import Catalog, normalize

    lazy = Catalog()
    index = dict(lazy._model_index)
    assert len(lazy._archs) == 0  # building the index validated nothing
    expected: dict[str, str] = {}
    for model_id, arch in Catalog().models.items():
        for key in (model_id, *arch.aliases):
            expected[normalize(key)] = model_id
            if "/" in key:
                expected.setdefault(normalize(key.split("/", 1)[1]), model_id)
    assert index == expected
    assert lazy.model("meta-llama/Llama-2-7b-hf").id == "llama-2-7b" and len(lazy._archs) == 1


def test_the_command_entry_point_runs_blas_single_threaded_unless_told(monkeypatch):
    import sizeup.cli
    from sizeup import _entry

    seen = []
    monkeypatch.setattr(sizeup.cli, "entrypoint", lambda: seen.append(_entry.os.environ.get("OPENBLAS_NUM_THREADS")))
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    _entry.run()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    _entry.run()
    assert seen == ["1", "4"]


def test_console_script_and_module_use_the_entry_point():
    import tomllib

    root = Path(__file__).parent.parent
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sizeup"] == "sizeup._entry:run"
    assert "from sizeup._entry import run" in (root / "src" / "sizeup" / "__main__.py").read_text()
    out = subprocess.run([sys.executable, "-m", "sizeup", "params", "gpt2", "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and '"total"' in out.stdout
