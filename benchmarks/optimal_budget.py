"""
Measure how the ``optimal`` attack's result depends on the attackers' training steps.

The robustness benchmark trains its learned attackers for a short budget per policy. This script
runs ``rl-advkd evaluate --attacks optimal`` on the same policies with several budgets, so the
page shows how much a longer-trained attacker would lower the return. Two evaluations run at a
time, one thread each. Raw outputs and ``summary.md`` go to ``benchmarks/results/optimal_budget/``.

    python benchmarks/optimal_budget.py   # after benchmarks/robustness.py (it attacks its AdvKD student)
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

from robustness import Job, evaluate_command, run_jobs

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "optimal_budget"


def sha256(path: Path) -> str:
    """Return the SHA-256 of a file, or of ``model.zip`` for a teacher folder."""
    target = path / "model.zip" if path.is_dir() else path
    return hashlib.sha256(target.read_bytes()).hexdigest()


def wall_time(seconds: float | None) -> str:
    return "not timed" if seconds is None else f"{seconds:.0f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--epsilon", type=float, default=0.075)
    parser.add_argument("--steps", default="25000,100000,200000", help="attacker budgets, comma-separated (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10_000, help="evaluation seed, the robustness benchmark's first")
    parser.add_argument("--teacher", type=Path, default=ROOT / "agents" / "Hopper-v5" / "teacher")
    parser.add_argument(
        "--student", type=Path, default=ROOT / "runs" / "robustness-full" / "Hopper-v5" / "advkd" / "seed0" / "student.zip"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    policies = {"teacher": args.teacher, "advkd": args.student}
    for name, path in policies.items():
        if not path.exists():
            option = "--teacher" if name == "teacher" else "--student"
            raise SystemExit(f"{name} policy not found: {path}; run `python benchmarks/robustness.py` first or pass {option} PATH")
    budgets = [int(value) for value in args.steps.split(",")]

    jobs = []
    for name, path in policies.items():
        for steps in budgets:
            out = args.out / f"{name}-{steps}.json"
            extra = ["--optimal-steps", str(steps)]
            command = evaluate_command(path, args.env, "optimal", f"{args.epsilon:g}", args.episodes, args.seed, out, extra)
            jobs.append(Job(f"{name}-{steps}", command, out))

    # Evaluations that finished in an earlier invocation are skipped and keep their recorded times.
    previous = args.out / "summary.json"
    seconds = json.loads(previous.read_text())["wall_seconds"] if previous.is_file() else {}
    seconds.update(run_jobs(jobs, parallel=2, log_dir=args.out / "logs"))

    lines = ["| policy | attacker steps | optimal return (falls) | chosen attacker | wall time |", "|---|---|---|---|---|"]
    records = {}
    for name in policies:
        for steps in budgets:
            record = json.loads((args.out / f"{name}-{steps}.json").read_text())
            row = next(row for row in record["policies"][0]["rows"] if row["attack"] == "optimal")
            records[f"{name}-{steps}"] = {"mean": row["mean"], "std": row["std"], "falls": row["falls"], "attacker": row["attacker"]}
            lines.append(
                f"| {name} | {steps:,} | {row['mean']:.0f} ± {row['std']:.0f} ({row['falls']}/{row['episodes']}) "
                f"| {row['attacker']} | {wall_time(seconds.get(f'{name}-{steps}'))} |"
            )
    lines.append(
        f"\n{args.env}, ε = {args.epsilon:g}, {args.episodes} deterministic episodes per row (seed {args.seed}), "
        f"{len(row['attackers'])} attacker configurations per row, the strongest chosen on "
        f"{row['attackers'][0]['selection_episodes']} separate episodes. Wall time: two evaluations "
        "at a time on 2 cores. Script: `benchmarks/optimal_budget.py`.\n"
    )
    summary = {
        "env_id": args.env,
        "epsilon": args.epsilon,
        "episodes": args.episodes,
        "seed": args.seed,
        "policies": {name: {"path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), "sha256": sha256(path)} for name, path in policies.items()},
        "rows": records,
        "wall_seconds": seconds,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
