"""Random news-style template sentences for the synthetic presenter.

Plain ASCII on purpose: espeak-ng reports word positions in characters, and ASCII keeps those
positions equal to Python string indices.
"""
from __future__ import annotations

import numpy as np

ADJECTIVES = "quick bright small quiet heavy golden northern local modern simple strong gentle early".split()
NOUNS = (
    "market river council village weather station garden teacher engineer museum bridge harvest "
    "festival project"
).split()
VERBS = "opened announced reported visited improved described expected celebrated reviewed delayed".split()
WHEN = ["yesterday", "today", "this morning", "last week"]
N_TEMPLATES = 4


def sentence(rng: np.random.Generator) -> str:
    """One sentence from one of four templates (2–4 s of speech at news-reading rates)."""
    template = int(rng.integers(N_TEMPLATES))
    adj, noun1, verb, noun2 = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS), rng.choice(NOUNS)
    if template == 0:
        return f"The {adj} {noun1} {verb} the new {noun2} {rng.choice(WHEN)}."
    if template == 1:
        return f"According to the {noun1}, the {noun2} was {verb} by the {adj} committee."
    if template == 2:
        return f"Officials say the {adj} {noun1} will be {verb} before the {noun2} opens."
    return f"Here is more about the {noun1} and the {adj} {noun2}."


def slide_text(rng: np.random.Generator, n_bullets: int) -> tuple[str, list[str]]:
    """A title and bullet lines for a face-less slide cut-away."""
    title = f"{rng.choice(NOUNS).upper()} REPORT"
    bullets = [f"- {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}: {int(rng.integers(2, 99))}%" for _ in range(n_bullets)]
    return title, bullets
