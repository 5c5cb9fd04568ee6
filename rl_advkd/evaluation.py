"""
Robustness evaluation: returns of a frozen policy under observation attacks, the results JSON
and the markdown table.
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from tqdm.auto import tqdm

from rl_advkd.attacks import OBSERVATION_ATTACKS, perturb
from rl_advkd.policies import FrozenPolicy
from rl_advkd.provenance import library_versions, utc_now, write_json

logger = logging.getLogger(__name__)


@dataclass
class ResultRow:
    """Returns of one policy under one attack at one budget."""

    attack: str
    epsilon: float
    mean: float
    std: float
    episodes: int
    falls: int
    mean_length: float
    returns: list[float]


def parse_attacks(text: str | list[str]) -> list[str]:
    """Split a comma-separated attack list and reject unknown names."""
    names = [name.strip() for name in text.split(",")] if isinstance(text, str) else list(text)
    names = [name for name in names if name]
    unknown = [name for name in names if name not in OBSERVATION_ATTACKS]
    if unknown or not names:
        raise ValueError(f"unknown attack(s) {unknown or text!r}; choose from {', '.join(OBSERVATION_ATTACKS)}")
    return names


def run_episodes(
    policy: FrozenPolicy,
    env_id: str,
    attack: str,
    epsilon: float,
    episodes: int,
    seed: int = 0,
    n_envs: int = 10,
    show_progress: bool = True,
) -> ResultRow:
    """
    Run ``episodes`` deterministic episodes with the observation attack in the loop.

    Episode ``i`` resets its env with seed ``seed + i``, so two calls with the same arguments
    give the same returns whatever ``n_envs`` is. The attack perturbs every observation the
    policy sees, the first one after ``reset()`` included. A fall is an episode that terminated
    before the time limit.

    :param n_envs: episodes run side by side, so the policy and the attack work on batches
    :param show_progress: show a progress bar when stderr is a terminal
    """
    generator = th.Generator().manual_seed(seed)
    n_envs = max(1, min(n_envs, episodes))
    envs = [gym.make(env_id) for _ in range(n_envs)]
    next_episode = 0
    episode_of: list[int | None] = [None] * n_envs
    observations: list[np.ndarray | None] = [None] * n_envs
    running_return = np.zeros(n_envs)
    running_length = np.zeros(n_envs, dtype=int)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=int)
    fell = np.zeros(episodes, dtype=bool)

    def start(slot: int) -> None:
        nonlocal next_episode
        if next_episode >= episodes:
            episode_of[slot] = None
            return
        episode_of[slot] = next_episode
        observations[slot], _ = envs[slot].reset(seed=seed + next_episode)
        running_return[slot] = 0.0
        running_length[slot] = 0
        next_episode += 1

    for slot in range(n_envs):
        start(slot)

    progress = tqdm(total=episodes, desc=f"{policy.name}/{attack}", disable=None if show_progress else True, leave=False)
    while any(index is not None for index in episode_of):
        active = [slot for slot in range(n_envs) if episode_of[slot] is not None]
        raw = np.stack([observations[slot] for slot in active])
        obs = th.as_tensor(policy.normalizer.normalize(raw))
        obs = perturb(attack, policy, obs, epsilon, generator=generator)
        with th.no_grad():
            actions = policy.clip_action(policy.mean_action(obs).numpy())

        for row, slot in enumerate(active):
            observation, reward, terminated, truncated, _ = envs[slot].step(actions[row])
            observations[slot] = observation
            running_return[slot] += float(reward)
            running_length[slot] += 1
            if terminated or truncated:
                episode = episode_of[slot]
                returns[episode] = running_return[slot]
                lengths[episode] = running_length[slot]
                fell[episode] = bool(terminated)
                progress.update(1)
                start(slot)
    progress.close()
    for env in envs:
        env.close()

    return ResultRow(
        attack=attack,
        epsilon=float(epsilon),
        mean=float(returns.mean()),
        std=float(returns.std()),
        episodes=int(episodes),
        falls=int(fell.sum()),
        mean_length=float(lengths.mean()),
        returns=[round(float(value), 3) for value in returns],
    )


def evaluate_policy(
    policy: FrozenPolicy,
    env_id: str,
    attacks: list[str],
    epsilon: float,
    episodes: int,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, Any]:
    """
    Evaluate one policy under each attack and add a ``worst`` row (the lowest mean over attacks).

    :return: a JSON-serializable record of the policy and its rows
    """
    rows = []
    for attack in attacks:
        row = run_episodes(policy, env_id, attack, epsilon, episodes, seed=seed, show_progress=show_progress)
        logger.info("%s %s eps=%g: %.1f +- %.1f (%d falls)", policy.name, attack, epsilon, row.mean, row.std, row.falls)
        rows.append(asdict(row))
    worst = min(rows, key=lambda row: row["mean"])
    rows.append({**worst, "attack": "worst", "worst_of": worst["attack"]})

    return {
        "name": policy.name,
        "path": str(policy.path) if policy.path else None,
        "actor_parameters": policy.actor_parameter_count(),
        "rows": rows,
    }


def results_record(env_id: str, epsilon: float, episodes: int, seed: int, policies: list[dict]) -> dict[str, Any]:
    """Assemble the results JSON: what was evaluated, how, with which libraries."""
    return {
        "env_id": env_id,
        "epsilon": epsilon,
        "episodes": episodes,
        "seed": seed,
        "deterministic": True,
        "created": utc_now(),
        "versions": library_versions(),
        "policies": policies,
    }


def markdown_table(record: dict[str, Any]) -> str:
    """Render the results as a markdown table: one row per attack, one column per policy."""
    policies = record["policies"]
    header = "| attack | ε | " + " | ".join(f"{p['name']} return (falls)" for p in policies) + " |"
    rule = "|---|---|" + "---|" * len(policies)
    lines = [header, rule]
    for index, row in enumerate(policies[0]["rows"]):
        cells = []
        for policy in policies:
            other = policy["rows"][index]
            cells.append(f"{other['mean']:.1f} ± {other['std']:.1f} ({other['falls']}/{other['episodes']})")
        attack = row["attack"] if row["attack"] != "worst" else f"**worst** ({row['worst_of']})"
        if len(policies) > 1:
            attack = "**worst**" if row["attack"] == "worst" else row["attack"]
        lines.append(f"| {attack} | {row['epsilon']:g} | " + " | ".join(cells) + " |")

    sizes = ", ".join(f"{p['name']} {p['actor_parameters']:,}" for p in policies)
    footer = (
        f"\n{record['env_id']}, {record['episodes']} deterministic episodes per row, seed {record['seed']}. "
        f"Actor parameters: {sizes}.\n"
    )
    return "\n".join(lines) + "\n" + footer


def write_results(record: dict[str, Any], json_path: str | Path, markdown_path: str | Path | None = None) -> str:
    """Write the results JSON and, if asked, the markdown table; return the table."""
    write_json(json_path, record)
    table = markdown_table(record)
    if markdown_path is not None:
        Path(markdown_path).write_text(table)
    return table
