"""The embedded default corpus: a procedurally rendered talking presenter with ground truth.

`render_episode` writes one episode (mp4 + truth JSON); `SyntheticConfig` holds the render
settings; `EpisodeLook` is the per-episode appearance (the latent attributes). See docs/design.md,
"The embedded default".
"""
from nwt.data.synthetic.episode import SyntheticConfig, render_episode
from nwt.data.synthetic.presenter import IDENTITIES, EpisodeLook, Identity

__all__ = ["render_episode", "EpisodeLook", "SyntheticConfig", "Identity", "IDENTITIES"]
