"""The whole pipeline on a corpus of local episodes, in a throwaway copy of this checkout.

The copy is made as tests/test_pipeline_e2e.py makes its own (the tracked and untracked, not
ignored, files; no dvc.lock, no reports), the profiles are applied, a manifest of the episodes is
written, and `dvc repro --keep-going` runs every stage that can run. NWT_HOME and DVC's site cache
point into the temporary folder, and the copy has its own DVC cache, so nothing trained here
reaches the model store, the project's DVC cache or its remote (nothing is pushed)."""
from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nwt.real_footage.corpus import Episode

MANIFEST = "manifests/real_footage.csv"  # in the temporary checkout; profiles/real_footage.yaml names it
EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception|Exit|Interrupt)\b.*")  # a traceback's last line


@dataclass
class RunResult:
    """What `dvc repro` finished: stages in dvc.yaml order, the failed ones with their last error line."""

    checkout: Path
    stages: list[str]
    finished: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.finished == self.stages


def _env(home: Path, checkout: Path) -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", RAY_AUTH_MODE="disabled",
                DVC_NO_ANALYTICS="1", NWT_HOME=str(home / "nwt_home"), DVC_SITE_CACHE_DIR=str(home / "dvc_site"),
                NWT_WORKERS=os.environ.get("NWT_WORKERS", "2"),
                # the copy's own nwt/ first: the venv's editable install points at the original checkout
                PYTHONPATH=os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH", "")])))


def _call(cmd: list[str], cwd: Path, env: dict, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def make_checkout(repo: Path, work: Path, profiles: list[Path], episodes: list[Episode]) -> Path:
    """A git-initialised copy of `repo` at `work/repo` with `profiles` applied in order and a manifest of
    `episodes` (absolute paths to their mp4s, which stay outside the copy)."""
    checkout = work / "repo"
    listed = _call(["git", "ls-files", "-co", "--exclude-standard"], repo, dict(os.environ))
    if listed.returncode != 0:
        raise RuntimeError(f"{repo} is not a git checkout: {listed.stderr.strip()}")
    for rel in listed.stdout.split():
        src = repo / rel
        if src.is_file() and not rel.startswith("reports/") and rel != "dvc.lock":
            (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, checkout / rel)
    env = _env(work, checkout)
    for profile in profiles:
        done = _call([sys.executable, "scripts/apply_profile.py", str(profile.resolve())], checkout, env)
        if done.returncode != 0:
            raise RuntimeError(f"profile {profile} does not apply: {done.stderr.strip()[-500:]}")
    manifest = checkout / MANIFEST
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode_id", "source", "notes"])
        for ep in episodes:
            writer.writerow([ep.episode_id, str(ep.path.resolve()), f"{len(ep.placements)} real clips joined"])
    git = ["git", "-c", "user.name=real-footage", "-c", "user.email=real-footage@localhost"]
    for cmd in (["git", "init", "-q"], git + ["add", "-A"], git + ["commit", "-qm", "real-footage check"]):
        done = _call(cmd, checkout, env)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed in {checkout}: {done.stderr.strip()[-300:]}")
    return checkout


def dvc_stages(checkout: Path) -> list[str]:
    return list(yaml.safe_load((checkout / "dvc.yaml").read_text())["stages"])


def locked_stages(checkout: Path) -> set[str]:
    """Stages that dvc.lock records: DVC writes a stage's entry only once it has run to the end."""
    lock = checkout / "dvc.lock"
    return set((yaml.safe_load(lock.read_text()) or {}).get("stages", {})) if lock.exists() else set()


def failed_stages(output: str, stages: list[str], finished: set[str]) -> dict[str, str]:
    """Each stage that did not finish → the last error line printed while it ran (or why it did not run)."""
    out: dict[str, str] = {}
    current, last_error = None, {}
    for line in output.splitlines():
        started = re.match(r"^Running stage '([^']+)'", line)
        if started:
            current = started.group(1)
        elif current and EXCEPTION_LINE.match(line.strip()):
            last_error[current] = line.strip()[:400]
        elif current and line.startswith("ERROR:") and current not in last_error:
            last_error[current] = line.strip()[:400]  # dvc's own line, when the stage printed no traceback
    for name in stages:
        if name not in finished:
            out[name] = last_error.get(name, "not run: a stage it depends on did not finish")
    return out


def run_pipeline(checkout: Path, work: Path, timeout_s: float, log_path: Path) -> RunResult:
    """`dvc repro --keep-going` in `checkout`, its output streamed to log_path (follow it with tail -f)."""
    stages = dvc_stages(checkout)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        # its own process group: on a timeout the stage scripts and Ray workers under dvc go too
        proc = subprocess.Popen(["dvc", "repro", "--keep-going"], cwd=checkout, env=_env(work, checkout),
                                stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.write(f"\nTimeoutError: dvc repro ran past {timeout_s:.0f} s\n")
        except BaseException:  # interrupted (Ctrl-C, a test's timeout): no stage goes on in a folder about to go
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    output = log_path.read_text(errors="replace")
    finished = locked_stages(checkout)
    return RunResult(checkout, stages, [s for s in stages if s in finished], failed_stages(output, stages, finished),
                     round(time.perf_counter() - t0, 1))
