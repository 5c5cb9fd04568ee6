"""
Side-by-side probes that chose the Hopper-v5 distillation defaults.

Each probe runs ``rl-advkd distill`` twice in parallel (one thread each, shipped teacher,
seed 0) with settings that differ in one or two options, and copies each run's results,
configuration, command and ``progress.csv`` to ``benchmarks/results/<probe>/<label>/``.

- ``lambda_probe``: λ = 0.5 (A) against λ = 0.1 (B), constant learning rate, 300k steps.
- ``schedule_probe``: a linearly decaying learning rate at 300k (C) and 500k (D) steps, λ = 0.1.

One seed per setting: a probe picks a default, it is not a significance test.

Usage: ``python benchmarks/probe.py lambda_probe|schedule_probe``
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBES = {
    "lambda_probe": {
        "A": ["--total-timesteps", "300000", "--lambda-adv", "0.5", "--learning-rate-schedule", "constant",
              "--eval-episodes", "20"],
        "B": ["--total-timesteps", "300000", "--lambda-adv", "0.1", "--learning-rate-schedule", "constant",
              "--eval-episodes", "20"],
    },
    "schedule_probe": {
        "C": ["--total-timesteps", "300000", "--lambda-adv", "0.1", "--learning-rate-schedule", "linear",
              "--eval-episodes", "50"],
        "D": ["--total-timesteps", "500000", "--lambda-adv", "0.1", "--learning-rate-schedule", "linear",
              "--eval-episodes", "50"],
    },
}  # fmt: skip


def main(probe: str) -> int:
    if probe not in PROBES:
        raise SystemExit(f"unknown probe {probe!r}; choose from {', '.join(PROBES)}")

    # One thread per run, so the two runs share 2 cores without contention.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = {}
    for label, options in PROBES[probe].items():
        run_dir = ROOT / "runs" / probe / label
        shutil.rmtree(run_dir, ignore_errors=True)
        command = ["rl-advkd", "distill", "--env", "Hopper-v5", "--run-dir", str(run_dir), *options]
        processes[label] = (run_dir, subprocess.Popen(command, cwd=ROOT, env=env))

    for label, (run_dir, process) in processes.items():
        if process.wait() != 0:
            raise SystemExit(f"run {label} failed with exit status {process.returncode}")
        target = ROOT / "benchmarks" / "results" / probe / label
        target.mkdir(parents=True, exist_ok=True)
        for name in ("results.json", "results.md", "config.yaml", "command.txt"):
            shutil.copy(run_dir / name, target / name)
        shutil.copy(run_dir / "logs" / "progress.csv", target / "progress.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
