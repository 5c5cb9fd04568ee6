"""Dynamics adversaries: bounded pushes on bodies, scaled masses and friction, and zero-sum games."""

from rl_advkd.adversaries.forces import DEFAULT_AXES, AdversarialForce, default_axes
from rl_advkd.adversaries.model_perturbation import ModelPerturbation
from rl_advkd.adversaries.zero_sum import (
    Actor,
    ForcePerturbation,
    ObservationPerturbation,
    Perturbation,
    ProtagonistEnv,
    RandomAdversary,
    ZeroSumEnv,
    model_actor,
    policy_actor,
    train_adversary,
    train_agent,
    train_observation_adversary,
)

__all__ = [
    "DEFAULT_AXES",
    "Actor",
    "AdversarialForce",
    "ForcePerturbation",
    "ModelPerturbation",
    "ObservationPerturbation",
    "Perturbation",
    "ProtagonistEnv",
    "RandomAdversary",
    "ZeroSumEnv",
    "default_axes",
    "model_actor",
    "policy_actor",
    "train_adversary",
    "train_agent",
    "train_observation_adversary",
]
