"""What every stage script shares: logging, wall time, metrics.json, the ledger file."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nwt.atomic import write_json
from nwt.data.ledger import Ledger

DATA = Path("data")
REPORTS = Path("reports")
log = logging.getLogger("nwt")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


@contextmanager
def stage(name: str) -> Iterator[dict]:
    """Run a stage body; the yielded dict becomes reports/<name>/metrics.json with wall_s added."""
    setup_logging()
    metrics: dict = {}
    start = time.perf_counter()
    log.info("stage %s: start", name)
    yield metrics
    metrics["wall_s"] = round(time.perf_counter() - start, 1)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun only rank 0 reports
    write_json(REPORTS / name / "metrics.json", metrics)
    log.info("stage %s: done in %.1f s", name, metrics["wall_s"])


def write_ledger(ledger: Ledger) -> None:
    ledger.write(DATA / ledger.stage / "ledger.parquet")
    log.info(ledger.summary())
