r"""Sweeps on submitit: launch a grid or a random search locally or on SLURM, watch it, compare.

    python -m launch.sweep --config experiments/configs/NAME.py[:ARG] --workdir runs/NAME \
        --grid optimizer.learning_rate=1e-3,3e-4 --grid seed=0,1 [--set total_steps=2000] \
        [--random optimizer.weight_decay=log_uniform:1e-5:1e-2 --num 8 --seed 0] \
        --executor local|slurm [--gpus_per_run N --nodes_per_run M --partition P --time MIN]
    python -m launch.sweep status runs/NAME
    python -m launch.sweep resume runs/NAME
    python -m launch.sweep summary runs/NAME --metric eval/loss [--mode min|max]

Each run is the normal entrypoint command in its own workdir ``runs/NAME/KEY=VALUE,...`` (so it
can be rerun by hand), launched as a submitit job: ``local`` runs ``--parallel`` of them at a time
on this machine (each with its own GPUs on a GPU host; one at a time on a CPU), and waits for
them; ``slurm`` submits one job per run (a multi-node run is one job of ``--nodes_per_run`` tasks
that join through ``jax.distributed``). ``runs/NAME/sweep.json`` writes the sweep down: what was
asked, the runs, their job ids. Job logs: ``runs/NAME/submitit/``; each run's output:
``RUN/log.txt``. TensorBoard on ``runs/NAME`` shows every run side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

from launch import jobs, plan, summary

COMMANDS = ("run", "status", "resume", "summary")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SweepError(Exception):
  """A mistake in what the sweep was asked to do: one line, exit status 2."""


# -- planning ------------------------------------------------------------------------------------

def _validate(config_spec: str, keys_values: Sequence[tuple[str, str]]) -> None:
  """Unknown config keys and ill-typed values are rejected before anything is launched."""
  # Imported here: the registry brings in JAX (3 s), which `status`, `resume` and `summary`
  # do not need.
  from collage.train.registry import check_overrides, load_config  # pylint: disable=g-import-not-at-top
  try:
    check_overrides(load_config(config_spec), keys_values)
  except ValueError as e:
    raise SweepError(str(e)) from None


def new_sweep(args: argparse.Namespace) -> plan.Sweep:
  """The runs that ``args`` ask for, checked against the config; nothing is written."""
  try:
    grid = plan.parse_pairs(args.grid, "--grid")
    rand = plan.parse_pairs(args.random, "--random")
    fixed = plan.parse_pairs(args.set, "--set", allow_empty=True)
    if rand and args.num < 1:
      raise ValueError(f"--num={args.num}: a random search needs --num >= 1")
    points = plan.grid_points(grid)
    if rand:
      draws = plan.random_points(rand, args.num, args.seed)
      points = [g + d for g in points for d in draws]
  except ValueError as e:
    raise SweepError(str(e)) from None
  swept = {k for p in points for k, _ in p}
  clash = swept & {k for k, _ in fixed}
  if clash:
    raise SweepError(f"--set and --grid/--random both give {sorted(clash)}; give each key once")
  _validate(args.config, [pair for p in points for pair in p] + fixed)
  directory = os.path.abspath(args.workdir)
  request = {"grid": grid, "random": rand, "num": args.num, "seed": args.seed, "set": fixed,
             "executor": args.executor, "parallel": args.parallel,
             "resources": vars(_resources(args))}
  return plan.Sweep(directory, args.config, request, plan.make_runs(directory, points))


def _resources(args: argparse.Namespace) -> jobs.Resources:
  return jobs.Resources(gpus_per_run=args.gpus_per_run, nodes_per_run=args.nodes_per_run,
                        partition=args.partition, time_min=args.time,
                        cpus_per_task=args.cpus_per_task, setup=list(args.setup))


def _check_directory(sweep: plan.Sweep, force: bool) -> None:
  if os.path.exists(sweep.directory) and not os.path.isdir(sweep.directory):
    raise SweepError(f"--workdir={sweep.directory} is a file, not a directory")
  if not os.path.isfile(sweep.path):
    return
  old = plan.Sweep.load(sweep.directory)
  as_json = lambda r: json.loads(json.dumps(r))
  same = old.config == sweep.config and as_json(old.request) == as_json(sweep.request)
  if same:
    raise SweepError(f"{sweep.directory} already holds this sweep; see it with "
                     f"`python -m launch.sweep status {sweep.directory}` or finish failed runs "
                     f"with `python -m launch.sweep resume {sweep.directory}`")
  if not force:
    raise SweepError(f"{sweep.directory} already holds a different sweep ({old.config}, "
                     f"{len(old.runs)} runs); choose another --workdir, or pass --force to "
                     "replace its sweep.json (run directories of the same name are resumed)")


# -- launching -----------------------------------------------------------------------------------

def _job_folder(sweep: plan.Sweep) -> str:
  return os.path.join(sweep.directory, "submitit")


def _submit(sweep: plan.Sweep, run: plan.Run, visible_gpus: tuple[int, ...] = ()):
  executor = sweep.request["executor"]
  resources = jobs.Resources(**sweep.request["resources"])
  ex = jobs.make_executor(executor, _job_folder(sweep), resources, run.name, visible_gpus)
  command = jobs.RunCommand(run.command(sweep.config, sweep.fixed), REPO,
                            os.path.join(run.workdir, "log.txt"))
  job = ex.submit(command)
  run.submissions.append({"job_id": str(job.job_id), "executor": executor,
                          "time": time.strftime("%Y-%m-%d %H:%M:%S")})
  sweep.save()
  return job


def _parallel(sweep: plan.Sweep) -> int:
  asked = int(sweep.request.get("parallel") or 0)
  if asked > 0:
    return asked
  per_run = int(sweep.request["resources"]["gpus_per_run"])
  gpus = jobs.local_gpu_count()
  return max(1, gpus // per_run) if per_run and gpus else 1


def drive_local(sweep: plan.Sweep, runs: Sequence[plan.Run]) -> dict[str, str]:
  """Runs ``runs`` on this machine, ``parallel`` at a time, until all have ended.

  Returns:
    ``{run name: final state}``.
  """
  slots = _parallel(sweep)
  per_run = int(sweep.request["resources"]["gpus_per_run"])
  gpu_sets = [tuple(range(i * per_run, (i + 1) * per_run)) for i in range(slots)]
  pending, active, ended = list(runs), {}, {}
  start = time.monotonic()
  while pending or active:
    free = [i for i in range(slots) if i not in active]
    while pending and free:
      slot = free.pop(0)
      run = pending.pop(0)
      active[slot] = (run, _submit(sweep, run, gpu_sets[slot] if per_run else ()))
      print(f"started {run.name} (job {run.job_id})", flush=True)
    time.sleep(0.5)
    for slot, (run, job) in list(active.items()):
      if job.done():
        del active[slot]
        ended[run.name] = jobs.run_state("local", _job_folder(sweep), run.job_id)
        done = len(ended)
        left = len(pending) + len(active)
        # Wall time per run from the runs that ended, times the rounds of `slots` left.
        per_run = (time.monotonic() - start) * min(slots, done) / done
        eta = per_run * -(-left // slots)
        print(f"{run.name}: {ended[run.name]}  ({done}/{len(runs)} ended"
              + (f", ETA {eta / 60:.1f} min)" if left else ")"), flush=True)
  return ended


def launch(sweep: plan.Sweep, runs: Sequence[plan.Run]) -> None:
  if sweep.request["executor"] == "local":
    ended = drive_local(sweep, runs)
    bad = sorted(n for n, s in ended.items() if s != "done")
    print(f"{len(ended) - len(bad)} of {len(ended)} runs done"
          + (f"; not done: {', '.join(bad)} (see status)" if bad else ""))
  else:
    for run in runs:
      _submit(sweep, run)
      print(f"submitted {run.name}: job {run.job_id}")


# -- the commands --------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
  if not args.grid and not args.random:
    raise SweepError("nothing to sweep: give --grid key=v1,v2 and/or --random key=dist:lo:hi")
  if args.executor not in jobs.EXECUTORS:
    raise SweepError(f"--executor={args.executor!r} is unknown; valid: "
                     f"{', '.join(jobs.EXECUTORS)}")
  if args.executor == "local" and args.nodes_per_run != 1:
    raise SweepError("--nodes_per_run > 1 needs --executor slurm; the local executor has one "
                     "machine")
  sweep = new_sweep(args)
  _check_directory(sweep, args.force)
  if args.dry_run:
    for run in sweep.runs:
      print(" ".join(run.command(sweep.config, sweep.fixed)))
    return 0
  sweep.save()
  print(f"sweep of {len(sweep.runs)} runs written to {sweep.path}")
  launch(sweep, sweep.runs)
  return 0


def states(sweep: plan.Sweep) -> dict[str, str]:
  return {run.name: jobs.run_state(run.submissions[-1]["executor"] if run.submissions else
                                   sweep.request["executor"], _job_folder(sweep), run.job_id)
          for run in sweep.runs}


def cmd_status(args: argparse.Namespace) -> int:
  sweep = plan.Sweep.load(args.directory)
  now = states(sweep)
  print(f"sweep {sweep.directory}: {sweep.config}, {len(sweep.runs)} runs "
        f"({sweep.request['executor']})")
  print("| run | state | step | latest metrics | job |\n|---|---|---|---|---|")
  for run in sweep.runs:
    last, total, shown = summary.progress(run)
    step = f"{last if last is not None else '-'}/{total if total is not None else '?'}"
    metrics = "  ".join(f"{k}={v:.4g}" for k, v in shown.items())
    print(f"| {run.name} | {now[run.name]} | {step} | {metrics} | {run.job_id or '-'} |")
  for run in sweep.runs:
    if now[run.name] == "failed":
      print(f"\n{run.name} failed; the end of {os.path.join(run.workdir, 'log.txt')}:")
      for line in summary.log_tail(run.workdir):
        print("    " + line)
  counts = {s: sum(v == s for v in now.values()) for s in jobs.STATES}
  print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
  return 0


def cmd_resume(args: argparse.Namespace) -> int:
  sweep = plan.Sweep.load(args.directory)
  now = states(sweep)
  again = [r for r in sweep.runs if now[r.name] in ("failed", "preempted") or not r.submissions]
  if not again:
    print("nothing to resume: " + ", ".join(f"{n} {s}" for s, n in
                                            {s: sum(v == s for v in now.values())
                                             for s in jobs.STATES}.items() if n))
    return 0
  print(f"resuming {len(again)} runs: {', '.join(r.name for r in again)}")
  launch(sweep, again)
  return 0


def cmd_summary(args: argparse.Namespace) -> int:
  sweep = plan.Sweep.load(args.directory)
  try:
    table = summary.collect(sweep, args.metric, args.mode)
  except ValueError as e:
    raise SweepError(str(e)) from None
  if not any("best" in row for row in table):
    logged = summary.logged_metrics(sweep)
    raise SweepError(f"no run logged {args.metric!r} yet; the runs have logged: "
                     f"{', '.join(logged) if logged else 'nothing yet (no RUN/metrics.jsonl)'}")
  paths = summary.write_summary(sweep, table, args.metric)
  with open(paths[1], encoding="utf-8") as f:
    print(f.read())
  print("written: " + ", ".join(paths))
  return 0


def _parser(command: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog=f"python -m launch.sweep {command}", description=__doc__.split("\n")[0],
      epilog=("subcommands: python -m launch.sweep [run] --config ... --workdir DIR (launch a "
              "sweep; the default) | status DIR (each run's state and step) | resume DIR "
              "(resubmit the runs that did not finish) | summary DIR --metric NAME (the best "
              "value of a metric per run: csv, markdown, plot); each takes --help")
      if command == "run" else None)
  if command == "run":
    p.add_argument("--config", required=True, help="experiments/configs/NAME.py[:ARG]")
    p.add_argument("--workdir", required=True, help="the sweep directory; one subdirectory per run")
    p.add_argument("--grid", action="append", default=[], help="key=v1,v2,... (repeatable)")
    p.add_argument("--random", action="append", default=[],
                   help="key=uniform:LO:HI | log_uniform:LO:HI | int_uniform:LO:HI | choice:A|B")
    p.add_argument("--num", type=int, default=0, help="random draws (with --random)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    p.add_argument("--set", action="append", default=[], help="key=value for every run")
    p.add_argument("--executor", default="local", help="local | slurm")
    p.add_argument("--parallel", type=int, default=0,
                   help="local: runs at a time (default: GPUs / gpus_per_run, or 1 on a CPU)")
    p.add_argument("--gpus_per_run", type=int, default=0, help="GPUs per node of each run")
    p.add_argument("--nodes_per_run", type=int, default=1, help="SLURM nodes per run")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--time", type=int, default=24 * 60, help="time limit of a run, minutes")
    p.add_argument("--cpus_per_task", type=int, default=None, help="SLURM CPUs per task")
    p.add_argument("--setup", action="append", default=[],
                   help="SLURM: a shell line run before each run (e.g. 'source .venv/bin/activate')")
    p.add_argument("--force", action="store_true", help="replace a different sweep's sweep.json")
    p.add_argument("--dry_run", action="store_true", help="print the commands, launch nothing")
  else:
    p.add_argument("directory", help="the sweep directory (runs/NAME)")
  if command == "summary":
    p.add_argument("--metric", required=True, help="a logged metric, e.g. eval/loss")
    p.add_argument("--mode", default="min", help="min | max: which value is best")
  return p


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
  args = _parser(command).parse_args(argv)
  handlers = {"run": cmd_run, "status": cmd_status, "resume": cmd_resume,
              "summary": cmd_summary}
  try:
    return handlers[command](args)
  except (SweepError, FileNotFoundError) as e:
    sys.stderr.write(f"error: {e}\n")
    return 2


if __name__ == "__main__":
  sys.exit(main())
