"""A throwaway copy of this checkout for end-to-end `dvc repro` tests: its tracked and untracked
(not ignored) files, no dvc.lock and no reports, params profiles applied, committed to a fresh git
repository; and a runner of commands in it with the venv's tools first on the PATH."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, timeout: int = 900, workers: int = 2) -> str:
    """Run `cmd` in `cwd` with NWT_WORKERS=`workers`; its output, or an assertion error showing it."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", NWT_WORKERS=str(workers),
               RAY_AUTH_MODE="disabled", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


def copy_checkout(work: Path, profiles: list[Path | str], message: str) -> Path:
    """This checkout copied to `work`, each profile (a path relative to the copy, or absolute)
    applied in order with scripts/apply_profile.py, committed; → `work`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    (work / "dvc.lock").unlink(missing_ok=True)
    shutil.rmtree(work / "reports", ignore_errors=True)
    for profile in profiles:
        run([sys.executable, "scripts/apply_profile.py", str(profile)], work)
    run(["git", "init", "-q"], work)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], work)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], work)
    return work
