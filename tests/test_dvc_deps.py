"""dvc.yaml deps are complete and tight (issue 18, point 5).

For every stage whose `cmd` is `python pipeline/<name>.py`, the modules of this repository the script
reaches through its imports (read with `ast`, transitively: imports inside functions too, a submodule
named in `from nwt.x import y`, the `__init__.py` of every parent package an import executes) are
compared with the stage's `deps`:

- complete: every reached file (the script included) is covered by a dep — a file dep covers that
  file, a folder dep the files in it and below it. Otherwise an edit to that file does not rerun the
  stage and its outputs go stale.
- tight: every code dep (under nwt/ or pipeline/) is reached — a listed .py file must be reached, a
  listed folder must have every .py file in it reached. Otherwise an unrelated edit reruns the stage
  (listing `nwt/models` for a stage that uses two of its files reruns 25 minutes of training).

Data deps (data/..., models/...) are not checked here. The messages print the lines to add to and
remove from dvc.yaml.
"""
from __future__ import annotations

import ast
import re
from collections import deque
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("nwt",)  # top-level packages of this repository, importable from any working directory
CODE_ROOTS = ("nwt", "pipeline")  # deps under these are code deps, checked for tightness
SCRIPT_CMD = re.compile(r"^python3?\s+(pipeline/[\w/]+\.py)\s*$")

# Files that no import reaches but that a reached module runs by path, so a stage that reaches the
# runner depends on them too (they count as reached: they must be covered, and may be listed).
# file -> (runner, text in the runner's source that shows it runs the file, why)
RUN_BY_PATH: dict[str, tuple[str, str, str]] = {
    "nwt/data/asr/whisperx_worker.py": (
        "nwt/data/asr/whisperx_client.py",
        'with_name("whisperx_worker.py")',
        "WhisperxClient starts it with subprocess.Popen under the ASR env's python (its own venv: whisperx "
        "3.8.6 pins torch 2.8), so it is never imported, but its code decides the segment stage's words",
    ),
}


# ---------------------------------------------------------------------------------------------------
# the resolver


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (functions, try, if), except under `if TYPE_CHECKING:`,
    which never runs."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _module_files(parts: list[str], root: Path) -> list[Path]:
    """The files `import <parts joined by dots>` executes when the top-level name is found in `root`:
    each package's __init__.py on the way, then the module itself (stops where the name does not
    resolve: `nwt.x.attr` is an attribute, not a file)."""
    files: list[Path] = []
    base = root
    for part in parts:
        if (base / part / "__init__.py").is_file():
            base = base / part
            files.append(base / "__init__.py")
        elif (base / f"{part}.py").is_file():
            files.append(base / f"{part}.py")
            break
        else:
            break
    return files


def _package_parts(path: Path, repo: Path) -> list[str] | None:
    """The dotted package a first-party file belongs to (for relative imports), or None."""
    try:
        rel = path.relative_to(repo)
    except ValueError:
        return None
    if rel.parts[0] not in FIRST_PARTY:
        return None
    return list(rel.with_suffix("").parts)[:-1]  # nwt/a/b.py and nwt/a/__init__.py are both in nwt.a


def _roots_for(top: str, script_dir: Path, repo: Path) -> list[Path]:
    # sys.path[0] is the running script's folder; the first-party packages come from the repository
    roots = [script_dir]
    if top in FIRST_PARTY:
        roots.append(repo)
    return roots


def _resolve(parts: list[str], script_dir: Path, repo: Path) -> list[Path]:
    for root in _roots_for(parts[0], script_dir, repo):
        files = _module_files(parts, root)
        if files:
            return files
    return []


def _direct(path: Path, script_dir: Path, repo: Path) -> list[Path]:
    """Repository files that importing `path` executes directly (one level)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[Path] = []
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out += _resolve(alias.name.split("."), script_dir, repo)
            continue
        if node.level:  # relative: from .x import y / from .. import y
            package = _package_parts(path, repo)
            if package is None or node.level - 1 > len(package):
                continue
            base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            roots = [repo]
        else:
            base = node.module.split(".")
            roots = _roots_for(base[0], script_dir, repo)
        for root in roots:
            files = _module_files(base, root)
            if not files:
                continue
            out += files
            for alias in node.names:  # `from nwt.x import y` imports nwt/x/y.py when y is a submodule
                if alias.name != "*":
                    sub = _module_files(base + [alias.name], root)
                    if len(sub) > len(base):
                        out.append(sub[-1])
            break
    return out


def reached_files(script: Path, repo: Path = REPO) -> dict[Path, Path | None]:
    """Every repository file that running `python <script>` executes through imports (plus the files
    in RUN_BY_PATH that a reached module runs), each mapped to the file that first reached it."""
    script, repo = script.resolve(), repo.resolve()
    via: dict[Path, Path | None] = {script: None}
    queue = deque([(script, script.parent)])
    while queue:
        path, script_dir = queue.popleft()
        found = [(f, script_dir) for f in _direct(path, script_dir, repo)]
        rel = path.relative_to(repo).as_posix() if path.is_relative_to(repo) else None
        for target, (runner, _, _) in RUN_BY_PATH.items():
            if rel == runner and (repo / target).is_file():
                found.append((repo / target, (repo / target).parent))  # a new `python <target>`
        for f, sdir in found:
            f = f.resolve()
            if f not in via:
                via[f] = path
                queue.append((f, sdir))
    return via


# ---------------------------------------------------------------------------------------------------
# dvc.yaml


def script_stages(repo: Path = REPO) -> dict[str, tuple[str, list[str]]]:
    """stage name -> (script, deps) for the stages whose cmd is `python pipeline/<name>.py`."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        cmd = stage.get("cmd")
        m = SCRIPT_CMD.match(cmd.strip()) if isinstance(cmd, str) else None
        if m:
            out[name] = (m.group(1), [str(d).rstrip("/") for d in stage.get("deps", [])])
    return out


def _is_code_dep(dep: str) -> bool:
    parts = Path(dep).parts
    return (bool(parts) and parts[0] in CODE_ROOTS) or not parts  # "." covers the code roots too


def _covers(dep: Path, f: Path) -> bool:
    return f == dep or (dep.is_dir() and f.is_relative_to(dep))


def _py_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def check_deps(stage: str, script: str, deps: list[str], repo: Path = REPO) -> list[str]:
    """Problems with `stage`'s deps (empty when complete and tight), with the dvc.yaml lines to fix."""
    repo = repo.resolve()
    via = reached_files(repo / script, repo)
    reached = set(via)
    dep_paths = [(d, (repo / d).resolve()) for d in deps]

    def rel(p: Path) -> str:
        return p.relative_to(repo).as_posix()

    missing = sorted(f for f in reached if not any(_covers(p, f) for _, p in dep_paths))
    stale, extra, folders = [], [], []
    for dep, p in dep_paths:
        if not _is_code_dep(dep):
            continue
        if not p.exists():
            stale.append(dep)
        elif p.is_dir():
            unreached = [f for f in _py_files(p) if f not in reached]
            if unreached:
                others = [q for d, q in dep_paths if d != dep]
                used = sorted(f for f in reached if f.is_relative_to(p) and not any(_covers(q, f) for q in others))
                folders.append((dep, unreached, used))
        elif p.suffix == ".py" and p not in reached:
            extra.append(dep)

    problems = []
    def chain(f: Path) -> str:
        steps = [f]
        while via[steps[-1]] is not None:
            steps.append(via[steps[-1]])
        return " -> ".join(rel(p) for p in reversed(steps))

    if missing:
        problems.append(f"not complete: {len(missing)} reached file(s) no dep covers; add under "
                        f"stages.{stage}.deps:\n" + "\n".join(f"      - {rel(f)}" for f in missing)
                        + "\n    (reached as " + ";\n     ".join(chain(f) for f in missing) + ")")
    if stale:
        problems.append("not tight: listed code that does not exist; remove from "
                        f"stages.{stage}.deps:\n" + "\n".join(f"      - {d}" for d in stale))
    if extra:
        problems.append(f"not tight: listed code {script} never reaches; remove from "
                        f"stages.{stage}.deps:\n" + "\n".join(f"      - {d}" for d in extra))
    for dep, unreached, used in folders:
        msg = (f"not tight: folder {dep} holds {len(unreached)} file(s) {script} never reaches "
               f"({', '.join(rel(f) for f in unreached)}); in stages.{stage}.deps remove\n      - {dep}\n")
        if used:
            msg += "    and list what the stage reaches in it instead:\n" + "\n".join(f"      - {rel(f)}" for f in used)
        problems.append(msg.rstrip("\n"))
    return problems


# ---------------------------------------------------------------------------------------------------
# the tests

STAGES = script_stages()


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_deps_complete_and_tight(stage):
    script, deps = STAGES[stage]
    problems = check_deps(stage, script, deps)
    if problems:
        pytest.fail(f"dvc.yaml stage {stage!r} ({script}):\n" + "\n".join(problems), pytrace=False)


def test_resolver_on_the_real_pipeline():
    """The stage test cannot pass by reaching nothing."""
    assert {"train_dvae", "segment", "evaluate"} <= set(STAGES)
    reached = {f.relative_to(REPO).as_posix() for f in reached_files(REPO / STAGES["train_dvae"][0])}
    assert {"pipeline/train_dvae.py", "nwt/__init__.py", "nwt/models/__init__.py", "nwt/models/dvae.py"} <= reached


def test_run_by_path_claims_hold():
    """Each RUN_BY_PATH file is really run by path from its runner, never imported, and the runner is
    reached by some stage (so the entry is still needed)."""
    reached_by_any = set()
    for script, _ in STAGES.values():
        reached_by_any |= set(reached_files(REPO / script))
    for target, (runner, marker, why) in RUN_BY_PATH.items():
        assert why
        source = (REPO / runner).read_text(encoding="utf-8")
        assert marker in source and "subprocess" in source, f"{runner} no longer runs {target}: drop it"
        assert (REPO / runner).resolve() in reached_by_any, f"no stage reaches {runner}: drop {target}"
        for path in _py_files(REPO / "nwt") + _py_files(REPO / "pipeline"):
            imported = {f.resolve() for f in _direct(path, path.parent, REPO)}
            assert (REPO / target).resolve() not in imported, f"{path.relative_to(REPO)} imports {target}"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_resolver_on_a_synthetic_package(tmp_path):
    _write(tmp_path, {
        "pipeline/s.py": "import json\nimport helper\nfrom nwt.a import b\n",
        "pipeline/helper.py": "def f():\n    import nwt.c.d\n",
        "pipeline/other.py": "",
        "nwt/__init__.py": "",
        "nwt/a/__init__.py": "",
        "nwt/a/b.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nwt.unused\n"
                       "from .e import CONST\nfrom nwt.a import attr_only\n"),
        "nwt/a/e.py": "from .. import g\n",
        "nwt/a/never.py": "",
        "nwt/c/__init__.py": "",
        "nwt/c/d.py": "",
        "nwt/g.py": "",
        "nwt/unused.py": "",
    })
    via = reached_files(tmp_path / "pipeline/s.py", tmp_path)
    reached = {f.relative_to(tmp_path.resolve()).as_posix() for f in via}
    assert reached == {"pipeline/s.py", "pipeline/helper.py", "nwt/__init__.py", "nwt/a/__init__.py", "nwt/a/b.py",
                       "nwt/a/e.py", "nwt/g.py", "nwt/c/__init__.py", "nwt/c/d.py"}
    assert via[(tmp_path / "nwt/c/d.py").resolve()] == (tmp_path / "pipeline/helper.py").resolve()

    every = ["pipeline/s.py", "pipeline/helper.py", "nwt/__init__.py", "nwt/a/__init__.py", "nwt/a/b.py",
             "nwt/a/e.py", "nwt/g.py", "nwt/c"]
    assert check_deps("s", "pipeline/s.py", every + ["data/x"], tmp_path) == []

    problems = check_deps("s", "pipeline/s.py", [d for d in every if d != "nwt/c"], tmp_path)
    assert len(problems) == 1 and "not complete" in problems[0]
    assert "      - nwt/c/__init__.py" in problems[0] and "      - nwt/c/d.py" in problems[0]

    problems = check_deps("s", "pipeline/s.py", every + ["nwt/unused.py", "nwt/gone.py"], tmp_path)
    assert len(problems) == 2 and "      - nwt/unused.py" in problems[1] and "      - nwt/gone.py" in problems[0]

    # a whole package for a stage that uses some of its files is not tight
    problems = check_deps("s", "pipeline/s.py", ["pipeline", "nwt"], tmp_path)
    assert len(problems) == 2 and all("not tight: folder" in p for p in problems)
    assert "nwt/a/never.py" in problems[1] and "nwt/unused.py" in problems[1] and "      - nwt/c/d.py" in problems[1]
    assert "pipeline/other.py" in problems[0]
