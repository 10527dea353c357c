"""The README's two set-up commands are the contract with users and CI."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
  text = (ROOT / "README.md").read_text()
  blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
  assert len(blocks) >= 2, "README.md must open with two bash blocks: run the main job; run the tests"
  return [b.strip() for b in blocks[:2]]


def test_ci_runs_exactly_the_readme_test_command():
  _, test_cmd = _readme_commands()
  ci = (ROOT / ".ci" / "run").read_text()
  last = test_cmd.splitlines()[-1]
  assert last in ci, f".ci/run must run the README's test command {last!r}"


def test_readme_main_job_uses_the_one_entrypoint():
  main_cmd, _ = _readme_commands()
  assert "python -m experiments.main" in main_cmd
  config = re.search(r"--config[= ](\S+)", main_cmd).group(1).split(":")[0]
  assert (ROOT / config).is_file(), f"the README's main job names a missing config {config}"


def test_every_file_the_readme_links_or_shows_exists():
  text = (ROOT / "README.md").read_text()
  targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)]+)\)", text)
             if not t.startswith(("http:", "https:", "#"))]
  assert targets, "the README links no files"
  missing = [t for t in targets if not (ROOT / t).exists()]
  assert not missing, f"README links to missing files: {missing}"


def test_the_experiments_table_lists_every_config_with_its_named_variants():
  text = (ROOT / "README.md").read_text()
  rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)\.py:[^\n]*", text, flags=re.M)}
  configs = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*.py")
                   if not p.name.startswith("_"))
  assert sorted(rows) == configs, f"README's experiments table: {sorted(rows)}, configs: {configs}"
  for name, row in rows.items():
    variants = re.search(r"^VARIANTS = \(([^)]*)\)", (ROOT / "experiments" / "configs" /
                                                      f"{name}.py").read_text(), flags=re.M)
    first = re.findall(r'"(\w+)"', variants.group(1))[0]
    assert f":{first}`" in row, f"the {name} row does not show its default variant {first}"
