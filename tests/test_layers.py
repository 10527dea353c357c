"""The dependency rule of ``../shared/DESIGN.md``, checked by machine: the import-linter
contracts in pyproject.toml (five floors, arrows pointing down only; no circles inside a
package) hold, and a contract that is broken is reported as broken (the check can fail)."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lint(*args, cwd=REPO):
  exe = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable),
                                                      "lint-imports")
  return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
  done = _lint()
  assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
  assert "five floors KEPT" in done.stdout and "no circles in a package KEPT" in done.stdout
  assert "benchmarks import only collage KEPT" in done.stdout


def test_every_benchmark_script_is_a_module_the_contracts_see():
  """A script in a folder without ``__init__.py`` is outside the import graph, so the
  contracts would not see what it imports: benchmarks are modules of the package."""
  hidden = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(REPO, "benchmarks"))
            for f in files if f.endswith(".py")
            and not os.path.isfile(os.path.join(d, "__init__.py"))]
  assert not hidden, f"scripts the import contracts cannot see: {hidden}"


def test_an_arrow_running_back_up_breaks_the_contract(tmp_path):
  """A copy of the tree where a ground-floor module imports the runtime fails the check."""
  for name in ("collage", "experiments", "launch", "benchmarks", "apps"):
    if os.path.isdir(os.path.join(REPO, name)):
      shutil.copytree(os.path.join(REPO, name), tmp_path / name,
                      ignore=shutil.ignore_patterns("__pycache__", "*.npz", "*.png", "*.json"))
  shutil.copy(os.path.join(REPO, "pyproject.toml"), tmp_path / "pyproject.toml")
  bad = tmp_path / "collage" / "ops" / "upward.py"
  bad.write_text("from collage.train import loop  # an arrow up\n")
  (tmp_path / "benchmarks" / "sideways.py").write_text("from experiments import main\n")
  env_path = str(tmp_path)
  exe = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable),
                                                      "lint-imports")
  done = subprocess.run([exe], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PYTHONPATH": env_path})
  assert done.returncode != 0
  assert "collage.ops.upward -> collage.train.loop" in done.stdout
  assert "benchmarks.sideways -> experiments.main" in done.stdout
