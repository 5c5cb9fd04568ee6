"""Observation attacks inside the ℓ∞ ball of radius ε in normalized observation space."""

from rl_advkd.attacks.learned import (
    ATTACKER_CONFIGS,
    OPTIMAL_STEPS,
    SELECTION_EPISODES,
    AttackerConfig,
    LearnedAttacker,
    attacker_configs,
    train_optimal_attackers,
)
from rl_advkd.attacks.pgd import (
    OBSERVATION_ATTACKS,
    critic_attack,
    mad_attack,
    perturb,
    pgd_maximize,
    uniform_noise,
)

__all__ = [
    "ATTACKER_CONFIGS",
    "OBSERVATION_ATTACKS",
    "OPTIMAL_STEPS",
    "SELECTION_EPISODES",
    "AttackerConfig",
    "LearnedAttacker",
    "attacker_configs",
    "critic_attack",
    "mad_attack",
    "perturb",
    "pgd_maximize",
    "train_optimal_attackers",
    "uniform_noise",
]
