"""
Checks that run before any training: does the teacher fit the env, where does it come from, and
is it any good? A broken teacher wastes hours of distillation, so it is caught here.
"""

import logging
from typing import Any

import gymnasium as gym
import numpy as np

from rl_advkd.errors import UsageError
from rl_advkd.evaluation import run_episodes
from rl_advkd.policies import FrozenPolicy
from rl_advkd.provenance import library_versions

logger = logging.getLogger(__name__)

# Library versions whose difference between the teacher's run and this one is worth a warning.
COMPARED_LIBRARIES = ("stable-baselines3", "gymnasium", "mujoco", "torch")


def compare_spaces(teacher: FrozenPolicy, env_id: str) -> list[str]:
    """
    Compare the teacher's observation and action spaces with the env's.

    Shapes and dtypes were checked when the teacher loaded, where a difference is an error.
    Differing bounds are only reported, because they change nothing about the networks.

    :return: one line per space, then one warning line per differing bound
    """
    env = gym.make(env_id)
    lines = []
    try:
        pairs = (("observation", teacher.observation_space, env.observation_space), ("action", teacher.action_space, env.action_space))
        for kind, ours, theirs in pairs:
            lines.append(f"{kind} space: teacher {ours.shape} {ours.dtype}, {env_id} {theirs.shape} {theirs.dtype}")
            if ours.shape == theirs.shape and not (
                np.allclose(ours.low, theirs.low) and np.allclose(ours.high, theirs.high)
            ):
                warning = f"warning: the teacher's {kind} bounds differ from those of {env_id}"
                logger.warning(warning)
                lines.append(warning)
    finally:
        env.close()
    return lines


def compare_versions(recorded: dict[str, str]) -> list[str]:
    """Return one warning line per library whose recorded version differs from the installed one."""
    current = library_versions()
    lines = []
    for name in COMPARED_LIBRARIES:
        then = recorded.get(name)
        if then is not None and then != current.get(name):
            lines.append(f"warning: the teacher was trained with {name} {then}, this run uses {current.get(name)}")
    return lines


def preflight(
    teacher: FrozenPolicy, env_id: str, episodes: int, min_return: float | None = None, seed: int = 0
) -> dict[str, Any]:
    """
    Print the pre-flight report and stop when the teacher is below ``min_return``.

    :param episodes: teacher episodes in deterministic and in stochastic mode; 0 skips them
    :param min_return: the lowest acceptable deterministic mean return; ``None`` accepts any
    :return: the report, saved with the run
    :raise UsageError: when the teacher's deterministic return is below ``min_return``
    """
    info = teacher.info
    lines = [
        f"teacher: {teacher.path} ({info.get('algo')}, {teacher.head} head, {info.get('layout')} layout)",
        f"loading: {info.get('load_mode')}; observation statistics: {info.get('statistics')}",
    ]
    lines += compare_spaces(teacher, env_id)

    recorded_env = info.get("recorded_env_id")
    if info.get("env_mismatch"):
        lines.append(f"warning: the teacher was trained on {info['env_mismatch']} and is used on {env_id}")
    else:
        lines.append(f"env: {env_id} (recorded with the teacher: {recorded_env or 'nothing'})")
    lines += compare_versions(info.get("provenance", {}).get("versions", {}))

    report: dict[str, Any] = {"env_id": env_id, "recorded_env_id": recorded_env, "env_mismatch": info.get("env_mismatch")}
    if episodes > 0:
        for mode, deterministic in (("deterministic", True), ("stochastic", False)):
            row = run_episodes(
                teacher, env_id, "natural", 0.0, episodes, seed=seed, show_progress=False, deterministic=deterministic
            )
            report[f"{mode}_return"] = row.mean
            report[f"{mode}_std"] = row.std
            lines.append(f"teacher return, {mode}: {row.mean:.1f} ± {row.std:.1f} over {episodes} episodes ({row.falls} falls)")

    for line in lines:
        print(f"pre-flight | {line}", flush=True)
    report["lines"] = lines

    if min_return is not None and episodes > 0 and report["deterministic_return"] < min_return:
        raise UsageError(
            f"the teacher's deterministic return {report['deterministic_return']:.1f} is below "
            f"--min-teacher-return {min_return:g}; check the teacher, its statistics (--vecnormalize) and --env "
            "before spending hours on distillation, or lower the threshold"
        )
    if min_return is not None and episodes == 0:
        raise UsageError("--min-teacher-return needs pre-flight episodes; pass --preflight-episodes 5")
    return report
