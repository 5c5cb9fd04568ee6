"""
Robustness evaluation: returns of a frozen policy under observation attacks and dynamics
attacks, the results JSON and the markdown table.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from tqdm.auto import tqdm

from rl_advkd.adversaries import (
    ForcePerturbation,
    ModelPerturbation,
    ProtagonistEnv,
    RandomAdversary,
    default_axes,
    model_actor,
    train_adversary,
)
from rl_advkd.attacks import (
    ATTACKER_CONFIGS,
    OBSERVATION_ATTACKS,
    OPTIMAL_STEPS,
    SELECTION_EPISODES,
    LearnedAttacker,
    perturb,
    train_optimal_attackers,
)
from rl_advkd.policies import FrozenPolicy
from rl_advkd.profiles import AdversaryConfig, load_profile
from rl_advkd.provenance import library_versions, utc_now, write_json

logger = logging.getLogger(__name__)

# Attacks on the dynamics rather than the observation. ``force-random`` pushes uniformly at
# random within the profile's force bound, ``force`` pushes with a PPO adversary trained against
# the evaluated policy, and ``mass`` and ``friction`` run the policy on a grid of scaled models.
DYNAMICS_ATTACKS = ("force-random", "force", "mass", "friction")
ATTACKS = OBSERVATION_ATTACKS + DYNAMICS_ATTACKS

# Seconds between progress lines of run_episodes when no progress bar is shown.
PROGRESS_LOG_S = 30.0

ObservationAttack = Callable[[th.Tensor, th.Generator], th.Tensor]
"""Maps a batch of clean normalized observations and a generator to the perturbed batch."""


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
    unknown = [name for name in names if name not in ATTACKS]
    if unknown or not names:
        raise ValueError(f"unknown attack(s) {unknown or text!r}; choose from {', '.join(ATTACKS)}")
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
    wrap_env: Callable[[gym.Env], gym.Env] | None = None,
    name: str | None = None,
    deterministic: bool = True,
    perturbation: ObservationAttack | None = None,
) -> ResultRow:
    """
    Run ``episodes`` episodes with the observation attack in the loop.

    Episode ``i`` resets its env with seed ``seed + i``, so two calls with the same arguments
    give the same returns whatever ``n_envs`` is. The attack perturbs every observation the
    policy receives, the first one after ``reset()`` included. A fall is an episode that terminated
    before the time limit.

    :param n_envs: episodes run side by side, so the policy and the attack work on batches
    :param show_progress: show a progress bar when stderr is a terminal
    :param wrap_env: applied to each env after ``gym.make``, for example to add a dynamics attack.
        Episodes stay independent of ``n_envs`` only if the wrapper draws its randomness from
        the reset seed, as :class:`~rl_advkd.adversaries.ProtagonistEnv` does.
    :param name: the row's ``attack`` label; defaults to ``attack``
    :param deterministic: act with the mean action; ``False`` samples from the policy's
        distribution (squashed for a squashed head, fixed std for a deterministic one)
    :param perturbation: maps a batch of clean normalized observations and the episode
        generator to the perturbed batch, in place of the named ``attack``, which then only
        labels the row (for example a trained ``optimal`` attacker, or an attack on chosen
        dimensions)
    """
    generator = th.Generator().manual_seed(seed)
    n_envs = max(1, min(n_envs, episodes))
    envs = [gym.make(env_id) for _ in range(n_envs)]
    if wrap_env is not None:
        envs = [wrap_env(env) for env in envs]
    name = attack if name is None else name
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

    progress = tqdm(total=episodes, desc=f"{policy.name}/{name}", disable=None if show_progress else True, leave=False)
    # Without a terminal tqdm shows nothing, so progress goes to the log every PROGRESS_LOG_S.
    started = last_line = time.monotonic()
    finished = 0
    while any(index is not None for index in episode_of):
        active = [slot for slot in range(n_envs) if episode_of[slot] is not None]
        raw = np.stack([observations[slot] for slot in active])
        obs = th.as_tensor(policy.normalizer.normalize(raw))
        if perturbation is None:
            obs = perturb(attack, policy, obs, epsilon, generator=generator)
        else:
            obs = perturbation(obs, generator)
        with th.no_grad():
            actions = policy.mean_action(obs) if deterministic else policy.sample_action(obs, generator)
        actions = policy.clip_action(actions.numpy())

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
                finished += 1
                if progress.disable and time.monotonic() - last_line >= PROGRESS_LOG_S:
                    last_line = time.monotonic()
                    _log_progress(f"{policy.name}/{name}", finished, episodes, last_line - started)
                start(slot)
    progress.close()
    for env in envs:
        env.close()

    return ResultRow(
        attack=name,
        epsilon=float(epsilon),
        mean=float(returns.mean()),
        std=float(returns.std()),
        episodes=int(episodes),
        falls=int(fell.sum()),
        mean_length=float(lengths.mean()),
        returns=[round(float(value), 3) for value in returns],
    )


def _log_progress(label: str, done: int, total: int, elapsed: float) -> None:
    remaining = elapsed / done * (total - done)
    logger.info("%s: %d/%d episodes, %.0f s elapsed, about %.0f s left", label, done, total, elapsed, remaining)


def evaluate_policy(
    policy: FrozenPolicy,
    env_id: str,
    attacks: list[str],
    epsilon: float | Sequence[float],
    episodes: int,
    seed: int = 0,
    show_progress: bool = True,
    adversary: AdversaryConfig | None = None,
    adversary_steps: int | None = None,
    optimal_steps: int = OPTIMAL_STEPS,
    optimal_attackers: int = len(ATTACKER_CONFIGS),
) -> dict[str, Any]:
    """
    Evaluate one policy under each attack and add a ``worst`` row per budget ε.

    Observation attacks give one row per ε, in the order of ``epsilon``. Dynamics attacks (see
    :data:`DYNAMICS_ATTACKS`) leave the observation clean, so they run once and their rows have
    ``epsilon`` 0. ``mass`` and ``friction`` give one row per factor of the grid, with a
    ``factor`` key, then a ``<attack>-mean`` row over the pooled episodes of the grid and a
    ``<attack>-min`` row, the factor with the lowest mean. The ``worst`` row of a budget ε copies
    the row with the lowest mean among the observation rows at ε and all dynamics rows. Its
    ``epsilon`` is that ε, and ``worst_of`` names the attack it copies. With one ε the rows come
    in the order of earlier versions: the attacks in order, then one ``worst`` row.

    :param epsilon: one budget or several, in normalized units
    :param adversary: bodies, force bound and factor grids of the dynamics attacks; ``None``
        reads them from the task profile of ``env_id``
    :param adversary_steps: PPO training steps of the ``force`` adversary; ``None`` takes
        ``adversary.total_timesteps``
    :param optimal_steps: PPO training steps of each ``optimal`` attacker, per ε
    :param optimal_attackers: how many attacker configurations the ``optimal`` attack trains
    :return: a JSON-serializable record of the policy and its rows
    """
    epsilons = epsilon_list(epsilon)
    if adversary is None and any(attack in DYNAMICS_ATTACKS for attack in attacks):
        adversary = load_profile(env_id).adversary
    clean = _CleanEpisodes(policy, env_id, episodes, seed, show_progress)

    rows = []
    for attack in attacks:
        if attack in DYNAMICS_ATTACKS:
            new_rows = dynamics_rows(policy, env_id, attack, episodes, seed, adversary, adversary_steps, show_progress)
        else:
            new_rows = [
                observation_row(policy, env_id, attack, budget, clean, optimal_steps, optimal_attackers)
                for budget in epsilons
            ]
        for row in new_rows:
            _log_row(policy, row)
        rows.extend(new_rows)
    rows.extend(worst_rows(rows, epsilons))

    return {
        "name": policy.name,
        "path": str(policy.path) if policy.path else None,
        "actor_parameters": policy.actor_parameter_count(),
        "rows": rows,
    }


def epsilon_list(epsilon: float | Sequence[float]) -> list[float]:
    """
    Return the budgets of ``epsilon`` as a list of floats, keeping their order.

    :raises ValueError: for an empty list, a negative or non-finite value, or a value listed twice
    """
    values = [float(epsilon)] if np.isscalar(epsilon) else [float(value) for value in epsilon]
    if not values:
        raise ValueError("no epsilon given; pass at least one budget, e.g. --epsilon 0.075")
    for value in values:
        if not np.isfinite(value) or value < 0.0:
            raise ValueError(f"epsilon must be a finite number >= 0, got {value:g}; pass e.g. --epsilon 0.075")
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise ValueError(f"epsilon {repeated[0]:g} is listed twice; list each budget once, e.g. --epsilon 0,0.1,0.3")
    return values


def _log_row(policy: FrozenPolicy, row: dict[str, Any]) -> None:
    logger.info(
        "%s %s eps=%g: %.1f +- %.1f (%d falls)",
        policy.name,
        row_label(row),
        row["epsilon"],
        row["mean"],
        row["std"],
        row["falls"],
    )


class _CleanEpisodes:
    """The episodes without attack, run once and shared by every row that repeats them."""

    def __init__(self, policy: FrozenPolicy, env_id: str, episodes: int, seed: int, show_progress: bool):
        self.policy = policy
        self.env_id = env_id
        self.episodes = episodes
        self.seed = seed
        self.show_progress = show_progress
        self._row: dict[str, Any] | None = None

    def row(self, attack: str, epsilon: float) -> dict[str, Any]:
        """Return the clean episodes as a row labeled ``attack`` at budget ``epsilon``."""
        if self._row is None:
            result = run_episodes(
                self.policy,
                self.env_id,
                "natural",
                0.0,
                self.episodes,
                seed=self.seed,
                show_progress=self.show_progress,
            )
            self._row = asdict(result)
        return {**self._row, "attack": attack, "epsilon": float(epsilon), "returns": list(self._row["returns"])}


def observation_row(
    policy: FrozenPolicy,
    env_id: str,
    attack: str,
    epsilon: float,
    clean: _CleanEpisodes,
    optimal_steps: int = OPTIMAL_STEPS,
    optimal_attackers: int = len(ATTACKER_CONFIGS),
) -> dict[str, Any]:
    """
    Run one observation attack at one budget and return its row.

    ``natural``, and any attack at ε = 0, leave every observation unchanged, so their row reuses
    the clean episodes with the same returns instead of running them again.
    """
    if attack == "natural" or epsilon == 0.0:
        return clean.row(attack, epsilon)
    if attack == "optimal":
        return optimal_row(
            policy, env_id, epsilon, clean.episodes, clean.seed, optimal_steps, optimal_attackers, clean.show_progress
        )
    row = run_episodes(
        policy, env_id, attack, epsilon, clean.episodes, seed=clean.seed, show_progress=clean.show_progress
    )
    return asdict(row)


def optimal_row(
    policy: FrozenPolicy,
    env_id: str,
    epsilon: float,
    episodes: int,
    seed: int = 0,
    total_timesteps: int = OPTIMAL_STEPS,
    attackers: int = len(ATTACKER_CONFIGS),
    show_progress: bool = True,
    selection_episodes: int | None = None,
) -> dict[str, Any]:
    """
    Train the ``optimal`` attackers at ``epsilon``, pick the strongest on held-out episodes and
    return its row on the evaluation episodes.

    Each attacker runs ``selection_episodes`` episodes whose seeds start at ``seed + 50,000``, and
    the one with the lowest mean return is then evaluated on the ``episodes`` evaluation episodes
    (seeds ``seed`` onwards) that every other attack uses. Choosing on separate episodes keeps the
    row's mean free of the low bias that the minimum over several noisy estimates of the same
    episodes would add. ``attacker`` names the chosen configuration, and ``attackers`` lists every
    configuration with its hyperparameters, training steps and selection results.

    :param selection_episodes: episodes per attacker for the choice (default:
        ``min(episodes, SELECTION_EPISODES)``)
    :raises ValueError: for ``selection_episodes < 1``
    """
    if selection_episodes is None:
        selection_episodes = min(episodes, SELECTION_EPISODES)
    if selection_episodes < 1:
        raise ValueError(f"selection_episodes must be >= 1, got {selection_episodes}; pass e.g. selection_episodes=10")

    # Training starts from seed + 40,000, so no attacker trains on the evaluation's episode seeds
    # (seed to seed + episodes - 1) or on those of the force adversary (from seed + 30,000).
    trained = train_optimal_attackers(policy, env_id, epsilon, total_timesteps, attackers, seed=seed + 40_000)

    selection = []
    for attacker in trained:
        row = run_episodes(
            policy,
            env_id,
            "optimal",
            epsilon,
            selection_episodes,
            seed=seed + 50_000,
            show_progress=show_progress,
            perturbation=_attacker_perturbation(policy, attacker),
        )
        selection.append((attacker, row))

    winner = min(selection, key=lambda pair: pair[1].mean)[0]
    strongest = run_episodes(
        policy,
        env_id,
        "optimal",
        epsilon,
        episodes,
        seed=seed,
        show_progress=show_progress,
        perturbation=_attacker_perturbation(policy, winner),
    )
    summary = [
        {
            **asdict(attacker.config),
            "steps": attacker.steps,
            "selection_episodes": row.episodes,
            "selection_mean": row.mean,
            "selection_std": row.std,
            "selection_falls": row.falls,
        }
        for attacker, row in selection
    ]
    return {**asdict(strongest), "attacker": winner.config.name, "attackers": summary}


def _attacker_perturbation(policy: FrozenPolicy, attacker: LearnedAttacker) -> ObservationAttack:
    def apply(obs: th.Tensor, generator: th.Generator) -> th.Tensor:
        return perturb("optimal", policy, obs, attacker.epsilon, generator=generator, attacker=attacker)

    return apply


def worst_rows(rows: list[dict[str, Any]], epsilons: list[float]) -> list[dict[str, Any]]:
    """
    Return one ``worst`` row per budget: the lowest mean among the observation rows at that ε
    and every dynamics row, which do not depend on ε.
    """
    dynamics = [row for row in rows if row["attack"] not in OBSERVATION_ATTACKS]
    worst = []
    for epsilon in epsilons:
        candidates = [row for row in rows if row["attack"] in OBSERVATION_ATTACKS and row["epsilon"] == epsilon]
        lowest = min(candidates + dynamics, key=lambda row: row["mean"])
        worst.append({**lowest, "attack": "worst", "worst_of": lowest["attack"], "epsilon": epsilon})
    return worst


def dynamics_rows(
    policy: FrozenPolicy,
    env_id: str,
    attack: str,
    episodes: int,
    seed: int,
    adversary: AdversaryConfig,
    adversary_steps: int | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """
    Run one dynamics attack and return its rows.

    A force attack gives one row. ``mass`` and ``friction`` give one row per factor of the grid,
    then the ``-mean`` and ``-min`` rows of :func:`_grid_summary`.

    :raises ValueError: for an unknown attack, or a force attack when ``adversary`` names no body
    """
    if attack in ("mass", "friction"):
        factors = adversary.mass_factors if attack == "mass" else adversary.friction_factors
        rows = [_model_row(policy, env_id, attack, factor, episodes, seed, show_progress) for factor in factors]
        return rows + _grid_summary(attack, rows)
    if attack not in ("force-random", "force"):
        raise ValueError(f"unknown dynamics attack {attack!r}; choose from {', '.join(DYNAMICS_ATTACKS)}")

    perturbation = _force_perturbation(adversary, env_id, attack)
    details: dict[str, Any] = {
        "force_bound": perturbation.bound,
        "bodies": perturbation.bodies,
        "axes": perturbation.axes,
    }

    if attack == "force-random":
        wrap = random_force_wrapper(adversary, env_id)
    else:
        steps = adversary.total_timesteps if adversary_steps is None else adversary_steps
        # Training starts from seed + 30,000, so the adversary does not train on the evaluation's
        # episode seeds (seed to seed + episodes - 1).
        model = train_adversary(
            policy, env_id, perturbation.bodies, perturbation.bound, steps, seed=seed + 30_000, axes=perturbation.axes
        )
        details["adversary_steps"] = steps

        def wrap(env: gym.Env) -> gym.Env:
            return ProtagonistEnv(env, perturbation, model_actor(model))

    row = run_episodes(
        policy, env_id, "natural", 0.0, episodes, seed=seed, show_progress=show_progress, wrap_env=wrap, name=attack
    )
    return [{**asdict(row), **details}]


def random_force_wrapper(adversary: AdversaryConfig, env_id: str) -> Callable[[gym.Env], gym.Env]:
    """
    Return the env wrapper of the ``force-random`` attack.

    The pushes are drawn uniformly from ``[-1, 1]^k`` times the force bound at every step. The
    draws restart from each episode's reset seed, so an episode's pushes depend only on its seed.
    """
    perturbation = _force_perturbation(adversary, env_id, "force-random")
    action_space = spaces.Box(-1.0, 1.0, shape=(len(perturbation.bodies) * len(perturbation.axes),))

    def wrap(env: gym.Env) -> gym.Env:
        return ProtagonistEnv(env, perturbation, RandomAdversary(action_space))

    return wrap


def _force_perturbation(adversary: AdversaryConfig, env_id: str, attack: str) -> ForcePerturbation:
    if not adversary.bodies:
        raise ValueError(
            f"the {attack!r} attack needs the bodies to push; set adversary.bodies and adversary.force_bound "
            f"in the task profile of {env_id}"
        )
    return ForcePerturbation(adversary.bodies, adversary.force_bound, adversary.axes or default_axes(env_id))


def _model_row(
    policy: FrozenPolicy, env_id: str, attack: str, factor: float, episodes: int, seed: int, show_progress: bool
) -> dict[str, Any]:
    """Run the episodes of one grid point of ``mass`` or ``friction``."""
    key = "mass_factor" if attack == "mass" else "friction_factor"

    def wrap(env: gym.Env) -> gym.Env:
        return ModelPerturbation(env, **{key: factor})

    # Every grid point replays the same episode seeds, so rows differ only by the factor.
    row = run_episodes(
        policy, env_id, "natural", 0.0, episodes, seed=seed, show_progress=show_progress, wrap_env=wrap, name=attack
    )
    return {**asdict(row), "factor": float(factor)}


def _grid_summary(attack: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the ``<attack>-mean`` row over the pooled episodes of a grid and the ``<attack>-min`` row."""
    returns = [value for row in rows for value in row["returns"]]
    mean_row = {
        "attack": f"{attack}-mean",
        "epsilon": 0.0,
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "episodes": len(returns),
        "falls": sum(row["falls"] for row in rows),
        "mean_length": float(np.mean([row["mean_length"] for row in rows])),
        "returns": returns,
        "factors": [row["factor"] for row in rows],
    }
    lowest = min(rows, key=lambda row: row["mean"])
    return [mean_row, {**lowest, "attack": f"{attack}-min"}]


def row_label(row: dict[str, Any]) -> str:
    """Return the label of a row in tables and logs, for example ``mass ×0.5`` or ``force (40 N)``."""
    label = row["attack"]
    if "factor" in row:
        label += f" ×{row['factor']:g}"
    if "force_bound" in row:
        label += f" ({row['force_bound']:g} N)"
    return label


def results_record(
    env_id: str, epsilon: float | Sequence[float], episodes: int, seed: int, policies: list[dict]
) -> dict[str, Any]:
    """
    Assemble the results JSON: what was evaluated, how, with which libraries.

    ``epsilons`` lists every budget in the order given. ``epsilon`` keeps the single number that
    readers of earlier versions expect: the budget itself, or the largest of several.
    """
    epsilons = epsilon_list(epsilon)
    return {
        "env_id": env_id,
        "epsilon": max(epsilons),
        "epsilons": epsilons,
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
        # The worst row and the grid minimum can point to a different attack or factor for each
        # policy, so a table of several policies names them without details.
        if len(policies) > 1 and row["attack"] == "worst":
            attack = "**worst**"
        elif len(policies) > 1 and row["attack"].endswith("-min"):
            attack = row["attack"]
        elif row["attack"] == "worst":
            attack = f"**worst** ({row_label({**row, 'attack': row['worst_of']})})"
        else:
            attack = row_label(row)
        lines.append(f"| {attack} | {row['epsilon']:g} | " + " | ".join(cells) + " |")

    sizes = ", ".join(f"{p['name']} {p['actor_parameters']:,}" for p in policies)
    footer = (
        f"\n{record['env_id']}, {record['episodes']} deterministic episodes per row, seed {record['seed']}. "
        f"Actor parameters: {sizes}.\n"
    )
    footer += _optimal_footer(policies)
    for tag in record.get("tags", []):
        footer += f"\nTagged: {tag}.\n"
    return "\n".join(lines) + "\n" + footer


def _optimal_footer(policies: list[dict[str, Any]]) -> str:
    """Return a line per policy naming the winning attacker of each ``optimal`` row, or ``""``."""
    lines = []
    for policy in policies:
        winners = [
            f"{row['attacker']} at ε {row['epsilon']:g}"
            for row in policy["rows"]
            if row["attack"] == "optimal" and "attacker" in row
        ]
        if not winners:
            continue
        trained = next(row["attackers"] for row in policy["rows"] if "attackers" in row)
        steps = ", ".join(f"{entry['name']} {entry['steps']:,}" for entry in trained)
        lines.append(
            f"\n{policy['name']}, optimal: the strongest of {len(trained)} PPO attackers per ε, chosen on "
            f"{trained[0]['selection_episodes']} separate episodes (steps trained: {steps}); "
            f"strongest: {', '.join(winners)}.\n"
        )
    return "".join(lines)


def write_results(record: dict[str, Any], json_path: str | Path, markdown_path: str | Path | None = None) -> str:
    """Write the results JSON and, if asked, the markdown table; return the table."""
    write_json(json_path, record)
    table = markdown_table(record)
    if markdown_path is not None:
        Path(markdown_path).write_text(table)
    return table
