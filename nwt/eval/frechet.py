"""Fréchet distance between two feature distributions, each summarised as a Gaussian.

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)

the formula behind FID (Heusel et al. 2017) and FVD (Unterthiner et al. 2018); only the feature
extractor differs (`nwt.eval.fid`, `nwt.eval.fvd`, and the sync expert's video stream in
`nwt.eval.lipsync`).

Numerics. pytorch-fid takes `scipy.linalg.sqrtm(Σ₁ Σ₂)`, a non-symmetric product whose square
root can come out complex or fail on singular covariances, and then patches it (adds ε·I, drops
the imaginary part). We need only the trace of that root, and Tr (Σ₁ Σ₂)^½ = Tr (A Σ₂ A)^½
with A = Σ₁^½ (Σ₁ Σ₂ and A Σ₂ A are similar): A and the eigenvalues of the symmetric PSD
matrix A Σ₂ A come from `eigh`/`eigvalsh`, eigenvalues that rounding pushes below zero are
clipped to 0, so the result is real and finite even when the covariances are rank deficient
(fewer samples than feature dimensions, the usual case for a test split).

Estimates from few samples are biased upwards (the sample covariance is noisy), so a figure
means little alone: `split_half_frechet` puts every source on the same footing as the
ground truth's own split-half distance, the floor of what a perfect generator could reach.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features → mean (D,) and covariance (D, D), float64; unbiased (N − 1), as
    pytorch-fid's `np.cov(rowvar=False)`."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need (N ≥ 2, D) features for a covariance, got shape {x.shape}")
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding eigenvalues → 0)."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr (Σ₁ Σ₂)^½ for symmetric PSD Σ₁, Σ₂, via Tr (A Σ₂ A)^½ with A = Σ₁^½."""
    a = _psd_sqrt(np.asarray(sigma1, np.float64))
    m = a @ np.asarray(sigma2, np.float64) @ a
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: μ {mu1.shape} vs {mu2.shape}, Σ {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    d2 = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    # ≥ 0 in exact arithmetic (a squared distance); only rounding can take it below
    return max(float(d2), 0.0)


def frechet_distance_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two (N, D) feature sets.

    With fewer samples than dimensions (FID's 2048-d features of a test split) the same figure
    comes from the samples instead of the D × D covariances: with Aᵢ the centred features over
    √(Nᵢ − 1), Σᵢ = AᵢᵀAᵢ, the non-zero eigenvalues of Σ₁Σ₂ are those of M Mᵀ with M = A₁A₂ᵀ
    (N₁ × N₂), so Tr (Σ₁Σ₂)^½ is the sum of M's singular values and Tr Σᵢ = ‖Aᵢ‖²_F — exact,
    and seconds instead of minutes for D = 2048 on a CPU."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (N, D) feature sets of the same D, got {a.shape} and {b.shape}")
    if max(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    if min(len(a), len(b)) < 2:
        raise ValueError(f"need (N ≥ 2, D) features for a covariance, got {a.shape} and {b.shape}")
    mu1, mu2 = a.mean(0), b.mean(0)
    a1, a2 = (a - mu1) / np.sqrt(len(a) - 1), (b - mu2) / np.sqrt(len(b) - 1)
    diff = mu1 - mu2
    tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    d2 = diff @ diff + np.sum(a1 * a1) + np.sum(a2 * a2) - 2.0 * tr_covmean
    return max(float(d2), 0.0)


def split_halves(per_clip: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip (n_i, D) features → the rows of the even-numbered clips and of the odd ones.
    Whole clips go to one half, so the halves share no frames and no near-duplicate
    neighbours; the test clips come sorted by episode, so each half spans the episodes."""
    even = [f for i, f in enumerate(per_clip) if i % 2 == 0 and len(f)]
    odd = [f for i, f in enumerate(per_clip) if i % 2 == 1 and len(f)]
    if not even or not odd:
        raise ValueError(f"need features from at least 2 clips, got {sum(len(f) > 0 for f in per_clip)}")
    return np.concatenate(even), np.concatenate(odd)


def split_half_frechet(per_source: Mapping[str, Sequence[np.ndarray]],
                       reference: str = "gt") -> dict[str, float | None]:
    """Fréchet distance of every source to the reference, measured across clip halves.

    per_source: {source: [per test clip (n_i, D) features]}, clip i of every source made from
    test clip i. For source s the figure is the mean of FD(s on even clips, reference on odd
    clips) and FD(s on odd clips, reference on even clips). So the reference's own figure is
    its split-half distance — the floor set by sample size and by how much the clips differ —
    and every source is measured with the same sample sizes as that floor, never against the
    frames it was made from. None where a half has fewer than 2 rows."""
    ref_even, ref_odd = split_halves(per_source[reference])
    out: dict[str, float | None] = {}
    for source, clips in per_source.items():
        try:
            even, odd = split_halves(clips)
            out[source] = 0.5 * (frechet_distance_features(even, ref_odd) + frechet_distance_features(odd, ref_even))
        except ValueError:
            out[source] = None
    return out
