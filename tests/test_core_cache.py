"""The validated-object cache (sizeup/catalog/core_cache.py): the objects it serves are the objects validation
builds, it is verified and keyed on sources and code, and a warm estimate runs without pydantic."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sizeup.catalog import Catalog, catalog_cache, core_cache
from sizeup.core.types import MlpKind


def _validated() -> Catalog:
    """A catalog whose objects come from pydantic validation (the cache off)."""
    old = os.environ.get("SIZEUP_NO_CACHE")
    os.environ["SIZEUP_NO_CACHE"] = "1"
    catalog_cache.reset()
    core_cache.reset()
    try:
        c = Catalog()
        _ = (c.models, c.gpus, c.platforms, c._gpu_matcher.keys)
        return c
    finally:
        if old is None:
            del os.environ["SIZEUP_NO_CACHE"]
        else:
            os.environ["SIZEUP_NO_CACHE"] = old
        catalog_cache.reset()
        core_cache.reset()


def _core_file(folder: Path) -> Path:
    files = sorted(folder.glob("core-*.json"))
    assert len(files) == 1, files
    return files[0]


def test_every_packaged_object_round_trips_with_its_types():
    ref = _validated()
    for kind, items in (("models", ref.models), ("gpus", ref.gpus), ("platforms", ref.platforms),
                        ("gpu_keys", ref._gpu_matcher.keys)):
        for key, obj in items.items():
            back = core_cache.decode(json.loads(json.dumps(core_cache.encode(obj), allow_nan=False)))
            assert core_cache.same(back, obj), (kind, key)


def test_same_tells_a_strenum_from_its_string():
    arch = _validated().models["gpt2"]
    plain = dataclasses.replace(arch, mlp_kind=str(arch.mlp_kind.value))
    assert plain == arch  # what == alone would accept
    assert not core_cache.same(plain, arch)
    assert core_cache.same(arch, dataclasses.replace(arch))


def test_cached_catalog_serves_the_validated_objects(cache):
    ref = _validated()
    warm = Catalog()
    assert core_cache.same(warm.gpus, ref.gpus) and core_cache.same(warm.platforms, ref.platforms)
    assert core_cache.same(warm._gpu_matcher.keys, ref._gpu_matcher.keys)
    for model_id in ref.models:
        assert core_cache.same(warm.model(model_id), ref.models[model_id])
    assert warm.gpu("NVIDIA H100 SXM5 80GB").id == ref.gpu("NVIDIA H100 SXM5 80GB").id == "h100-sxm"
    f = _core_file(cache)
    assert f.stat().st_mode & 0o777 == 0o600
    doc = json.loads(f.read_text())
    assert doc["format"] == core_cache.FORMAT and sorted(doc["entries"]) == ["gpu_keys", "gpus", "models",
                                                                               "platforms"]
    core_cache.reset()
    catalog_cache.reset()
    hit, gpus = core_cache.get(Catalog(), "gpus")  # a new process reads the file back
    assert hit and core_cache.same(gpus, ref.gpus)


def test_tampered_core_entry_is_not_served(cache):
    Catalog().model("gpt2")
    f = _core_file(cache)
    doc = json.loads(f.read_text())
    doc["entries"]["models"]["gpt2"]["f"]["num_layers"] = 1000
    f.write_text(json.dumps(doc))
    core_cache.reset()
    catalog_cache.reset()
    assert Catalog().model("gpt2").num_layers == 12


def test_a_code_change_is_a_miss(cache, monkeypatch):
    Catalog().model("gpt2")
    first = _core_file(cache)
    monkeypatch.setattr(core_cache, "code_digest", lambda: "0" * 64)
    core_cache.reset()
    assert Catalog().model("gpt2").num_layers == 12
    assert len(list(cache.glob("core-*.json"))) == 2 and first.exists()


def test_only_listed_classes_are_decoded():
    with pytest.raises(KeyError):
        core_cache.decode({"__t": "dc", "c": "Path", "f": {}})
    with pytest.raises(KeyError):
        core_cache.decode({"__t": "enum", "c": "Signals", "v": 9})
    with pytest.raises(ValueError):
        core_cache.decode({"__t": "pickle", "v": ""})
    assert core_cache.decode({"__t": "enum", "c": "MlpKind", "v": "swiglu"}) is MlpKind.SWIGLU

    @dataclasses.dataclass
    class Elsewhere:
        x: int = 1

    with pytest.raises(TypeError):
        core_cache.encode(Elsewhere())


def test_user_catalog_files_and_other_data_folders_bypass_it(cache, tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("gpus:\n  h100-sxm:\n    tdp_w: {value: 123, source: mle_power}\n")
    c = Catalog(extra_files=(user,))
    assert core_cache.entries(c) is None
    assert c.gpus["h100-sxm"].tdp_w == 123
    assert core_cache.entries(Catalog(data_dir=tmp_path)) is None


def test_a_warm_estimate_runs_without_pydantic_and_prints_the_same(cache):
    code = ("import sys, io, contextlib\nfrom sizeup.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    rc = main(['infer', 'llama-3-8b', '--gpu', 'h100', '--tp', '2', '--json'])\n"
            "print(rc, 'pydantic' in sys.modules)\nprint(buf.getvalue())")
    env = dict(os.environ, SIZEUP_CACHE_DIR=str(cache))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
            for _ in range(2)]
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(env, SIZEUP_NO_CACHE="1")).stdout
    assert runs[1].split("\n", 1)[0] == "0 False"  # warm: the objects come from the cache
    assert cold.split("\n", 1)[0] == "0 True"  # cache off: validated with pydantic
    assert runs[0].split("\n", 1)[1] == runs[1].split("\n", 1)[1] == cold.split("\n", 1)[1]
