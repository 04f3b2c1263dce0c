"""The typer shim (sizeup/_typer_compat.py) and the lazy catalog model index: same behaviour, less work.

Fails loudly when typer changes under the shim (version or the names it replaces)."""

from __future__ import annotations

import typer
import typer._coercion as coercion
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
    assert 0 < len(built) <= 6  # only the given options (a train command has ~65)


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
