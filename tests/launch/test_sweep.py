"""Sweeps on submitit: a local sweep, status, resume of a killed run, summary, the SLURM job."""

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from collage.train import loop, mesh
from launch import jobs, plan, sweep as sweep_cli
from tests.train import helpers
from tests.train.linreg_task import LinRegTask

LINREG = os.path.join("tests", "train", "linreg_config.py")


def _cli(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "launch.sweep", *args], cwd=helpers.REPO,
                        env=helpers.env(8), capture_output=True, text=True, timeout=timeout)


def test_local_sweep_status_and_summary(tmp_path):
  d = tmp_path / "sw"
  done = _cli("--config", LINREG, "--workdir", str(d), "--grid",
              "optimizer.learning_rate=0.01,0.05", "--grid", "seed=0,1", "--set", "total_steps=20")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "4 of 4 runs done" in done.stdout
  recorded = json.loads((d / "sweep.json").read_text())
  assert len(recorded["runs"]) == 4 and all(r["submissions"] for r in recorded["runs"])

  status = _cli("status", str(d))
  assert status.returncode == 0 and status.stdout.count("| done | 20/20 |") == 4, status.stdout

  summary = _cli("summary", str(d), "--metric", "eval/mse")
  assert summary.returncode == 0, summary.stderr
  with open(d / "summary.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and (d / "summary.png").is_file() and (d / "summary.md").is_file()
  # The best value of each run is the minimum of what that run logged.
  sw = plan.Sweep.load(str(d))
  for run in sw.runs:
    logged = [json.loads(l) for l in open(os.path.join(run.workdir, "metrics.jsonl"))]
    best = min(r["eval/mse"] for r in logged if "eval/mse" in r)
    row = next(r for r in rows if r["run"] == run.name)
    assert float(row["best"]) == pytest.approx(best)
  bests = [float(r["best"]) for r in rows]
  assert bests == sorted(bests), "summary is sorted best first"
  # A metric the sweep never logged: the error lists the ones it did log.
  wrong = _cli("summary", str(d), "--metric", "eval/loss")
  assert wrong.returncode != 0 and "eval/loss" in wrong.stderr
  assert "eval/mse" in wrong.stderr and "mse" in wrong.stderr.split("logged:")[1]


def test_killed_run_shows_failed_and_resume_finishes_it_exactly(tmp_path):
  cfg = helpers.config(total_steps=60, checkpoint_every=10)
  ref = mesh.to_host(loop.run(LinRegTask(cfg), cfg, str(tmp_path / "ref"), "train")
                     .params["model"])
  d = tmp_path / "sw"
  driver = subprocess.Popen(
      [sys.executable, "-m", "launch.sweep", "--config", LINREG, "--workdir", str(d),
       "--grid", "seed=0", "--set", "total_steps=60", "--set", "slow_data_s=0.05",
       "--set", "checkpoint_every=10"], cwd=helpers.REPO, env=helpers.env(8),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  run_dir = d / "seed=0"
  deadline = time.monotonic() + 180
  while not ((run_dir / "checkpoints" / "10").exists() and (run_dir / "run.pid").exists()):
    assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
    time.sleep(0.05)
  os.kill(int((run_dir / "run.pid").read_text()), signal.SIGKILL)
  out, err = driver.communicate(timeout=120)
  assert "0 of 1 runs done" in out, out + err

  status = _cli("status", str(d))
  assert "| failed |" in status.stdout and "failed; the end of" in status.stdout, status.stdout

  resumed = _cli("resume", str(d))
  assert resumed.returncode == 0 and "1 of 1 runs done" in resumed.stdout, resumed.stdout
  assert "resumed from" in (run_dir / "log.txt").read_text()
  final = helpers.final_params(str(run_dir))
  for k in ref:
    np.testing.assert_array_equal(final[k], ref[k], err_msg=k)
  assert "| done | 60/60 |" in _cli("status", str(d)).stdout
  assert len(json.loads((d / "sweep.json").read_text())["runs"][0]["submissions"]) == 2


@pytest.mark.parametrize("args,message", [
    (["--grid", "optimizer.learnig_rate=0.1,0.2"], "unknown config key 'optimizer.learnig_rate'"),
    (["--grid", "total_steps=5,abc"], "takes a int, got 'abc'"),
    (["--random", "seed=gauss:0:1", "--num", "2"], "valid: uniform, log_uniform"),
    (["--grid", "seed=0", "--executor", "kubernetes"], "valid: local, slurm"),
])
def test_mistakes_are_rejected_before_anything_is_launched(tmp_path, args, message):
  done = _cli("--config", LINREG, "--workdir", str(tmp_path / "sw"), *args)
  assert done.returncode == 2 and message in done.stderr, done.stderr
  assert not (tmp_path / "sw").exists()


def test_a_different_sweep_in_the_workdir_is_refused_without_force(tmp_path):
  d = str(tmp_path / "sw")
  assert _cli("--config", LINREG, "--workdir", d, "--grid", "seed=0",
              "--set", "total_steps=2").returncode == 0
  again = _cli("--config", LINREG, "--workdir", d, "--grid", "seed=0", "--set", "total_steps=2")
  assert again.returncode == 2 and "already holds this sweep" in again.stderr
  other = _cli("--config", LINREG, "--workdir", d, "--grid", "seed=1", "--set", "total_steps=2")
  assert other.returncode == 2 and "different sweep" in other.stderr and "--force" in other.stderr
  forced = _cli("--config", LINREG, "--workdir", d, "--grid", "seed=1", "--set", "total_steps=2",
                "--force")
  assert forced.returncode == 0, forced.stderr


def test_random_search_is_seeded_and_in_range():
  spec = [("optimizer.learning_rate", "log_uniform:1e-4:1e-2"), ("seed", "int_uniform:0:3"),
          ("optimizer.name", "choice:adam|sgd")]
  a, b = plan.random_points(spec, 6, seed=3), plan.random_points(spec, 6, seed=3)
  assert a == b and a != plan.random_points(spec, 6, seed=4)
  for point in a:
    d = dict(point)
    assert 1e-4 <= float(d["optimizer.learning_rate"]) <= 1e-2
    assert d["seed"] in {"0", "1", "2", "3"} and d["optimizer.name"] in {"adam", "sgd"}


_FAKE_SBATCH = """#!/bin/sh
cp "$1" "{record}"
echo "Submitted batch job 4242"
"""


def test_slurm_job_is_built_with_resources_command_and_signal(tmp_path, monkeypatch):
  """The SLURM path, checked without a cluster: a fake sbatch on PATH records the job."""
  bindir = tmp_path / "bin"
  bindir.mkdir()
  record = tmp_path / "submitted.sh"
  for name, text in (("sbatch", _FAKE_SBATCH.format(record=record)), ("srun", "#!/bin/sh\n")):
    fake = bindir / name
    fake.write_text(text)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
  d = tmp_path / "sw"
  code = sweep_cli.main(["--config", LINREG, "--workdir", str(d), "--grid", "seed=0,1",
                         "--executor", "slurm", "--nodes_per_run", "2", "--gpus_per_run", "8",
                         "--partition", "gpu", "--time", "600", "--setup",
                         "source .venv/bin/activate"])
  assert code == 0
  script = record.read_text()
  for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
               "#SBATCH --partition=gpu", "#SBATCH --time=600", "#SBATCH --signal=USR2@120",
               "source .venv/bin/activate", "srun"):
    assert line in script, script
  sw = plan.Sweep.load(str(d))
  assert [r.job_id for r in sw.runs] == ["4242", "4242"]
  import submitit
  submitted = submitit.SlurmJob(folder=str(d / "submitit"), job_id="4242").submission()
  command = submitted.function
  assert isinstance(command, jobs.RunCommand)
  assert command.command[1:5] == ["-m", "experiments.main", "--config", LINREG]
  assert command.command[command.command.index("--workdir") + 1] == sw.runs[1].workdir
  assert "--config.seed=1" in command.command
  assert command.env is None, "each task inherits SLURM's environment, which jax.distributed reads"


def test_two_slurm_tasks_of_one_run_join_and_agree_with_one_process(tmp_path, eight_devices):
  """What srun gives each task of a 2-node run, on this machine: the RunCommand of the run
  joins through jax.distributed's SLURM detection and trains like one process."""
  workdir = tmp_path / "run"
  run = plan.Run("seed=0", str(workdir), [("seed", "0")])
  command = run.command(LINREG, [("total_steps", "20")])
  port_job = str(helpers.free_port() % 4096 + 1000)
  procs = []
  for rank in range(2):
    env = {**helpers.env(2), "SLURM_JOB_ID": port_job, "SLURM_STEP_ID": "0",
           "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2", "SLURM_PROCID": str(rank),
           "SLURM_LOCALID": str(rank), "SLURM_STEP_NUM_NODES": "1"}
    task = jobs.RunCommand(command, helpers.REPO, str(workdir / f"log_{rank}.txt"), env)
    procs.append(subprocess.Popen([sys.executable, "-c",
                                   "import pickle,sys; f=pickle.loads(sys.stdin.buffer.read()); "
                                   "sys.exit(f()['returncode'])"],
                                  cwd=helpers.REPO, stdin=subprocess.PIPE, env=helpers.env(2)))
    import pickle
    procs[-1].stdin.write(pickle.dumps(task))
    procs[-1].stdin.close()
  codes = [p.wait(timeout=240) for p in procs]
  logs = "".join((workdir / f"log_{r}.txt").read_text() for r in range(2))
  assert codes == [0, 0], logs[-3000:]
  assert "multi-process launch detected (slurm)" in logs and "process 1 of 2" in logs
  cfg = helpers.config(total_steps=20)
  single = mesh.to_host(loop.run(LinRegTask(cfg), cfg, str(tmp_path / "single"), "train",
                                 devices=eight_devices[:4]).params["model"])
  got = helpers.final_params(str(workdir))
  for k in single:
    np.testing.assert_allclose(got[k], single[k], rtol=1e-5, atol=1e-6)


def test_help_names_the_subcommands():
  done = _cli("--help", timeout=60)
  assert done.returncode == 0
  for word in ("status DIR", "resume DIR", "summary DIR --metric"):
    assert word in " ".join(done.stdout.split()), word
