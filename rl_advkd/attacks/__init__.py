"""Observation attacks inside the ℓ∞ ball of radius ε in normalized observation space."""

from rl_advkd.attacks.pgd import OBSERVATION_ATTACKS, mad_attack, pgd_maximize, perturb, uniform_noise

__all__ = ["OBSERVATION_ATTACKS", "mad_attack", "pgd_maximize", "perturb", "uniform_noise"]
