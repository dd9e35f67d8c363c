"""The real-footage regression check (`make real-footage`, scripts/real_footage.py): real presenter
clips joined into broadcast-like episodes (corpus), the whole pipeline run on them in a throwaway
checkout (run), and the figures taken from that run and from the real clips (measure, extras).

Nothing here is a pipeline stage: it is a tool that drives `dvc repro` from outside. The clips it
reads (`../shared/data/nwt_samples`) are a test set; they and everything trained on them stay in a
temporary folder that is deleted at the end.
"""
