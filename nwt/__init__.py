"""nwt: speech in, talking-presenter video out (NWT, Mama et al. 2021, reproduced and extended)."""

__version__ = "0.1.0"
