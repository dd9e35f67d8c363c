import os
import subprocess
import sys

from conftest import REPO

SCRIPT = """
import json, sys
from nwt.data.parallel import run_tasks, shutdown
from tests_parallel_helpers import jittery_square
out = run_tasks(jittery_square, list(range(12)), "test")
shutdown()
print(json.dumps([[i, r if not isinstance(r, Exception) else f"{type(r).__name__}: {r}"] for i, r in out]))
"""

HELPERS = """
import random, time

def jittery_square(i):
    time.sleep(random.random() * 0.05)  # finish out of order
    if i == 7:
        raise ValueError("item 7 is bad")
    return i * i
"""


def _run(tmp_path, workers: int) -> str:
    (tmp_path / "tests_parallel_helpers.py").write_text(HELPERS)
    env = dict(os.environ, NWT_WORKERS=str(workers), RAY_AUTH_MODE="disabled",
               PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_results_in_item_order_with_failures_recorded_whatever_the_worker_count(tmp_path):
    import json

    one, two = _run(tmp_path, 1), _run(tmp_path, 2)
    assert one == two
    results = json.loads(one)
    assert [i for i, _ in results] == list(range(12))
    assert results[3][1] == 9
    assert results[7][1] == "ValueError: item 7 is bad"
