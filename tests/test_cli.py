"""The rl-advkd command, run as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rl_advkd.cli import main
from conftest import PENDULUM, SHIPPED_PENDULUM_TEACHER


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rl_advkd", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("cli")
    run_dir = workdir / "run"
    result = _run(
        "distill",
        "--env", PENDULUM,
        "--total-timesteps", "1024",
        "--n-envs", "2",
        "--n-steps", "256",
        "--eval-episodes", "2",
        "--run-dir", str(run_dir),
        cwd=workdir,
    )  # fmt: skip
    return run_dir, result


def test_distill_writes_run_folder(distill_run):
    run_dir, result = distill_run
    assert result.returncode == 0, result.stderr
    for name in ("student.zip", "config.yaml", "command.txt", "results.json", "results.md"):
        assert (run_dir / name).is_file(), name
    logs = {path.name for path in (run_dir / "logs").iterdir()}
    assert {"progress.csv", "log.txt"} <= logs
    assert any(name.startswith("events.out.tfevents") for name in logs)
    assert "--total-timesteps 1024" in (run_dir / "command.txt").read_text()


def test_distill_prints_side_by_side_table(distill_run):
    run_dir, result = distill_run
    assert "| attack | ε | teacher return (falls) | student return (falls) |" in result.stdout
    record = json.loads((run_dir / "results.json").read_text())
    assert [policy["name"] for policy in record["policies"]] == ["teacher", "student"]
    attacks = [row["attack"] for row in record["policies"][1]["rows"]]
    assert attacks == ["natural", "random", "mad", "worst"]
    assert record["policies"][0]["actor_parameters"] > 10 * record["policies"][1]["actor_parameters"]


def test_distill_logs_distillation_metrics(distill_run):
    run_dir, _ = distill_run
    header = (run_dir / "logs" / "progress.csv").read_text().splitlines()[0].split(",")
    assert "train/kl_teacher" in header
    assert "train/kl_teacher_adv" in header


def test_evaluate_student_writes_rows(distill_run, tmp_path):
    run_dir, _ = distill_run
    out = tmp_path / "eval" / "results.json"
    result = _run(
        "evaluate", "--policy", str(run_dir / "student.zip"), "--env", PENDULUM,
        "--attacks", "natural,random", "--episodes", "3", "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    rows = record["policies"][0]["rows"]
    assert [row["attack"] for row in rows] == ["natural", "random", "worst"]
    for row in rows:
        assert {"mean", "std", "episodes", "falls", "epsilon"} <= set(row)
        assert row["episodes"] == 3
    assert rows[-1]["mean"] == min(row["mean"] for row in rows[:-1])
    assert record["epsilon"] == 0.3
    assert "stable-baselines3" in record["versions"]
    assert out.with_suffix(".md").is_file()


def test_evaluate_teacher_same_seed_same_returns(tmp_path):
    returns = []
    for name in ("a.json", "b.json"):
        code = main(["evaluate", "--policy", str(SHIPPED_PENDULUM_TEACHER), "--env", PENDULUM,
                     "--attacks", "random", "--episodes", "2", "--out", str(tmp_path / name)])  # fmt: skip
        assert code == 0
        returns.append(json.loads((tmp_path / name).read_text())["policies"][0]["rows"][0]["returns"])
    assert returns[0] == returns[1]
