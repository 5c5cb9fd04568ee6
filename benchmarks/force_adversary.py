"""
Distill two Hopper-v5 students side by side, without and with the force adversary, then
evaluate both under the dynamics attacks.

Both runs use the same seed, budget and defaults; they differ only in ``--force-adversary``.
Each student is then evaluated on ``natural``, ``force-random``, ``force`` (a fresh adversary
trained against it), ``mass`` and ``friction``. Raw outputs go to
``benchmarks/results/force_adversary/`` and the comparison table to ``summary.md`` there.

Usage: ``python benchmarks/force_adversary.py [--timesteps N] [--episodes N] [--seed N]``
"""

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "force_adversary"
VARIANTS = {"without": "--no-force-adversary", "with": "--force-adversary"}
ATTACKS = "natural,force-random,force,mass,friction"


def run_parallel(commands: dict[str, list[str]]) -> dict[str, float]:
    """Run the commands at once, one thread each, and return their wall times."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.time()
    processes = {name: subprocess.Popen(command, cwd=ROOT, env=env) for name, command in commands.items()}
    seconds = {}
    for name, process in processes.items():
        if process.wait() != 0:
            raise SystemExit(f"{name} failed with exit status {process.returncode}: {' '.join(commands[name])}")
        seconds[name] = round(time.time() - started, 1)
    return seconds


def summary_table(records: dict[str, dict]) -> str:
    """Render the comparison: one row per attack (and grid factor), one column per student."""
    rows = {name: record["policies"][0]["rows"] for name, record in records.items()}
    lines = ["| attack | " + " | ".join(f"student {name} force adversary" for name in rows) + " |"]
    lines.append("|---|" + "---|" * len(rows))
    for index, row in enumerate(next(iter(rows.values()))):
        label = row["attack"] if "factor" not in row else f"{row['attack']} ×{row['factor']:g}"
        if row["attack"] == "worst":
            label = f"**worst** ({row['worst_of']})"
        cells = [f"{r[index]['mean']:.0f} ± {r[index]['std']:.0f} ({r[index]['falls']}/{r[index]['episodes']})"
                 for r in rows.values()]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--timesteps", type=int, default=300_000, help="student env steps per run")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    runs = {name: ROOT / "runs" / "force_adversary" / name for name in VARIANTS}
    for run_dir in runs.values():
        shutil.rmtree(run_dir, ignore_errors=True)
    train_seconds = run_parallel({
        name: ["rl-advkd", "distill", "--env", "Hopper-v5", VARIANTS[name], "--seed", str(args.seed),
               "--total-timesteps", str(args.timesteps), "--eval-attacks", "natural",
               "--eval-episodes", str(args.episodes), "--run-dir", str(runs[name])]
        for name in VARIANTS
    })  # fmt: skip
    eval_seconds = run_parallel({
        name: ["rl-advkd", "evaluate", "--policy", str(runs[name] / "student.zip"), "--env", "Hopper-v5",
               "--attacks", ATTACKS, "--episodes", str(args.episodes), "--seed", str(args.seed + 1000),
               "--out", str(runs[name] / "dynamics.json")]
        for name in VARIANTS
    })  # fmt: skip

    records = {}
    for name, run_dir in runs.items():
        target = OUT / name
        target.mkdir(parents=True, exist_ok=True)
        for file in ("config.yaml", "command.txt", "results.json", "dynamics.json", "dynamics.md"):
            shutil.copy(run_dir / file, target / file)
        shutil.copy(run_dir / "logs" / "progress.csv", target / "progress.csv")
        records[name] = json.loads((run_dir / "dynamics.json").read_text())

    table = summary_table(records)
    header = (
        f"Hopper-v5, seed {args.seed}, {args.timesteps} student steps per run, {args.episodes} deterministic "
        f"episodes per row (episode seeds from {args.seed + 1000}). Cells: mean ± std of the return (falls).\n"
        f"Wall time, two runs in parallel on one thread each: training {train_seconds}, evaluation {eval_seconds} s.\n\n"
    )
    (OUT / "summary.md").write_text(header + table)
    print(header + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
