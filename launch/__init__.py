"""Launching runs: sweeps on submitit (sweep.py), SLURM scripts, multi-host notes."""
