"""A frozen SB3 actor-critic policy together with the normalization it expects."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy

from rl_advkd.normalization import ObservationNormalizer


@dataclass
class FrozenPolicy:
    """
    An SB3 policy whose weights and normalization statistics never change.

    Teachers and evaluated students both take this form, so the attacks and the evaluation
    treat them alike. Every method except :meth:`act` and :meth:`action_distribution`
    takes *normalized* observations, the space in which ε is measured.

    :param policy: the SB3 policy; it is put in eval mode and its parameters stop requiring grad
    :param normalizer: frozen statistics that turn raw observations into the policy's input
    :param env_id: the Gymnasium id of the task it was trained on
    :param name: a label for tables (``teacher``, ``student``)
    :param path: the file it was loaded from
    :param info: provenance and other metadata read with it
    """

    policy: ActorCriticPolicy
    normalizer: ObservationNormalizer
    env_id: str
    name: str = "policy"
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.policy.set_training_mode(False)
        self.policy.requires_grad_(False)
        if not isinstance(self.policy.action_dist, DiagGaussianDistribution):
            raise ValueError(
                f"{self.name} has a {type(self.policy.action_dist).__name__} action head; "
                "rl_advkd supports diagonal Gaussian heads (PPO, A2C on Box action spaces)"
            )

    @property
    def observation_space(self) -> spaces.Box:
        return self.policy.observation_space

    @property
    def action_space(self) -> spaces.Box:
        return self.policy.action_space

    def distribution(self, obs: th.Tensor) -> Distribution:
        """Return the action distribution for a batch of normalized observations."""
        return self.policy.get_distribution(obs)

    def gaussian(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Return the mean and log standard deviation of the action distribution, each (batch, action_dim)."""
        distribution = self.distribution(obs).distribution
        return distribution.mean, distribution.stddev.log()

    def value(self, obs: th.Tensor) -> th.Tensor:
        """Return the critic's value estimate for a batch of normalized observations."""
        return self.policy.predict_values(obs).flatten()

    def mean_action(self, obs: th.Tensor) -> th.Tensor:
        """Return the deterministic action (the Gaussian mean) before clipping to the bounds."""
        return self.distribution(obs).mode()

    def clip_action(self, actions: np.ndarray) -> np.ndarray:
        """Clip actions to the action space, as SB3's ``predict`` does for a Gaussian head."""
        return np.clip(actions, self.action_space.low, self.action_space.high)

    def act(self, raw_obs: np.ndarray) -> np.ndarray:
        """Return the deterministic, clipped action for a batch of raw observations."""
        obs = th.as_tensor(self.normalizer.normalize(raw_obs))
        with th.no_grad():
            actions = self.mean_action(obs).numpy()
        return self.clip_action(actions)

    def action_distribution(self, raw_obs: np.ndarray) -> Distribution:
        """Return the action distribution for a batch of raw observations."""
        return self.distribution(th.as_tensor(self.normalizer.normalize(raw_obs)))

    def actor_parameter_count(self) -> int:
        """Count the parameters that produce the action: the policy MLP, the action head and log std."""
        modules = [self.policy.mlp_extractor.policy_net, self.policy.action_net]
        if not self.policy.share_features_extractor:
            modules.append(self.policy.pi_features_extractor)
        count = sum(param.numel() for module in modules for param in module.parameters())
        return count + self.policy.log_std.numel()
