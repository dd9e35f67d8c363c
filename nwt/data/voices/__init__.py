"""Held-out voices (issue 19): test-only clips of the presenter speaking in voices never heard in
training (espeak-ng variants, flite, festival), the mouth driven by the phone times of that very
audio. `engines` speaks; `render` draws, crops and shards the clips (the `voices` stage).
"""
