"""The architecture's layering (developers' guide): core/ and search/ are pure. They never import the CLI, the
commands, the web server, the validator or the scenario loader, and never open files or print; report/ draws
and renders without reaching into the validator. Read from the source (ast), so a lazy import inside a function
counts too."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sizeup"
FORBIDDEN = {
    "core": ("sizeup.cli", "sizeup.commands", "sizeup.web", "sizeup.validate", "sizeup.scenario", "sizeup.report"),
    "search": ("sizeup.cli", "sizeup.commands", "sizeup.web", "sizeup.validate", "sizeup.scenario"),
    "report": ("sizeup.cli", "sizeup.commands", "sizeup.web", "sizeup.validate"),
    "catalog": ("sizeup.cli", "sizeup.commands", "sizeup.web", "sizeup.validate"),
}
PURE = ("core", "search")


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _files(package: str):
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_the_layers_above_it(package):
    bad = [f"{f.relative_to(SRC)}:{line} imports {mod}"
           for f in _files(package) for line, mod in _imports(ast.parse(f.read_text()))
           if mod.startswith(FORBIDDEN[package])]
    assert not bad, bad


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_neither_open_files_nor_print(package):
    bad = []
    for f in _files(package):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("open", "print"):
                bad.append(f"{f.relative_to(SRC)}:{node.lineno} calls {node.func.id}()")
    assert not bad, bad
