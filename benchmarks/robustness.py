"""
Train, evaluate and compare robust students over seeds, then regenerate BENCHMARKS.md.

Policies, compared at equal student size and equal environment steps on each task:

- ``teacher``: the shipped teacher;
- ``ppo-scratch``: the student's network trained with plain SB3 PPO on the same normalized
  observations (the teacher's statistics) and the same PPO settings, no teacher;
- ``kl-only``: distillation without any adversary (λ = 0, β = 0, no attacker in the rollouts);
- ``advkd``: the full objective of the task profile;
- on the first task also the ablations ``no-robust-kl`` (β = 0), ``no-rollout-attacker``
  (attack fraction 0) and ``force-adversary`` (the full objective plus the RARL force adversary).

Each (task, policy, seed) trains in its own run folder under ``--runs`` and is skipped when its
results exist, so an interrupted benchmark continues where it stopped. Two jobs run at a time,
one thread each. Every student is then evaluated with ``rl-advkd evaluate`` on every attack and
ε (the learned ``optimal`` attacker in a second evaluation, at one ε per task, on the same episode
seeds), and ``summary.json`` holds, per policy, attack and ε, the interquartile mean (IQM) over seeds
of the per-seed mean return with a 95% stratified bootstrap confidence interval (rliable).

    python benchmarks/robustness.py                   # the full benchmark (about 1.5 hours on 2 cores)
    python benchmarks/robustness.py --budget medium   # Hopper-v5 and HalfCheetah-v5 at 100k steps
    python benchmarks/robustness.py --budget short    # minutes: InvertedPendulum-v5, tiny budgets

The short budget writes its page to ``--page`` (default: ``<out>/BENCHMARKS.md``), so it never
replaces the committed BENCHMARKS.md. The full and medium budgets regenerate BENCHMARKS.md
through ``benchmarks/report.py``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MAIN_VARIANTS = ["teacher", "ppo-scratch", "kl-only", "advkd"]
ABLATIONS = ["no-robust-kl", "no-rollout-attacker", "force-adversary"]


@dataclass
class Budget:
    """Sizes of one benchmark budget."""

    tasks: list[str]
    seeds: dict[str, int]
    timesteps: dict[str, int]
    episodes: int
    attacks: str
    epsilons: dict[str, list[float]]
    ablations_on: str
    ablations: list[str] = field(default_factory=lambda: list(ABLATIONS))
    # The learned attacker trains for minutes per policy and ε, so it runs at one ε per task, the
    # one the published tables use, in a separate evaluation with the same episode seeds.
    optimal_epsilon: dict[str, float] = field(default_factory=dict)
    optimal_steps: int = 0
    extra_distill: list[str] = field(default_factory=list)
    extra_evaluate: list[str] = field(default_factory=list)


BUDGETS = {
    "full": Budget(
        tasks=["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"],
        seeds={"Hopper-v5": 3, "Walker2d-v5": 2, "HalfCheetah-v5": 2},
        # NOTE: 100k steps per student keep the whole suite to about 1.5 hours on 2 cores (estimated
        # from the jobs' recorded wall times). At this budget the Hopper-v5 and Walker2d-v5 students
        # stay below 90% of their teacher's natural return.
        timesteps={"Hopper-v5": 100_000, "Walker2d-v5": 100_000, "HalfCheetah-v5": 100_000},
        episodes=50,
        attacks="natural,random,mad,critic",
        epsilons={"Hopper-v5": [0.05, 0.075, 0.1], "Walker2d-v5": [0.025, 0.05, 0.075], "HalfCheetah-v5": [0.1, 0.15, 0.2]},
        ablations_on="Hopper-v5",
        # The published tables use 0.075 on Hopper, 0.05 on Walker2d and 0.15 on HalfCheetah.
        optimal_epsilon={"Hopper-v5": 0.075, "Walker2d-v5": 0.05, "HalfCheetah-v5": 0.15},
        optimal_steps=25_000,
    ),
    # A third of the steps, fewer episodes and no HalfCheetah-v5 ablations: under an hour on 2 cores.
    "medium": Budget(
        tasks=["Hopper-v5", "HalfCheetah-v5"],
        seeds={"Hopper-v5": 3, "HalfCheetah-v5": 2},
        timesteps={"Hopper-v5": 100_000, "HalfCheetah-v5": 100_000},
        episodes=20,
        attacks="natural,random,mad,critic",
        epsilons={"Hopper-v5": [0.05, 0.075, 0.1], "HalfCheetah-v5": [0.1, 0.15, 0.2]},
        ablations_on="Hopper-v5",
        # The force adversary triples the training time of a run; it is left to the full budget.
        ablations=["no-robust-kl", "no-rollout-attacker"],
    ),
    "short": Budget(
        tasks=["InvertedPendulum-v5"],
        seeds={"InvertedPendulum-v5": 2},
        timesteps={"InvertedPendulum-v5": 1024},
        episodes=2,
        attacks="natural,random,mad",
        epsilons={"InvertedPendulum-v5": [0.1, 0.3]},
        ablations_on="none",
        optimal_epsilon={"InvertedPendulum-v5": 0.3},
        optimal_steps=256,
        extra_distill=["--n-envs", "2", "--n-steps", "128", "--n-epochs", "2", "--pgd-steps", "2", "--net-arch", "16,16"],
    ),
}

# Distillation options of each variant, on top of the task profile's defaults.
VARIANTS: dict[str, list[str]] = {
    "kl-only": ["--lambda-adv", "0", "--beta", "0", "--attack-fraction", "0", "--no-force-adversary"],
    "advkd": ["--no-force-adversary"],
    "no-robust-kl": ["--beta", "0", "--no-force-adversary"],
    "no-rollout-attacker": ["--attack-fraction", "0", "--no-force-adversary"],
    "force-adversary": ["--force-adversary"],
}


@dataclass
class Job:
    """One training or evaluation command and the file whose presence means it is done."""

    name: str
    command: list[str]
    done_file: Path


def variants_for(task: str, budget: Budget) -> list[str]:
    return MAIN_VARIANTS + (budget.ablations if task == budget.ablations_on else [])


def policy_path(runs: Path, task: str, variant: str, seed: int) -> Path:
    """Return what ``rl-advkd evaluate --policy`` takes for one trained (or shipped) policy."""
    if variant == "teacher":
        return ROOT / "agents" / task / "teacher"
    run_dir = runs / task / variant / f"seed{seed}"
    return run_dir if variant == "ppo-scratch" else run_dir / "student.zip"


def training_jobs(runs: Path, budget: Budget) -> list[Job]:
    jobs = []
    for task in budget.tasks:
        for variant in variants_for(task, budget):
            if variant == "teacher":
                continue
            for seed in range(budget.seeds[task]):
                run_dir = runs / task / variant / f"seed{seed}"
                steps = str(budget.timesteps[task])
                if variant == "ppo-scratch":
                    command = [sys.executable, __file__, "scratch", "--env", task, "--seed", str(seed),
                               "--timesteps", steps, "--out", str(run_dir), *budget.extra_distill]  # fmt: skip
                    done = run_dir / "model.zip"
                else:
                    command = [sys.executable, "-m", "rl_advkd", "distill", "--env", task, "--seed", str(seed), "--total-timesteps", steps,
                               "--run-dir", str(run_dir), "--eval-attacks", "natural", "--eval-episodes", "5",
                               "--preflight-episodes", "0", *VARIANTS[variant], *budget.extra_distill]  # fmt: skip
                    done = run_dir / "results.json"
                jobs.append(Job(f"{task}/{variant}/seed{seed}", command, done))
    return jobs


def evaluate_command(policy: Path, env_id: str, attacks: str, epsilon: str, episodes: int, seed: int, out: Path, extra: list[str]) -> list[str]:
    """Return the ``rl-advkd evaluate`` command line of one evaluation."""
    return [sys.executable, "-m", "rl_advkd", "evaluate", "--policy", str(policy), "--env", env_id, "--attacks", attacks,
            "--epsilon", epsilon, "--episodes", str(episodes), "--seed", str(seed), "--out", str(out), *extra]  # fmt: skip


def evaluation_jobs(runs: Path, budget: Budget) -> list[Job]:
    jobs = []
    epsilons = {task: ",".join(f"{value:g}" for value in budget.epsilons[task]) for task in budget.tasks}
    for task in budget.tasks:
        for variant in variants_for(task, budget):
            # The teacher is deterministic and evaluated on the same episode seeds for every
            # seed of the students, so one evaluation per seed index keeps the tables aligned.
            for seed in range(budget.seeds[task]):
                policy = policy_path(runs, task, variant, seed)
                out = runs / task / variant / f"seed{seed}" / "evaluation.json"
                episode_seed = 10_000 + 1000 * seed
                command = evaluate_command(
                    policy, task, budget.attacks, epsilons[task], budget.episodes, episode_seed, out, budget.extra_evaluate
                )
                jobs.append(Job(f"evaluate {task}/{variant}/seed{seed}", command, out))

                if task in budget.optimal_epsilon:
                    out = out.with_name("evaluation-optimal.json")
                    extra = ["--optimal-steps", str(budget.optimal_steps), *budget.extra_evaluate]
                    epsilon = f"{budget.optimal_epsilon[task]:g}"
                    command = evaluate_command(policy, task, "optimal", epsilon, budget.episodes, episode_seed, out, extra)
                    jobs.append(Job(f"optimal {task}/{variant}/seed{seed}", command, out))
    return jobs


def run_jobs(jobs: list[Job], parallel: int, log_dir: Path) -> dict[str, float]:
    """Run the jobs that are not done yet, ``parallel`` at a time; return their wall times."""
    pending = [job for job in jobs if not job.done_file.is_file()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log_dir.mkdir(parents=True, exist_ok=True)
    running: list[tuple[Job, subprocess.Popen, float, Any]] = []
    seconds: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            job.done_file.parent.mkdir(parents=True, exist_ok=True)
            log = (log_dir / (job.name.replace("/", "_").replace(" ", "_") + ".log")).open("w")
            print(f"start {job.name}", flush=True)
            running.append((job, subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT, env=env), time.time(), log))
        time.sleep(0.5)
        for entry in list(running):
            job, process, started, log = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            log.close()
            seconds[job.name] = round(time.time() - started, 1)
            if process.returncode != 0:
                raise RuntimeError(f"{job.name} failed with status {process.returncode}; see {log.name}")
            print(f"done  {job.name} in {seconds[job.name]:.0f} s", flush=True)
    return seconds


def train_scratch(env_id: str, seed: int, timesteps: int, out: Path, overrides: list[str]) -> None:
    """
    Train the student's network with plain SB3 PPO on the teacher's normalized observations.

    The model is saved like a teacher (``model.zip``, the teacher's statistics as
    ``vecnormalize.pkl`` and ``provenance.json``) so that ``rl-advkd evaluate`` loads it as one.
    """
    from stable_baselines3 import PPO

    from rl_advkd.cli_distill import _add_config_options, _apply_overrides
    from rl_advkd.distill import build_student, ppo_kwargs
    from rl_advkd.profiles import DistillConfig, load_profile
    from rl_advkd.provenance import command_line, library_versions, utc_now, write_json
    from rl_advkd.teacher_loading import load_teacher

    parser = argparse.ArgumentParser()
    _add_config_options(parser, DistillConfig)
    profile = load_profile(env_id)
    config = _apply_overrides(profile.distill, parser.parse_args(overrides))
    teacher = load_teacher(None, env_id)
    # The student's env and settings, built as distill builds them; only the algorithm differs.
    env = build_student(config, teacher, env_id, epsilon=0.0).get_env()
    model = PPO("MlpPolicy", env, seed=seed, **ppo_kwargs(config))
    from stable_baselines3.common.logger import configure

    # The same progress.csv as a distill run, for the steps-to-90% cost figure.
    model.set_logger(configure(str(out / "logs"), ["csv"]))
    started = time.time()
    model.learn(timesteps)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.zip")
    save_statistics(teacher.normalizer, env_id, out / "vecnormalize.pkl")
    write_json(
        out / "provenance.json",
        {
            "env_id": env_id,
            "algo": "ppo",
            "command": command_line(),
            "total_timesteps": int(model.num_timesteps),
            "seed": seed,
            "train_seconds": round(time.time() - started, 1),
            "created": utc_now(),
            "normalize": {"norm_obs": True, "note": "the teacher's frozen statistics"},
            "versions": library_versions(),
        },
    )


def save_statistics(normalizer: Any, env_id: str, path: Path) -> None:
    """
    Save frozen observation statistics as an SB3 ``VecNormalize`` file.

    The student trained from scratch saw observations normalized with the teacher's statistics
    (estimated ones for a teacher trained on raw observations), so it is saved with exactly those.
    """
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    stats = VecNormalize(
        DummyVecEnv([lambda: gym.make(env_id)]),
        norm_obs=True,
        norm_reward=False,
        clip_obs=normalizer.clip_obs,
        epsilon=normalizer.epsilon,
    )
    stats.obs_rms.mean = np.array(normalizer.mean)
    stats.obs_rms.var = np.array(normalizer.var)
    stats.obs_rms.count = normalizer.count
    stats.save(str(path))


def measure_throughput(env_id: str, steps: int, overrides: list[str]) -> dict[str, float]:
    """
    Time AdvKD and plain SB3 PPO with the same student on the same task, one after the other.

    Both train ``steps`` env steps from scratch in this process with one thread, twice each in
    alternating order, and the faster of the two repeats counts.
    """
    import torch as th
    from stable_baselines3 import PPO

    from rl_advkd.cli_distill import _add_config_options, _apply_overrides
    from rl_advkd.distill import build_student, ppo_kwargs
    from rl_advkd.profiles import DistillConfig, load_profile
    from rl_advkd.teacher_loading import load_teacher

    th.set_num_threads(1)
    parser = argparse.ArgumentParser()
    _add_config_options(parser, DistillConfig)
    profile = load_profile(env_id)
    config = _apply_overrides(profile.distill, parser.parse_args(overrides))
    teacher = load_teacher(None, env_id)

    def advkd_seconds() -> float:
        model = build_student(config, teacher, env_id, profile.epsilon)
        started = time.perf_counter()
        model.learn(steps)
        return time.perf_counter() - started

    def ppo_seconds() -> float:
        env = build_student(config, teacher, env_id, 0.0).get_env()
        model = PPO("MlpPolicy", env, seed=0, **ppo_kwargs(config))
        started = time.perf_counter()
        model.learn(steps)
        return time.perf_counter() - started

    advkd, ppo = [], []
    for _ in range(2):
        advkd.append(advkd_seconds())
        ppo.append(ppo_seconds())
    return {
        "steps": steps,
        "advkd_steps_per_s": steps / min(advkd),
        "ppo_steps_per_s": steps / min(ppo),
        "advkd_seconds": advkd,
        "ppo_seconds": ppo,
    }


def steps_to_fraction(progress_csv: Path, reference: float, fraction: float = 0.9) -> int | None:
    """Return the first step at which ``rollout/ep_rew_mean`` reaches ``fraction`` of ``reference``, or ``None``."""
    import csv

    with progress_csv.open() as file:
        for row in csv.DictReader(file):
            value = row.get("rollout/ep_rew_mean")
            if value and float(value) >= fraction * reference:
                return int(float(row["time/total_timesteps"]))
    return None


def cost_figures(runs: Path, budget: Budget, task: str, throughput_steps: int) -> dict[str, Any]:
    """Measure the cost figures on ``task``: steps to 90% of the teacher, throughput, parameter counts."""
    teacher = json.loads((runs / task / "teacher" / "seed0" / "evaluation.json").read_text())["policies"][0]
    natural = next(row["mean"] for row in teacher["rows"] if row["attack"] == "natural")
    steps = {}
    for variant in ("ppo-scratch", "kl-only", "advkd"):
        steps[variant] = [
            steps_to_fraction(runs / task / variant / f"seed{seed}" / "logs" / "progress.csv", natural)
            for seed in range(budget.seeds[task])
        ]
    return {
        "task": task,
        "teacher_natural": natural,
        "steps_to_90_percent": steps,
        "budget_steps": budget.timesteps[task],
        "throughput": measure_throughput(task, throughput_steps, budget.extra_distill),
    }


def iqm_with_ci(per_seed: list[float], seed: int = 0) -> dict[str, float]:
    """Return the interquartile mean over seeds and its 95% stratified bootstrap confidence interval."""
    from rliable import library as rly
    from rliable import metrics

    scores = {"policy": np.asarray(per_seed, dtype=np.float64).reshape(-1, 1)}
    with warnings.catch_warnings():
        # arch 7 warns that the random_state argument, which rliable 1.2 passes, is deprecated.
        warnings.simplefilter("ignore", FutureWarning)
        point, interval = rly.get_interval_estimates(
            scores, lambda values: np.array([metrics.aggregate_iqm(values)]), reps=2000, confidence_interval_size=0.95,
            random_state=np.random.RandomState(seed),
        )  # fmt: skip
    return {"iqm": float(point["policy"][0]), "low": float(interval["policy"][0, 0]), "high": float(interval["policy"][1, 0])}


def seed_rows(record: dict[str, Any]) -> dict[tuple[str, float], dict[str, Any]]:
    """Index the rows of one policy's evaluation by (attack label, ε), without the worst rows."""
    rows = {}
    for policy in record["policies"]:
        for row in policy["rows"]:
            if row["attack"] == "worst" or row["attack"].startswith("worst"):
                continue
            label = row["attack"] + (f" ×{row['factor']:g}" if "factor" in row else "")
            # The natural return does not depend on ε: one row, filed under ε = 0.
            epsilon = 0.0 if row["attack"] == "natural" else float(row["epsilon"])
            rows[(label, epsilon)] = row
    return rows


def summarize(runs: Path, budget: Budget) -> dict[str, Any]:
    """Aggregate every evaluation into IQMs over seeds, with the worst case per ε."""
    tasks = {}
    for task in budget.tasks:
        policies = {}
        for variant in variants_for(task, budget):
            per_seed = []
            for seed in range(budget.seeds[task]):
                run_dir = runs / task / variant / f"seed{seed}"
                rows = seed_rows(json.loads((run_dir / "evaluation.json").read_text()))
                if task in budget.optimal_epsilon:
                    rows.update(seed_rows(json.loads((run_dir / "evaluation-optimal.json").read_text())))
                per_seed.append(rows)
            # Rows in reading order: the ε-free rows (natural, dynamics), then each ε's attacks and
            # its worst case.
            order = [*budget.attacks.split(","), "optimal"]
            keys = sorted(per_seed[0], key=lambda key: (key[1], order.index(key[0]) if key[0] in order else len(order)))
            cells = {}
            for epsilon in [0.0, *budget.epsilons[task]]:
                for key in (key for key in keys if key[1] == epsilon):
                    means = [rows[key]["mean"] for rows in per_seed]
                    falls = sum(rows[key]["falls"] for rows in per_seed)
                    episodes = sum(rows[key]["episodes"] for rows in per_seed)
                    cells[f"{key[0]}@{key[1]:g}"] = {"attack": key[0], "epsilon": key[1], "per_seed": means,
                                                     "falls": falls, "episodes": episodes, **iqm_with_ci(means)}  # fmt: skip
                if epsilon == 0.0:
                    continue
                # Worst case per seed: the lowest mean over the attacks at this ε and every ε-free
                # row, then the IQM of those per-seed minima.
                minima = [min(row["mean"] for (_, eps), row in rows.items() if eps in (epsilon, 0.0)) for rows in per_seed]
                cells[f"worst@{epsilon:g}"] = {"attack": "worst", "epsilon": epsilon, "per_seed": minima, **iqm_with_ci(minima)}
            actor = json.loads((runs / task / variant / "seed0" / "evaluation.json").read_text())["policies"][0]
            policies[variant] = {"cells": cells, "actor_parameters": actor["actor_parameters"]}
        tasks[task] = {"seeds": budget.seeds[task], "timesteps": budget.timesteps[task], "epsilons": budget.epsilons[task], "policies": policies}
    attacks = budget.attacks + (",optimal" if budget.optimal_epsilon else "")
    optimal = {"epsilon": budget.optimal_epsilon, "steps_per_attacker": budget.optimal_steps} if budget.optimal_epsilon else None
    return {"episodes": budget.episodes, "attacks": attacks, "optimal": optimal, "tasks": tasks}


def plot_curves(summary: dict[str, Any], path: Path) -> None:
    """
    Plot the worst-case return against ε, one panel per task and one line per policy.

    The line starts at the natural return (ε = 0); the band is the 95% bootstrap interval of the
    IQM over seeds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = summary["tasks"]
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for axis, (task, record) in zip(axes[0], tasks.items()):
        for name, policy in record["policies"].items():
            cells = policy["cells"]
            points = [cells["natural@0"], *(cells[f"worst@{epsilon:g}"] for epsilon in record["epsilons"])]
            epsilons = [0.0, *record["epsilons"]]
            style = "-" if name in MAIN_VARIANTS else "--"
            line = axis.plot(epsilons, [cell["iqm"] for cell in points], style, marker="o", label=name)[0]
            axis.fill_between(
                epsilons, [cell["low"] for cell in points], [cell["high"] for cell in points], color=line.get_color(), alpha=0.15
            )
        axis.set_title(f"{task}, {record['seeds']} seeds")
        axis.set_xlabel("ε (normalized units)")
        axis.set_ylabel("worst-case return (IQM)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def merge_wall_seconds(previous: Path, train: dict[str, float], evaluate: dict[str, float], total: float) -> dict:
    """
    Add this invocation's wall times to those of the earlier invocations recorded in ``previous``.

    Jobs that finished earlier are skipped and not timed again, so a benchmark run in several
    invocations reports the sum of their wall times.
    """
    if not previous.is_file():
        return {"train": train, "evaluate": evaluate, "total": total, "invocations": 1}
    earlier = json.loads(previous.read_text())["wall_seconds"]
    return {
        "train": {**earlier["train"], **train},
        "evaluate": {**earlier["evaluate"], **evaluate},
        "total": round(earlier["total"] + total, 1),
        "invocations": earlier.get("invocations", 1) + 1,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "scratch":
        parser = argparse.ArgumentParser()
        parser.add_argument("scratch")
        parser.add_argument("--env", required=True)
        parser.add_argument("--seed", type=int, required=True)
        parser.add_argument("--timesteps", type=int, required=True)
        parser.add_argument("--out", type=Path, required=True)
        args, overrides = parser.parse_known_args()
        train_scratch(args.env, args.seed, args.timesteps, args.out, [*overrides, "--seed", str(args.seed)])
        return 0

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    parser.add_argument("--runs", type=Path, help="run folders (default: runs/robustness-<budget>)")
    parser.add_argument("--out", type=Path, help="raw results (default: benchmarks/results/robustness for full)")
    parser.add_argument("--page", type=Path, help="page to write (default: BENCHMARKS.md for full, <out>/BENCHMARKS.md for short)")
    parser.add_argument("--parallel", type=int, default=2, help="jobs at a time (default: %(default)s)")
    args = parser.parse_args()

    budget = BUDGETS[args.budget]
    runs = args.runs or ROOT / "runs" / f"robustness-{args.budget}"
    committed = args.budget != "short"
    default_out = ROOT / "benchmarks" / "results" / ("robustness" if args.budget == "full" else f"robustness-{args.budget}")
    out = args.out or (default_out if committed else runs / "results")
    page = args.page or (ROOT / "BENCHMARKS.md" if committed else out / "BENCHMARKS.md")

    started = time.time()
    train_seconds = run_jobs(training_jobs(runs, budget), args.parallel, runs / "logs")
    eval_seconds = run_jobs(evaluation_jobs(runs, budget), args.parallel, runs / "logs")
    summary = summarize(runs, budget)
    summary["budget"] = args.budget
    throughput_steps = 512 if args.budget == "short" else 20_000
    summary["cost"] = cost_figures(runs, budget, budget.tasks[0], throughput_steps)
    summary["wall_seconds"] = merge_wall_seconds(
        out / "summary.json", train_seconds, eval_seconds, round(time.time() - started, 1)
    )

    # The raw per-seed evaluations travel with the summary, so the page can be rebuilt from them.
    out.mkdir(parents=True, exist_ok=True)
    for task in budget.tasks:
        for variant in variants_for(task, budget):
            for seed in range(budget.seeds[task]):
                target = out / task / variant / f"seed{seed}"
                target.mkdir(parents=True, exist_ok=True)
                source = runs / task / variant / f"seed{seed}"
                for name in ("evaluation.json", "evaluation.md", "evaluation-optimal.json", "evaluation-optimal.md", "config.yaml", "command.txt", "provenance.json"):
                    if (source / name).is_file():
                        shutil.copy(source / name, target / name)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_curves(summary, out / "robustness-curves.png")

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import report

    text = report.write_benchmarks(page=page, robustness_dir=out)
    print(f"wrote {page} ({len(text.splitlines())} lines) from {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
