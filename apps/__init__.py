"""Programs a person opens: the top floor, beside ``experiments/``, ``launch/`` and
``benchmarks/``. An app imports ``collage/`` (and, to sample trained runs, the experiments'
task code); nothing below imports an app."""
