"""Layers never point up: every import of every module under nwt/ (read with ast, those inside
functions included) stays within what its layer may use.

    nwt.constants, nwt.atomic, nwt.checkpoint, nwt.geometry, nwt.precision, nwt.params  (below everything)
    nwt.models   may not import  nwt.data, nwt.train, nwt.eval, nwt.generate, nwt.cli
    nwt.data     may not import  nwt.models, nwt.train, nwt.eval
    nwt.eval     may not import  nwt.train
    nwt.*        may not import  pipeline, scripts
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "nwt"

BASE = ("nwt.constants", "nwt.atomic", "nwt.checkpoint", "nwt.geometry", "nwt.precision", "nwt.params")
FORBIDDEN = {  # layer (package prefix) → what it may not import
    "nwt.models": ("nwt.data", "nwt.train", "nwt.eval", "nwt.generate", "nwt.cli"),
    "nwt.data": ("nwt.models", "nwt.train", "nwt.eval"),
    "nwt.eval": ("nwt.train",),
}
NEVER = ("pipeline", "scripts")  # no module of nwt/ imports the stage scripts or the tools


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = REPO) -> list[tuple[int, str, str]]:
    """(line, imported module, the statement as written) of every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((node.lineno, alias.name, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = ", ".join(a.name for a in node.names)
            written = f"from {'.' * node.level}{node.module or ''} import {names}"
            # `from nwt import eval` imports the submodule nwt.eval
            targets = [f"{base}.{a.name}" for a in node.names] if base == "nwt" else [base]
            out.extend((node.lineno, target, written) for target in targets)
    return out


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(path: Path, root: Path = REPO) -> list[str]:
    """'file:line: import …  (why)' for every import of `path` that its layer may not make."""
    me = module_name(path, root)
    forbidden = tuple(NEVER)
    for layer, banned in FORBIDDEN.items():
        if within(me, layer):
            forbidden += banned
    if me in BASE:
        forbidden += ("nwt",)  # anything of nwt but the other bottom modules
    found = []
    for line, target, written in imports(path, root):
        if me in BASE and any(within(target, b) for b in BASE):  # the bottom modules use each other
            continue
        if any(within(target, f) for f in forbidden):
            found.append(f"{path.relative_to(root)}:{line}: {written}  ({me} may not import {target})")
    return found


def test_every_module_is_read():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 30 and all(p.is_file() for p in modules)


def test_layers_never_point_up():
    found = [v for path in sorted(PACKAGE.rglob("*.py")) for v in violations(path)]
    assert not found, "imports that point up a layer:\n" + "\n".join(found)


@pytest.mark.parametrize("source, module, expected", [
    ("import nwt.train.dvae\n", "nwt/models/x.py", "nwt/models/x.py:1: import nwt.train.dvae"),
    ("def f():\n    from nwt.eval.metrics import psnr_db\n", "nwt/models/x.py",
     "nwt/models/x.py:2: from nwt.eval.metrics"),
    ("from ..train import dvae\n", "nwt/eval/x.py", "nwt/eval/x.py:1: from ..train import dvae"),
    ("from nwt import models\n", "nwt/data/x.py", "nwt/data/x.py:1: from nwt import models"),
    ("import pipeline.evaluate\n", "nwt/x.py", "nwt/x.py:1: import pipeline.evaluate"),
    ("from nwt.models.dvae import DVAE\n", "nwt/checkpoint.py", "nwt/checkpoint.py:1: from nwt.models.dvae"),
])
def test_the_check_names_file_line_and_import(tmp_path, source, module, expected):
    """The checker itself: each kind of upward import is caught and reported with its place."""
    path = tmp_path / module
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    found = violations(path, tmp_path)
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize("source, module", [
    ("from nwt.models.dvae import DVAE\nfrom nwt.checkpoint import load_checkpoint\n", "nwt/eval/x.py"),
    ("from nwt.constants import Timing\nimport torch\n", "nwt/models/x.py"),
    ("from .memcodes import Memcodes\n", "nwt/models/x.py"),
    ("from nwt.atomic import write_json\n", "nwt/checkpoint.py"),
])
def test_the_check_lets_downward_imports_pass(tmp_path, source, module):
    path = tmp_path / module
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    assert violations(path, tmp_path) == []
