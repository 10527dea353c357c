"""Every user mistake at the entrypoint is one clear line on stderr, exit status 2, no traceback,
and nothing is created or changed in the workdir (issue 12's table; benchmarks/reliability.md)."""

import os

import pytest

from tests.train import helpers

LINREG = os.path.join("tests", "train", "linreg_config.py")
FRACTALIZE = os.path.join("experiments", "configs", "fractalize.py")
COMPRESS = os.path.join("experiments", "configs", "compress.py")
BENCHMARK = os.path.join("experiments", "configs", "codec_benchmark.py")

# (name, command line after `python -m experiments.main` with WORKDIR substituted, what stderr names)
MISTAKES = [
    ("no --config", ["--workdir", "WORKDIR"], ["--config is required", "fractalize.py"]),
    ("workdir is a file", ["--config", LINREG, "--workdir", "FILE"], ["is an existing file"]),
    ("config file missing", ["--config", "experiments/configs/nope.py", "--workdir", "WORKDIR"],
     ["no such file", "experiments/configs/"]),
    ("unknown variant", ["--config", COMPRESS + ":qiuck", "--workdir", "WORKDIR"],
     ["qiuck", "did you mean 'quick'?", "quick, full"]),
    ("path field to a missing file", ["--config", FRACTALIZE, "--workdir", "WORKDIR",
                                      "--config.image_path=/nonexistent.png"],
     ["/nonexistent.png", "does not exist"]),
    ("missing data folder", ["--config", COMPRESS, "--workdir", "WORKDIR",
                             "--config.data.source=folder:/nonexistent"], ["/nonexistent"]),
    ("negative total_steps", ["--config", LINREG, "--workdir", "WORKDIR",
                              "--config.total_steps=-5"], ["total_steps=-5", ">= 1"]),
    ("zero learning rate", ["--config", LINREG, "--workdir", "WORKDIR",
                            "--config.optimizer.learning_rate=0"], ["learning_rate", "> 0"]),
    ("ema_decay of 1", ["--config", LINREG, "--workdir", "WORKDIR",
                        "--config.optimizer.ema_decay=1.0"], ["ema_decay", "[0.0, 1.0)"]),
    ("mistyped flag", ["--config", LINREG, "--workdr", "WORKDIR"], ["Did you mean: workdir"]),
    ("bad mode", ["--config", LINREG, "--workdir", "WORKDIR", "--mode", "predict"],
     ["train|eval|sample"]),
    ("unknown config key", ["--config", LINREG, "--workdir", "WORKDIR", "--config.totl_steps=3"],
     ["totl_steps", "did you mean 'total_steps'?", "total_steps (int)"]),
    ("ill-typed value", ["--config", LINREG, "--workdir", "WORKDIR", "--config.total_steps=abc"],
     ["total_steps", "abc", "total_steps (int)"]),
    ("eval without checkpoint", ["--config", LINREG, "--workdir", "WORKDIR", "--mode", "eval"],
     ["needs a checkpoint", "--mode train"]),
    ("sample without sampler", ["--config", LINREG, "--workdir", "WORKDIR", "--mode", "sample"],
     ["has no sampler"]),
    ("batch not divisible", ["--config", LINREG, "--workdir", "WORKDIR", "--config.batch_size=12"],
     ["batch_size=12", "(8)"]),
    ("unknown benchmark codec", ["--config", BENCHMARK, "--workdir", "WORKDIR",
                                 "--config.codecs=jpeg,avif"], ["'avif'", "valid:", "webp"]),
    ("sample a benchmark", ["--config", BENCHMARK, "--workdir", "WORKDIR", "--mode", "sample"],
     ["codec_benchmark", "train (run the benchmark) and plan"]),
    ("negative temperature", ["--config", os.path.join("experiments", "configs", "vdvae.py:tiny"),
                              "--workdir", "WORKDIR", "--config.sample.temperature=-1"],
     ["sample.temperature=-1", ">= 0.0"]),
    ("top_p above 1", ["--config", os.path.join("experiments", "configs", "dctransformer.py"),
                       "--workdir", "WORKDIR", "--config.sample.top_p=1.5"],
     ["sample.top_p=1.5", "(0.0, 1.0]"]),
    ("stray argument", ["--config", LINREG, "--workdir", "WORKDIR", "total_steps=3"],
     ["unexpected arguments"]),
]


def _snapshot(root):
  out = {}
  for dirpath, dirnames, files in os.walk(root):
    for name in dirnames + files:
      p = os.path.join(dirpath, name)
      out[os.path.relpath(p, root)] = os.stat(p).st_mtime_ns
  return out


@pytest.mark.parametrize("name,args,expected", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_one_clear_line(tmp_path, name, args, expected):
  (tmp_path / "keep.txt").write_text("a user's file")
  (tmp_path / "FILE").write_text("not a directory")
  workdir = tmp_path / "run"
  args = [str(workdir) if a == "WORKDIR" else str(tmp_path / "FILE") if a == "FILE" else a
          for a in args]
  before = _snapshot(tmp_path)
  done = helpers.subprocess.run(
      [helpers.sys.executable, "-m", "experiments.main", *args], cwd=helpers.REPO,
      env=helpers.env(8), capture_output=True, text=True, timeout=240)
  lines = [l for l in done.stderr.splitlines() if l.strip()]
  assert done.returncode == 2, done.stderr[-2000:]
  assert "Traceback" not in done.stderr
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
  for text in expected:
    assert text in lines[0], lines[0]
  if name in ("mistyped flag", "bad mode"):
    assert "total_steps (int)" not in lines[0], "the config keys belong to config-key mistakes"
  assert _snapshot(tmp_path) == before, "the mistake created or changed files"


def test_resuming_with_a_config_of_another_structure_is_one_line_and_touches_nothing(tmp_path):
  workdir = tmp_path / "run"
  done = helpers.run_main(str(workdir), "--config.total_steps=10")
  assert done.returncode == 0, done.stderr[-2000:]
  before = _snapshot(tmp_path)
  recorded = (workdir / "config.json").read_text()
  done = helpers.run_main(str(workdir), "--config.total_steps=20", "--config.optimizer.name=sgd",
                          "--config.optimizer.ema_decay=0")
  lines = [l for l in done.stderr.splitlines() if l.strip()]
  assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
  for text in ('optimizer.name "adam" -> "sgd"', 'optimizer.ema_decay 0.9 -> 0', "intact",
               "config.json", "new --workdir"):
    assert text in lines[0], lines[0]
  assert "total_steps" not in lines[0]  # a resume may change it: not a reason to refuse
  assert "delete" not in lines[0].lower()
  assert _snapshot(tmp_path) == before and (workdir / "config.json").read_text() == recorded
  # A schedule and a decay of the same EMA may change on resume: allowed, and logged.
  done = helpers.run_main(str(workdir), "--config.total_steps=20",
                          "--config.optimizer.ema_decay=0.8")
  assert done.returncode == 0, done.stderr[-2000:]
  assert "total_steps 10 -> 20" in done.stderr and "optimizer.ema_decay 0.9 -> 0.8" in done.stderr


@pytest.fixture
def small_disk(tmp_path):
  """``mount(options)`` -> a tmpfs mounted at a fresh folder (unmounted after the test)."""
  mounted = []

  def mount(options: str):
    point = tmp_path / f"disk{len(mounted)}"
    point.mkdir()
    done = helpers.subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                  capture_output=True, text=True)
    if done.returncode != 0:
      pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    mounted.append(point)
    return point

  yield mount
  for point in mounted:
    helpers.subprocess.run(["umount", str(point)], capture_output=True)


@pytest.mark.parametrize("options,expected", [
    ("size=1m,ro", ["cannot write", "Read-only file system", "writable disk"]),
    ("size=64k", ["no space left on the device while writing", "checkpoints/10",
                  "no checkpoint was completed", "rerun the same command"]),
], ids=["read-only", "full"])
def test_a_disk_that_refuses_writes_is_one_line(small_disk, options, expected):
  workdir = small_disk(options) / "run"
  done = helpers.run_main(str(workdir))
  errors = [l for l in done.stderr.splitlines() if l.startswith("error: ")]
  assert done.returncode == 2, done.stderr[-3000:]
  assert "Traceback" not in done.stderr and len(errors) == 1, done.stderr[-3000:]
  for text in expected:
    assert text in errors[0], errors[0]
