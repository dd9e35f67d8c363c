"""What the install and the DVC remote promise (issue 21, points 3 and 7), checked without the
package registry: the core dependencies of pyproject.toml are exactly the distributions that
generating from a bundle imports (`make light-install` shows such an install at work), setup
installs every extra, and the project's default DVC remote is a folder outside the checkout."""
import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tiny_checkout import export_bundle, make_checkout, write_wav

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# imported when installed, by code that goes on without them (not requirements of anything here)
OPTIONAL = {
    "pydot": "torch.fx's graph drawer tries it",
    "nvidia-ml-py": "torch.cuda tries pynvml",
    "setuptools": "its distutils shim (_distutils_hack) loads at interpreter start in a venv",
}
GENERATE = """
import json, sys
from importlib import metadata
from nwt.cli import main
import nwt
bundle, wav, out = sys.argv[1:4]
assert main(["generate", "--model", bundle, "--audio", wav, "--out", out, "--episode", "ep0"]) == 0
assert main(["generate", "--model", bundle, "--audio", wav, "--out", out + ".webm", "--style-from", out]) == 0
assert main(["models", "--info", bundle]) == 0
nwt.load_model(bundle).generate_frames(wav, style_seed=1).save(out + ".2.mp4")
tops = {name.split(".")[0] for name in sys.modules}
dists = metadata.packages_distributions()
print(json.dumps(sorted({d for top in tops for d in dists.get(top, [])})), file=sys.stderr)
"""


def _closure(names: set[str]) -> set[str]:
    """The distributions `names` require, transitively (markers evaluated here, no extras)."""
    seen, todo = set(), list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    checkout = make_checkout(tmp_path_factory.mktemp("checkout"))
    return export_bundle(checkout, tmp_path_factory.mktemp("bundle") / "tiny.pt")


def test_core_dependencies_are_what_generation_imports(bundle, tmp_path):
    """`nwt generate` (episode, style reference, webm), `nwt models --info` and nwt.load_model, from
    a bundle in an empty folder: every distribution they import is a core dependency or one that a
    core dependency requires, and every core dependency is imported (nothing in the core is only
    the pipeline's)."""
    wav = write_wav(tmp_path / "speech.wav")
    proc = subprocess.run([sys.executable, "-c", GENERATE, str(bundle), str(wav), str(tmp_path / "v.mp4")],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    used = {canonicalize_name(d) for d in json.loads(proc.stderr.strip().splitlines()[-1])} - {"nwt"}
    core = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    allowed = _closure(core) | {canonicalize_name(d) for d in OPTIONAL}
    assert not used - allowed, (f"generation imports {sorted(used - allowed)}, which `pip install nwt` does not "
                                "install: add them to [project] dependencies in pyproject.toml (or import them "
                                "only on the pipeline's paths)")
    assert not core - used, f"core dependencies generation never imports: move {sorted(core - used)} to an extra"


def test_every_pin_is_exact_and_in_the_constraints():
    pins = {canonicalize_name(line.split("==")[0]): line.split("==")[1].strip()
            for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line and line[0] != "#"}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"pipeline", "test"} <= set(extras)
    for spec in PYPROJECT["project"]["dependencies"] + [r for reqs in extras.values() for r in reqs]:
        req = Requirement(spec)
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", spec
        version = next(iter(req.specifier)).version
        assert pins.get(canonicalize_name(req.name), "").split("+")[0] == version, f"{spec} vs constraints.txt"


def test_setup_installs_every_extra():
    """scripts/setup.sh (what `make repro` and `make test` run) reads the extras from pyproject.toml."""
    setup = (REPO / "scripts/setup.sh").read_text()
    line = next(x for x in setup.splitlines() if x.startswith("extras=$("))
    script = setup[setup.index(line) + len("extras=$(.venv/bin/python -c '"): setup.index("')", setup.index(line))]
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip().split(",") == list(PYPROJECT["project"]["optional-dependencies"])
    assert '-e ".[$extras]"' in setup


def test_default_dvc_remote_is_a_folder_outside_the_checkout(tmp_path, monkeypatch):
    """`nwt` in .dvc/config: ~/.cache/nwt/dvc-remote, `~` expanded by DVC for whoever runs it."""
    from dvc.config import Config

    monkeypatch.setenv("HOME", str(tmp_path))
    config = Config(dvc_dir=str(REPO / ".dvc"), validate=True)
    shared = config.load_one("repo")  # the committed file, not a developer's config.local
    assert shared["core"]["remote"] == "nwt"
    url = Path(shared["remote"]["nwt"]["url"])
    assert url == tmp_path / ".cache/nwt/dvc-remote" and not url.is_relative_to(REPO)
