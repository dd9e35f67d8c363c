"""Per-item work on Ray with bounded in-flight tasks.

The worker count is an environment setting (`NWT_WORKERS`, default: all local cores), never a
param: it must not change results, so results come back sorted by item, whatever finished
first. With `RAY_ADDRESS` set, `ray.init()` attaches to that cluster instead (then `data/`
must be on a filesystem every node sees).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)


def worker_count() -> int:
    value = os.environ.get("NWT_WORKERS", "")
    if value:
        n = int(value)
        if n < 1:
            raise ValueError(f"NWT_WORKERS must be ≥ 1, got {value}")
        return n
    return os.cpu_count() or 1


def _init_ray():
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        log.info("attached to Ray cluster at %s", os.environ["RAY_ADDRESS"])
    else:
        ray.init(num_cpus=worker_count(), include_dashboard=False, log_to_driver=True,
                 configure_logging=False)
    return ray


def run_tasks(fn: Callable[..., Any], items: Sequence[Any], desc: str, max_in_flight: int | None = None,
              **kwargs: Any) -> list[tuple[Any, Any]]:
    """Run `fn(item, **kwargs)` for each item as a Ray task → [(item, result or exception)].

    A task that raises does not stop the others: its exception is returned in its slot so the
    caller can write a ledger entry. At most `max_in_flight` tasks are queued at once
    (backpressure with `ray.wait`), so a large manifest does not flood the object store.
    """
    if not items:
        return []
    ray = _init_ray()
    remote = ray.remote(num_cpus=1, max_retries=0)(fn)
    limit = max_in_flight or 2 * int(ray.cluster_resources().get("CPU", 1))
    results: dict[int, Any] = {}
    pending: dict[Any, int] = {}
    queue = list(enumerate(items))
    with tqdm(total=len(items), desc=desc, unit="item") as bar:
        while queue or pending:
            while queue and len(pending) < limit:
                i, item = queue.pop(0)
                pending[remote.remote(item, **kwargs)] = i
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - recorded per item by the caller
                    cause = getattr(exc, "cause", None) or exc
                    results[i] = cause if isinstance(cause, Exception) else exc
                bar.update(1)
    return [(items[i], results[i]) for i in range(len(items))]


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
