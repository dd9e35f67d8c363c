"""The real-footage regression check (`make real-footage`): real presenter clips joined into
broadcast-like episodes (one video; three videos), the whole pipeline run on each in a temporary
checkout whose models are thrown away, and the figures → reports/real_footage/metrics.json.

    python scripts/real_footage.py [--samples DIR] [--ci] [--corpus one_video] [--out FILE] [--work DIR]

--samples: the nwt_samples folder (gt/, far/, mar/; default ../shared/data/nwt_samples from the
repository root). --ci: profiles/real_footage_ci.yaml over the defaults (few steps, small models;
what tests/test_real_footage.py runs). --work: keep the built footage and logs there (the run's
checkout, with its models, is deleted all the same). Exit status 0 when every corpus ran every
stage, 1 otherwise (the report is written in both cases), 2 when the samples are not there.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from nwt.atomic import write_json
from nwt.real_footage.corpus import CORPORA
from nwt.real_footage.report import real_footage_report

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "data" / "nwt_samples")
    ap.add_argument("--ci", action="store_true", help="reduced steps and small models (profiles/real_footage_ci.yaml)")
    ap.add_argument("--corpus", action="append", choices=sorted(CORPORA), help="only this corpus (repeatable)")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "real_footage" / "metrics.json")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder kept for inspection (default: a temp one)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds one corpus's dvc repro may take")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if not (args.samples / "gt").is_dir():
        print(f"real-footage: no {args.samples / 'gt'}: the nwt_samples test set is not here (see its README.md); "
              "nothing measured", file=sys.stderr)
        return 2
    report = real_footage_report(REPO, args.samples.resolve(), ci=args.ci, corpora=args.corpus, timeout_s=args.timeout,
                                 work=args.work.resolve() if args.work else None)
    write_json(args.out, report)
    print(json.dumps(report, indent=1))
    ran = [report[c] for c in (args.corpus or CORPORA)]
    return 0 if all(r["stages_finished"] == r["stages_total"] for r in ran) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
