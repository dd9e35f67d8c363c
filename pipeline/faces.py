"""Stage `faces`: per shot, the presenter's face track and smoothed crop window → data/faces/tracks.parquet,
plus a contact sheet of crops per episode → reports/faces/sheets/<episode_id>.jpg."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd

from nwt.atomic import atomic_path, write_parquet
from nwt.data.faces import contact_sheet, episode_faces
from nwt.data.ledger import Ledger
from nwt.data.media import MediaError
from nwt.data.parallel import run_tasks, shutdown
from nwt.params import load_params
from nwt.stage import DATA, REPORTS, log, stage, write_ledger

SHEETS = REPORTS / "faces" / "sheets"
SHEET_JPEG_QUALITY = 85
COLUMNS = ["episode_id", "shot", "start_frame", "end_frame", "crop_cx", "crop_cy", "crop_h"]


def shot_item(episode_id: str, shot: int) -> str:
    return f"{episode_id}/shot{shot:03d}"


def main() -> None:
    p = load_params()
    cfg, fps = p.faces, p.media.timing.fps
    with stage("faces") as metrics:
        episodes = pd.read_parquet(DATA / "download" / "episodes.parquet")
        shots = pd.read_parquet(DATA / "shots" / "shots.parquet")
        jobs = []
        for ep in episodes.itertuples():
            ep_shots = shots[shots.episode_id == ep.episode_id]
            if len(ep_shots):
                jobs.append(dict(episode_id=ep.episode_id, path=ep.path, truth=ep.truth,
                                 shots=[(int(r.shot), int(r.start_frame), int(r.end_frame))
                                        for r in ep_shots.itertuples()]))
        results = run_tasks(episode_faces, jobs, "track faces", cfg=cfg, fps=fps)
        shutdown()

        ledger, rows = Ledger("faces"), []
        shutil.rmtree(SHEETS, ignore_errors=True)  # no sheet of an episode that is gone
        SHEETS.mkdir(parents=True)
        detect_s = detect_frames = 0
        face_samples = found = 0
        ious, in_crop, jitter = [], [], []
        for job, res in results:
            if isinstance(res, Exception):
                reason = res.reason if isinstance(res, MediaError) else "failed"
                for shot, _, _ in job["shots"]:
                    ledger.reject(shot_item(job["episode_id"], shot), reason, f"{type(res).__name__}: {res}")
                continue
            for s in res["shots"]:
                tr, item = s["track"], shot_item(job["episode_id"], s["shot"])
                if tr.status == "kept":
                    ledger.keep(item, tr.detail)
                    rows.append(dict(episode_id=job["episode_id"], shot=s["shot"], start_frame=s["start"],
                                     end_frame=s["end"], crop_cx=tr.crop[:, 0].round(2).tolist(),
                                     crop_cy=tr.crop[:, 1].round(2).tolist(), crop_h=tr.crop[:, 2].round(2).tolist()))
                else:
                    ledger.reject(item, tr.reason, tr.detail)
            sheet = contact_sheet([dict(shot=s["shot"], thumb=s["thumb"], status=s["track"].status,
                                        reason=s["track"].reason) for s in res["shots"]])
            with atomic_path(SHEETS / f"{job['episode_id']}.jpg") as tmp:
                cv2.imwrite(str(tmp), sheet, [cv2.IMWRITE_JPEG_QUALITY, SHEET_JPEG_QUALITY])
            detect_s += res["detect_s"]
            detect_frames += res["detect_frames"]
            if res["score"]:
                sc = res["score"]
                face_samples += sc["face_samples"]
                found += sc["found"]
                ious += sc["ious"]
                in_crop += sc["in_crop"]
                jitter += sc["jitter"]
        write_parquet(DATA / "faces" / "tracks.parquet", pd.DataFrame(rows, columns=COLUMNS))
        write_ledger(ledger)
        if detect_frames:
            log.info("faces: backend %s, %.1f ms per detected frame (%d frames)", cfg.backend,
                     1000 * detect_s / detect_frames, detect_frames)
        metrics.update(shots_kept=ledger.kept, shots_rejected=ledger.rejected)
        if face_samples:
            metrics.update(face_detection_rate=round(found / face_samples, 4),
                           face_iou_mean=round(float(np.mean(ious)), 4) if ious else 0.0,
                           face_in_crop_rate=round(float(np.mean(in_crop)), 4) if in_crop else 0.0,
                           crop_jitter_px=round(float(np.mean(jitter)), 3) if jitter else 0.0)


if __name__ == "__main__":
    main()
