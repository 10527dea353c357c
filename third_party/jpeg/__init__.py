"""JPEG definitions fixed by ITU-T T.81 (see README.md for provenance)."""
