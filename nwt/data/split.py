"""Train/val/test/unseen splits (docs/design.md, Splits).

Inside each episode the clips, in time order, form contiguous blocks train | val | test with
one clip left out between blocks ("gap"), so neighbouring frames do not leak across splits
and every episode is seen in training (the models' episode embedding needs that). The last
`unseen_episodes` episodes are held out whole as `unseen`.
"""
from __future__ import annotations

GAP = "gap"
MIN_CLIPS_FOR_HOLDOUT = 5  # fewer clips than this: all train (val/test need a block and a gap each)


def assign_splits(n_clips: int, val_fraction: float, test_fraction: float) -> list[str]:
    """Split labels for an episode's clips in time order."""
    if n_clips < MIN_CLIPS_FOR_HOLDOUT:
        return ["train"] * n_clips
    n_val = max(1, round(val_fraction * n_clips)) if val_fraction > 0 else 0
    n_test = max(1, round(test_fraction * n_clips)) if test_fraction > 0 else 0
    n_gaps = (n_val > 0) + (n_test > 0)
    n_train = n_clips - n_val - n_test - n_gaps
    if n_train < 1:
        return ["train"] * n_clips
    labels = ["train"] * n_train
    for name, n in (("val", n_val), ("test", n_test)):
        if n:
            labels += [GAP] + [name] * n
    return labels


def unseen_episode_ids(episode_ids: list[str], unseen_episodes: int) -> list[str]:
    """The last `unseen_episodes` episodes in index order; at least one episode stays for training."""
    n = max(0, min(int(unseen_episodes), len(episode_ids) - 1))
    return episode_ids[len(episode_ids) - n:] if n else []
