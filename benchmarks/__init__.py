"""Side-by-side measurements; each tool runs as a module from the repository root
(``python -m benchmarks.NAME``) and imports only ``collage/``."""
