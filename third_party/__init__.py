"""Definitions fixed by outside standards, with provenance (see README.md)."""
