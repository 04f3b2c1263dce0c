"""The README's Python examples run as written (library entry points stay true to what ships)."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_library_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), {})
    # a value the README states in a comment ('print(...)  # 6738415616') is what the code prints
    for line in BLOCKS[index].splitlines():
        m = re.match(r"print\(.*\)\s+#\s+(\d+)\s*$", line.strip())
        if m:
            assert m.group(1) in out.getvalue(), line
