"""units.py: parsers and formatters (hand-checked values)."""

import math

import pytest
from hypothesis import given, strategies as st

from sizeup import units
from sizeup.units import UnitError


@pytest.mark.parametrize("text,expected", [
    ("7B", 7e9), ("15M", 15e6), ("1.5T", 1.5e12), ("2048", 2048), ("10K", 1e4), ("1,000", 1000), (42, 42),
])
def test_parse_count(text, expected):
    assert units.parse_count(text) == pytest.approx(expected)


@pytest.mark.parametrize("text,expected", [
    ("80GiB", 80 * 2**30), ("80GB", 80e9), ("16G", 16e9), ("512MiB", 512 * 2**20), ("1.5TB", 1.5e12), ("100", 100),
])
def test_parse_bytes(text, expected):
    assert units.parse_bytes(text) == pytest.approx(expected)


@pytest.mark.parametrize("text,expected", [
    ("3.35TB/s", 3.35e12), ("400Gb/s", 50e9), ("900GB/s", 900e9), ("100Gbps", 12.5e9), ("64GiB/s", 64 * 2**30),
])
def test_parse_bandwidth(text, expected):
    assert units.parse_bandwidth(text) == pytest.approx(expected)


@pytest.mark.parametrize("text,expected", [
    ("2h", 7200), ("3d", 3 * 86400), ("90m", 5400), ("45", 45), ("30s", 30), ("2w", 14 * 86400), ("250ms", 0.25),
])
def test_parse_duration(text, expected):
    assert units.parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad,fn", [
    ("7X", units.parse_count), ("lots", units.parse_count), ("80 furlongs", units.parse_bytes),
    ("3 fortnights", units.parse_duration), ("fast", units.parse_bandwidth), ("inf", units.parse_count),
])
def test_bad_input_raises_unit_error(bad, fn):
    with pytest.raises(UnitError):
        fn(bad)


def test_int_count_rejects_fraction():
    assert units.parse_int_count("15M") == 15_000_000
    with pytest.raises(UnitError):
        units.parse_int_count("1.5")


def test_format_is_explicit_about_binary_vs_decimal():
    assert units.format_bytes(80 * 2**30) == "80.0 GiB"
    assert units.format_bytes(80e9, binary=False) == "80.0 GB"
    assert units.format_bytes(80e9) == "74.5 GiB"
    assert units.format_count(124_439_808) == "124M"
    assert units.format_count(6.74e9) == "6.74B"
    assert units.format_duration(3.47 * 3600) == "3.47 h"
    assert units.format_duration(0.85) == "850 ms"
    assert units.format_usd(2.1) == "$2.10"
    assert units.format_flops_per_s(989e12) == "989 TFLOP/s"


@given(st.floats(min_value=1, max_value=1e15))
def test_count_roundtrip(x):
    assert units.parse_count(f"{x / 1e9}B") == pytest.approx(x, rel=1e-9)


@given(st.one_of(st.floats(min_value=-1e30, max_value=1e30), st.sampled_from([math.inf, -math.inf, math.nan])))
def test_formatters_never_crash(x):
    for fmt in (units.format_bytes, units.format_count, units.format_duration, units.format_usd, units.format_flops):
        out = fmt(x)
        assert isinstance(out, str) and out
        if not math.isfinite(x):
            assert out == "n/a"
