"""
Measure what pushes of growing strength cost the shipped teacher of a task.

For each force bound, the teacher runs deterministic episodes while ``force-random`` pushes
the profile's bodies uniformly within the bound, as the ``force-random`` row of
``rl-advkd evaluate`` does. The first bound sets the baseline of the share column. The table
gives the return as a share of that baseline, the falls, the episode length and, for locomotion
tasks, the mean forward velocity. A good bound costs a visible share of the return while the
robot still moves forward.

A second set of the same episodes runs under a constant push of ``-bound`` on every axis
(backward and downward for the locomotion tasks). It is a simple strong opponent: random pushes
average out over a few steps, while a trained adversary can push steadily.

    OMP_NUM_THREADS=1 python benchmarks/force_bounds.py --env InvertedPendulum-v5 \\
        --bounds 0,5,10,20,40 --episodes 10 | tee benchmarks/force_bounds-InvertedPendulum-v5.txt
"""

import argparse
import dataclasses
import os
import platform
import time
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rl_advkd.adversaries import ForcePerturbation, ProtagonistEnv, default_axes
from rl_advkd.evaluation import random_force_wrapper, run_episodes
from rl_advkd.paths import shipped_teacher_dir
from rl_advkd.profiles import load_profile
from rl_advkd.provenance import command_line, library_versions, utc_now
from rl_advkd.teachers import load_teacher


class ForwardVelocityLog(gym.Wrapper):
    """Append each finished episode's mean ``info["x_velocity"]`` (m/s) to a shared list."""

    def __init__(self, env: gym.Env, episode_means: list[float]):
        super().__init__(env)
        self.episode_means = episode_means
        self._velocities: list[float] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._velocities = []
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if "x_velocity" in info:
            self._velocities.append(float(info["x_velocity"]))
        if (terminated or truncated) and self._velocities:
            self.episode_means.append(float(np.mean(self._velocities)))
        return obs, reward, terminated, truncated, info


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="InvertedPendulum-v5", help="Gymnasium env id with a shipped teacher")
    parser.add_argument("--bounds", default="0,5,10,20,40", help="comma-separated force bounds in newtons")
    parser.add_argument("--bodies", help="comma-separated bodies to push (default: the profile's adversary.bodies)")
    parser.add_argument("--axes", help="push axes such as xz (default: the profile's, else the task's)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per bound")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    args = parser.parse_args()

    profile = load_profile(args.env)
    config = profile.adversary
    if args.bodies:
        config = dataclasses.replace(config, bodies=[name.strip() for name in args.bodies.split(",")])
    if args.axes:
        config = dataclasses.replace(config, axes=args.axes)
    if not config.bodies:
        parser.error(f"the profile of {args.env} names no adversary bodies; pass --bodies")
    bounds = [float(value) for value in args.bounds.split(",")]
    teacher = load_teacher(shipped_teacher_dir(args.env), args.env)

    print(f"# {command_line()}")
    print(f"# {utc_now()}, {cpu_name()}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"# {library_versions()}")
    print(f"# teacher {shipped_teacher_dir(args.env)}, bodies {config.bodies}, axes {config.axes or 'task default'}")
    print(f"# {args.episodes} deterministic episodes per row, seeds {args.seed}..{args.seed + args.episodes - 1}")
    print()
    print(
        "| bound (N) | return | share of first row | falls | mean length | mean x velocity (m/s) "
        "| constant push: return (falls) | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")

    baseline = None
    for bound in bounds:
        started = time.perf_counter()
        velocities: list[float] = []

        push = random_force_wrapper(dataclasses.replace(config, force_bound=bound), args.env)

        def wrap(env: gym.Env) -> gym.Env:
            return push(ForwardVelocityLog(env, velocities))

        row = run_episodes(
            teacher, args.env, "natural", 0.0, args.episodes, args.seed, wrap_env=wrap, name="force-random"
        )
        if baseline is None:
            baseline = row.mean

        axes = config.axes or default_axes(args.env)
        steady = ForcePerturbation(config.bodies, bound, axes)
        backward = -np.ones(len(config.bodies) * len(axes))

        def push_steadily(env: gym.Env) -> gym.Env:
            return ProtagonistEnv(env, steady, lambda obs: backward)

        constant = run_episodes(
            teacher, args.env, "natural", 0.0, args.episodes, args.seed, wrap_env=push_steadily, name="constant"
        )

        share = row.mean / baseline if baseline else float("nan")
        velocity = f"{np.mean(velocities):.2f}" if velocities else "-"
        print(
            f"| {bound:g} | {row.mean:.1f} ± {row.std:.1f} | {share:.0%} | {row.falls}/{row.episodes} "
            f"| {row.mean_length:.0f} | {velocity} | {constant.mean:.1f} ({constant.falls}/{constant.episodes}) "
            f"| {time.perf_counter() - started:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
