"""
Compare two weights λ of the PPO term on Hopper-v5 with the shipped teacher, side by side.

Runs ``rl-advkd distill`` twice in parallel (300k steps, seed 0): ``A`` with λ = 0.5 and ``B``
with λ = 0.1, everything else at the profile's defaults, and copies each run's results,
configuration, command and ``progress.csv`` to ``benchmarks/results/lambda_probe/``. One
seed per setting: this picks a default, it is not a significance test.
"""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "lambda_probe"
SETTINGS = {"A": "0.5", "B": "0.1"}


def main() -> int:
    processes = {}
    for label, lambda_adv in SETTINGS.items():
        run_dir = ROOT / "runs" / "lambda_probe" / label
        shutil.rmtree(run_dir, ignore_errors=True)
        command = ["rl-advkd", "distill", "--run-dir", str(run_dir), "--total-timesteps", "300000",
                   "--lambda-adv", lambda_adv, "--eval-episodes", "20"]  # fmt: skip
        # One thread per run, so the two runs share 2 cores without contention.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        processes[label] = (run_dir, subprocess.Popen(command, cwd=ROOT, env=env))

    for label, (run_dir, process) in processes.items():
        if process.wait() != 0:
            raise SystemExit(f"run {label} failed with exit status {process.returncode}")
        target = OUT / label
        target.mkdir(parents=True, exist_ok=True)
        for name in ("results.json", "results.md", "config.yaml", "command.txt"):
            shutil.copy(run_dir / name, target / name)
        shutil.copy(run_dir / "logs" / "progress.csv", target / "progress.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
