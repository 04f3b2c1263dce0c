"""SI constants, parsers for human sizes ("80GiB", "15M", "3.35TB/s", "2h") and formatters.

Inside sizeup every quantity is SI: bytes, seconds, FLOP, FLOP/s, bytes/s, USD.
GiB (1024**3) and GB (1e9) are always explicit; bandwidth, FLOPs and counts are decimal.
"""

from __future__ import annotations

import math
import re

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
KB = 10**3
MB = 10**6
GB = 10**9
TB = 10**12
PB = 10**15

MINUTE_S = 60.0
HOUR_S = 3600.0
DAY_S = 86400.0
MONTH_S = 30.4375 * DAY_S  # mean Gregorian month
YEAR_S = 365.25 * DAY_S

TERA = 1e12
PETA = 1e15


class UnitError(ValueError):
    """A string could not be parsed as the expected kind of quantity."""


_NUM = r"([-+]?(?:\d[\d_,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"

_COUNT_SUFFIX = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "b": 1e9, "B": 1e9, "g": 1e9, "G": 1e9, "t": 1e12, "T": 1e12}

_BYTES_SUFFIX = {
    "": 1, "b": 1, "B": 1,
    "kb": KB, "mb": MB, "gb": GB, "tb": TB, "pb": PB,
    "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
    "k": KB, "m": MB, "g": GB, "t": TB,
}

_DURATION_SUFFIX = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 1e-3,
    "m": MINUTE_S, "min": MINUTE_S, "mins": MINUTE_S, "minute": MINUTE_S, "minutes": MINUTE_S,
    "h": HOUR_S, "hr": HOUR_S, "hrs": HOUR_S, "hour": HOUR_S, "hours": HOUR_S,
    "d": DAY_S, "day": DAY_S, "days": DAY_S,
    "w": 7 * DAY_S, "wk": 7 * DAY_S, "week": 7 * DAY_S, "weeks": 7 * DAY_S,
    "mo": MONTH_S, "month": MONTH_S, "months": MONTH_S,
    "y": YEAR_S, "yr": YEAR_S, "year": YEAR_S, "years": YEAR_S,
}


# Largest magnitude any parsed quantity may have (after its suffix): far above any real count, size,
# duration or price (1e30 FLOP is ~1e5x the largest training run), and small enough that products of two
# quantities stay finite. Bigger inputs ('1e300T') are refused instead of becoming inf.
MAX_QUANTITY = 1e30

# Thousands separators are read only in the unambiguous form 1,500,000 (groups of three digits); '1,5'
# (a decimal comma in many locales) or '15,00' is refused rather than guessed.
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?([eE][-+]?\d+)?")


def _number_text(raw: str, text, what: str) -> float:
    if "," in raw and not _THOUSANDS.fullmatch(raw):
        raise UnitError(f"ambiguous {what} {text!r}: a comma is read only as a thousands separator "
                        "(1,500,000); write decimals with a point (1.5B)")
    try:
        return float(raw.replace("_", "").replace(",", ""))
    except ValueError:
        raise UnitError(f"cannot read {what} {text!r}") from None


def _bounded(value: float, text, what: str) -> float:
    """Every quantity sizeup parses is a count, size, rate, duration or price: finite, >= 0, <= MAX_QUANTITY."""
    if not math.isfinite(value) or abs(value) > MAX_QUANTITY:
        raise UnitError(f"{what} {text!r} is out of range (at most {MAX_QUANTITY:g})")
    if value < 0:
        raise UnitError(f"{what} {text!r} is negative; it must be >= 0")
    return value + 0.0  # -0.0 -> 0.0


def _split(text: str, what: str, example: str) -> tuple[float, str]:
    if isinstance(text, bool):
        raise UnitError(f"cannot read {what} {text!r}; write it like {example}")
    if isinstance(text, (int, float)):
        try:
            return _bounded(float(text), text, what), ""
        except OverflowError:
            raise UnitError(f"{what} {text!r} is out of range (at most {MAX_QUANTITY:g})") from None
    s = str(text).strip()
    m = re.fullmatch(_NUM + r"\s*([A-Za-z/]*)", s)
    if not m:
        raise UnitError(f"cannot read {what} {text!r}; write it like {example}")
    value = _number_text(m.group(1), text, what)
    if not math.isfinite(value):
        raise UnitError(f"{what} {text!r} is not a finite number")
    return _bounded(value, text, what), m.group(2)


def parse_count(text: str | int | float) -> float:
    """'7B' -> 7e9, '15M' -> 1.5e7, '1.5T' -> 1.5e12, '2048' -> 2048.0 (decimal suffixes)."""
    value, suffix = _split(text, "count", "'7B', '15M', '1.5T' or '2048'")
    if suffix not in _COUNT_SUFFIX:
        raise UnitError(f"unknown count suffix {suffix!r} in {text!r}; allowed: K, M, B (or G), T")
    return _bounded(value * _COUNT_SUFFIX[suffix], text, "count")


def parse_int_count(text: str | int | float) -> int:
    """Like parse_count but the result must be a whole number."""
    value = parse_count(text)
    if abs(value - round(value)) > 1e-6 * max(1.0, abs(value)):
        raise UnitError(f"{text!r} is not a whole number")
    return int(round(value))


def parse_bytes(text: str | int | float) -> float:
    """'80GiB' -> 80*2**30, '80GB' -> 80e9, '16G' -> 16e9 (bare letters are decimal)."""
    value, suffix = _split(text, "size", "'80GiB', '80GB' or '512MiB'")
    key = suffix.lower()
    if key not in _BYTES_SUFFIX:
        raise UnitError(f"unknown size unit {suffix!r} in {text!r}; allowed: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB")
    return _bounded(value * _BYTES_SUFFIX[key], text, "size")


def parse_bandwidth(text: str | int | float) -> float:
    """Bytes per second: '3.35TB/s' -> 3.35e12, '400Gb/s' (bits) -> 5e10, '900GB/s' -> 9e11."""
    s = str(text).strip().replace("ps", "/s")
    m = re.fullmatch(_NUM + r"\s*([KMGTP]?)(i?)([bB])/s", s)
    if not m:
        raise UnitError(f"cannot read bandwidth {text!r}; write it like '3.35TB/s' (bytes) or '400Gb/s' (bits)")
    value = _bounded(_number_text(m.group(1), text, "bandwidth"), text, "bandwidth")
    prefix = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}[m.group(2)]
    if m.group(3):
        prefix = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB, "P": 1024**5}[m.group(2)]
    bits = m.group(4) == "b"
    return _bounded(value * prefix / (8 if bits else 1), text, "bandwidth")


def parse_duration(text: str | int | float) -> float:
    """Seconds: '2h' -> 7200, '3d' -> 259200, '90m' -> 5400, '45' -> 45."""
    value, suffix = _split(text, "duration", "'30s', '90m', '2h', '3d' or '2w'")
    key = suffix.lower()
    if key not in _DURATION_SUFFIX:
        raise UnitError(f"unknown duration unit {suffix!r} in {text!r}; allowed: s, m, h, d, w, mo, y")
    return _bounded(value * _DURATION_SUFFIX[key], text, "duration")


def parse_usd(text: str | int | float) -> float:
    """'$50,000' / '50k' / '1.2M' -> USD (>= 0)."""
    s = str(text).strip() if not isinstance(text, (int, float)) else text
    if isinstance(s, str):
        s = s[1:] if s.startswith("$") else s.replace("$", "", 1) if s.startswith(("-$", "+$")) else s
    value, suffix = _split(s, "USD amount", "'$50,000', '50k' or '1.2M'")
    if suffix not in _COUNT_SUFFIX:
        raise UnitError(f"unknown suffix {suffix!r} in USD amount {text!r}; allowed: K, M, B, T")
    return _bounded(value * _COUNT_SUFFIX[suffix], text, "USD amount")


# --------------------------------------------------------------------------- formatting


def _scaled(value: float, steps: list[tuple[float, str]], digits: int = 3) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "n/a"
    mag = abs(value)
    for scale, name in steps:
        if mag >= scale:
            return f"{_sig(value / scale, digits)} {name}".rstrip()
    scale, name = steps[-1]
    return f"{_sig(value / scale, digits)} {name}".rstrip()


def _sig(x: float, digits: int) -> str:
    if x == 0:
        return "0"
    mag = abs(x)
    if mag >= 10 ** digits:
        return f"{x:,.0f}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(mag))))
    return f"{x:,.{decimals}f}"


def format_bytes(n: float, binary: bool = True) -> str:
    """74.5 GiB (binary=True) or 80.0 GB (binary=False): the unit always says which."""
    if binary:
        return _scaled(n, [(TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB"), (1, "B")])
    return _scaled(n, [(TB, "TB"), (GB, "GB"), (MB, "MB"), (KB, "kB"), (1, "B")])


def format_count(n: float) -> str:
    """124.4M, 6.74B, 15.0T (decimal)."""
    return _scaled(n, [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"), (1, "")]).replace(" ", "")


def format_flops(n: float) -> str:
    return _scaled(n, [(1e21, "ZFLOP"), (1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1, "FLOP")])


def format_flops_per_s(n: float) -> str:
    return _scaled(n, [(1e15, "PFLOP/s"), (1e12, "TFLOP/s"), (1e9, "GFLOP/s"), (1, "FLOP/s")])


def format_bandwidth(n: float) -> str:
    return _scaled(n, [(TB, "TB/s"), (GB, "GB/s"), (MB, "MB/s"), (1, "B/s")])


def format_duration(s: float) -> str:
    """'3.47 h', '12.0 min', '2.5 d', '850 ms'."""
    if s is None:
        return "-"
    if not math.isfinite(s):
        return "n/a"
    mag = abs(s)
    if mag >= 2 * DAY_S:
        return f"{_sig(s / DAY_S, 3)} d"
    if mag >= HOUR_S:
        return f"{_sig(s / HOUR_S, 3)} h"
    if mag >= MINUTE_S:
        return f"{_sig(s / MINUTE_S, 3)} min"
    if mag >= 1:
        return f"{_sig(s, 3)} s"
    return f"{_sig(s * 1e3, 3)} ms"


def format_usd(x: float) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "n/a"
    if abs(x) >= 100:
        return f"${x:,.0f}"
    if abs(x) >= 0.1:
        return f"${x:,.2f}"
    return f"${x:,.4f}"


def format_pct(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{100 * x:.1f}%"


# --------------------------------------------------------------------------- checked values from files and flags


def parse_whole(value, what: str, low: int = 1, high: int = 1 << 62) -> int:
    """A whole number in [low, high] from a flag or a file value (7, '2048', '2K', 4096.0). Booleans, fractions
    (2048.5), NaN/inf and out-of-range values are a UnitError naming `what` and the range: never coerced."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, tuple)):
        raise UnitError(f"{what} must be a whole number from {low:,} to {high:,}, got {value!r}")
    x = parse_count(value) if not isinstance(value, (int, float)) else value
    if isinstance(x, float):
        if not math.isfinite(x) or not x.is_integer():
            raise UnitError(f"{what} must be a whole number from {low:,} to {high:,}, got {value!r}")
        x = int(x)
    if not low <= x <= high:
        raise UnitError(f"{what} must be a whole number from {low:,} to {high:,}, got {value!r}")
    return int(x)


def parse_finite(value, what: str, low: float = 0.0, high: float = MAX_QUANTITY, low_inclusive: bool = True) -> float:
    """A finite number in [low, high] (or (low, high]) from a flag or file value; anything else is a UnitError."""
    rng = f"{'[' if low_inclusive else '('}{low:g}, {high:g}]"
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, tuple)):
        raise UnitError(f"{what} must be a number in {rng}, got {value!r}")
    try:
        x = float(value) if isinstance(value, (int, float)) else parse_count(value)
    except (OverflowError, UnitError):
        raise UnitError(f"{what} must be a number in {rng}, got {value!r}") from None
    if not math.isfinite(x) or x > high or x < low or (x == low and not low_inclusive):
        raise UnitError(f"{what} must be a number in {rng}, got {value!r}")
    return x
