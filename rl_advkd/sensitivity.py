"""
Per-dimension sensitivity of a policy to observation attacks, to show what the policy relies on.

For each observation dimension ``i`` the report gives two numbers at one budget ε:

- how much of the budget the strongest gradient attack spends on ``i``: the mean of
  ``|s̃_i - s_i| / ε`` over the states visited under that attack, where the strongest of ``mad``
  and ``critic`` is the one with the lower mean return;
- the return lost when only ``i`` is attacked: the natural mean return minus the mean return
  under MAD restricted to ``i``, every other dimension clean.

A dimension with a large loss is one whose small errors the policy cannot absorb.
"""

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from rl_advkd.attacks import mad_attack, perturb
from rl_advkd.evaluation import ObservationAttack, ResultRow, run_episodes
from rl_advkd.policies import FrozenPolicy
from rl_advkd.provenance import library_versions, utc_now, write_json

logger = logging.getLogger(__name__)

# Gradient attacks whose perturbations the report measures. The report keeps the stronger one.
GRADIENT_ATTACKS = ("mad", "critic")

JSON_FILE = "sensitivity.json"
MARKDOWN_FILE = "sensitivity.md"
PLOT_FILE = "sensitivity.png"


class PerturbationRecorder:
    """
    A named observation attack that also sums ``|s̃ - s|`` per dimension over every state it perturbs.

    Pass it to :func:`~rl_advkd.evaluation.run_episodes` as ``perturbation``.
    """

    def __init__(self, policy: FrozenPolicy, attack: str, epsilon: float):
        self.policy = policy
        self.attack = attack
        self.epsilon = epsilon
        self.total = np.zeros(policy.observation_space.shape[-1])
        self.states = 0

    def __call__(self, obs: th.Tensor, generator: th.Generator) -> th.Tensor:
        perturbed = perturb(self.attack, self.policy, obs, self.epsilon, generator=generator)
        self.total += (perturbed - obs).abs().sum(dim=0).double().numpy()
        self.states += obs.shape[0]
        return perturbed

    def budget_share(self) -> np.ndarray:
        """Return the mean ``|s̃_i - s_i| / ε`` per dimension over the recorded states."""
        return self.total / max(self.states, 1) / self.epsilon


def single_dimension_mad(policy: FrozenPolicy, epsilon: float, dimension: int) -> ObservationAttack:
    """Return MAD restricted to one observation dimension; the others stay clean."""
    mask = th.zeros(policy.observation_space.shape[-1])
    mask[dimension] = 1.0

    def attack(obs: th.Tensor, generator: th.Generator) -> th.Tensor:
        return mad_attack(policy.gaussian, obs, epsilon, generator=generator, mask=mask)

    return attack


def sensitivity_report(
    policy: FrozenPolicy,
    env_id: str,
    epsilon: float,
    episodes: int,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, Any]:
    """
    Measure the sensitivity of ``policy`` to each observation dimension at budget ``epsilon``.

    Every run replays the same episode seeds (``seed`` to ``seed + episodes - 1``), so the rows
    differ only by the attack.

    :param epsilon: ℓ∞ budget in normalized units, > 0
    :param episodes: deterministic episodes per run; the report makes ``3 + obs_dim`` runs
    :return: a JSON-serializable report whose ``dimensions`` are ranked by return lost, largest first
    :raises ValueError: for ``epsilon <= 0`` or ``episodes < 1``
    """
    if not (np.isfinite(epsilon) and epsilon > 0.0):
        raise ValueError(f"the sensitivity report needs epsilon > 0, got {epsilon}; pass e.g. --epsilon 0.075")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")

    def run(name: str, perturbation: ObservationAttack | None = None) -> ResultRow:
        attack = "natural" if perturbation is None else name
        return run_episodes(
            policy,
            env_id,
            attack,
            epsilon,
            episodes,
            seed=seed,
            show_progress=show_progress,
            name=name,
            perturbation=perturbation,
        )

    natural = run("natural")

    recorders = {}
    gradient_rows = {}
    for attack in _available_gradient_attacks(policy):
        recorders[attack] = PerturbationRecorder(policy, attack, epsilon)
        gradient_rows[attack] = run(attack, recorders[attack])
    strongest = min(gradient_rows, key=lambda attack: gradient_rows[attack].mean)
    budget_share = recorders[strongest].budget_share()

    dimensions = []
    for dimension in range(policy.observation_space.shape[-1]):
        row = run(f"mad[{dimension}]", single_dimension_mad(policy, epsilon, dimension))
        logger.info("%s: only dimension %d attacked: %.1f +- %.1f", policy.name, dimension, row.mean, row.std)
        dimensions.append(
            {
                "dimension": dimension,
                "mean": row.mean,
                "std": row.std,
                "falls": row.falls,
                "return_lost": natural.mean - row.mean,
                "budget_share": float(budget_share[dimension]),
            }
        )
    # Sorting is stable, so dimensions with equal losses stay in index order.
    dimensions.sort(key=lambda entry: -entry["return_lost"])
    for rank, entry in enumerate(dimensions, start=1):
        entry["rank"] = rank

    return {
        "env_id": env_id,
        "policy": {"name": policy.name, "path": str(policy.path) if policy.path else None},
        "epsilon": float(epsilon),
        "episodes": episodes,
        "seed": seed,
        "deterministic": True,
        "natural": _summary(natural),
        "gradient_attacks": {attack: _summary(row) for attack, row in gradient_rows.items()},
        "strongest_attack": strongest,
        "dimensions": dimensions,
        "created": utc_now(),
        "versions": library_versions(),
    }


def _available_gradient_attacks(policy: FrozenPolicy) -> list[str]:
    """Return the gradient attacks that apply to ``policy``: ``critic`` needs a critic."""
    probe = th.zeros((1, policy.observation_space.shape[-1]))
    try:
        with th.no_grad():
            policy.value(probe)
    except ValueError as error:
        logger.warning("the sensitivity report skips the critic attack: %s", error)
        return ["mad"]
    return list(GRADIENT_ATTACKS)


def _summary(row: ResultRow) -> dict[str, Any]:
    return {"mean": row.mean, "std": row.std, "falls": row.falls, "episodes": row.episodes}


def markdown_report(report: dict[str, Any]) -> str:
    """Render the report as a markdown table ranked by return lost."""
    strongest = report["strongest_attack"]
    header = (
        "| rank | dimension | return, only this dimension attacked (falls) | return lost | "
        f"mean \\|δ\\| / ε under {strongest} |"
    )
    lines = [header, "|---|---|---|---|---|"]
    for entry in report["dimensions"]:
        cell = f"{entry['mean']:.1f} ± {entry['std']:.1f} ({entry['falls']}/{report['episodes']})"
        lines.append(
            f"| {entry['rank']} | {entry['dimension']} | {cell} | {entry['return_lost']:.1f} | "
            f"{entry['budget_share']:.2f} |"
        )

    natural = report["natural"]
    attacks = ", ".join(
        f"{attack} {summary['mean']:.1f} ± {summary['std']:.1f}"
        for attack, summary in report["gradient_attacks"].items()
    )
    footer = (
        f"\n{report['env_id']}, policy {report['policy']['name']}, ε = {report['epsilon']:g} in normalized units, "
        f"{report['episodes']} deterministic episodes per run, seed {report['seed']}. Natural return "
        f"{natural['mean']:.1f} ± {natural['std']:.1f}; all dimensions attacked: {attacks}. Return lost: natural "
        f"return minus the return under MAD on that dimension alone. Mean |δ| / ε: the share of the budget that "
        f"{strongest}, the stronger gradient attack, spends on the dimension over the states it visits.\n"
    )
    return "\n".join(lines) + "\n" + footer


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """
    Write the report's JSON, markdown table and bar plot into ``out_dir``.

    :return: the written files by kind: ``json``, ``markdown``, ``plot``
    """
    from rl_advkd.plots import plot_sensitivity

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / JSON_FILE, "markdown": out_dir / MARKDOWN_FILE, "plot": out_dir / PLOT_FILE}
    write_json(files["json"], report)
    files["markdown"].write_text(markdown_report(report))
    plot_sensitivity(report, files["plot"])
    return files
