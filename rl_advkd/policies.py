"""A frozen SB3 policy together with the normalization it expects, behind one Gaussian interface."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy

from rl_advkd.normalization import ObservationNormalizer

# How a policy's actions relate to a Gaussian, which is what the KL terms and the attacks need.
#   gaussian:      a diagonal Gaussian over the action, clipped to the bounds (PPO, A2C)
#   squashed:      a diagonal Gaussian over u, and the action is tanh(u) scaled to the bounds
#                  (SAC, TQC). The KL between two squashed Gaussians equals the KL between the
#                  Gaussians over u, because tanh is a bijection
#   deterministic: an action μ(s) (TD3, DDPG), read as a Gaussian of fixed standard deviation
#                  around it, so the KL becomes a scaled squared error
HEADS = ("gaussian", "squashed", "deterministic")


def policy_head(policy: BasePolicy) -> str:
    """Return the head of an SB3 policy: ``gaussian``, ``squashed`` or ``deterministic``."""
    if isinstance(policy, ActorCriticPolicy):
        return "gaussian"
    actor = getattr(policy, "actor", None)
    if actor is not None and hasattr(actor, "get_action_dist_params"):
        return "squashed"
    if actor is not None and hasattr(actor, "mu"):
        return "deterministic"
    raise ValueError(
        f"cannot read the action distribution of a {type(policy).__name__}; rl_advkd supports the policies of "
        "PPO, A2C, SAC, TQC, TD3 and DDPG"
    )


@dataclass
class FrozenPolicy:
    """
    An SB3 policy whose weights and normalization statistics never change.

    Teachers and evaluated students take this form, so the attacks and the evaluation treat them
    alike. Every method except :meth:`act` takes *normalized* observations, the space in which ε
    is measured.

    :param policy: the SB3 policy; it is put in eval mode and its parameters stop requiring grad
    :param normalizer: frozen statistics that turn raw observations into normalized ones
    :param env_id: the Gymnasium id of the task it was trained on
    :param name: a label for tables (``teacher``, ``student``)
    :param path: the file it was loaded from
    :param info: provenance and other metadata read with it
    :param head: one of :data:`HEADS`; by default read from the policy's class. A student of a
        squashed teacher is an actor-critic policy with ``head="squashed"``.
    :param raw_input: the SB3 policy reads raw observations (a teacher trained without
        observation normalization). Normalized inputs are mapped back with the normalizer's
        statistics before they reach it, so ε still has one meaning for every policy.
    :param action_std: the fixed standard deviation of a deterministic head, as a fraction of
        half the action range
    """

    policy: BasePolicy
    normalizer: ObservationNormalizer
    env_id: str
    name: str = "policy"
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    head: str | None = None
    raw_input: bool = False
    action_std: float = 0.1

    def __post_init__(self) -> None:
        self.policy.set_training_mode(False)
        self.policy.requires_grad_(False)
        if self.head is None:
            self.head = policy_head(self.policy)
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if isinstance(self.policy, ActorCriticPolicy) and not isinstance(
            self.policy.action_dist, DiagGaussianDistribution
        ):
            raise ValueError(
                f"{self.name} has a {type(self.policy.action_dist).__name__} action head; "
                "rl_advkd supports diagonal Gaussian heads on Box action spaces"
            )
        if getattr(self.policy, "use_sde", False):
            raise ValueError(f"{self.name} uses gSDE exploration; rl_advkd supports policies trained with use_sde=False")
        if not self.action_std > 0:
            raise ValueError(f"action_std must be > 0, got {self.action_std}; pass e.g. --teacher-std 0.1")
        low, high = self.action_space.low.ravel(), self.action_space.high.ravel()
        self._action_low = th.as_tensor(low, dtype=th.float32)
        self._action_half_range = th.as_tensor((high - low) / 2.0, dtype=th.float32)
        self._input_mean = th.tensor(self.normalizer.mean)
        self._input_std = th.tensor(np.sqrt(self.normalizer.var + self.normalizer.epsilon))

    @property
    def observation_space(self) -> spaces.Box:
        return self.policy.observation_space

    @property
    def action_space(self) -> spaces.Box:
        return self.policy.action_space

    @property
    def squashed(self) -> bool:
        """Whether the action is tanh of the Gaussian sample, scaled to the bounds."""
        return self.head == "squashed"

    def _policy_input(self, obs: th.Tensor) -> th.Tensor:
        if not self.raw_input:
            return obs
        return obs * self._input_std.to(obs.dtype) + self._input_mean.to(obs.dtype)

    def _unscale(self, scaled: th.Tensor) -> th.Tensor:
        # From [-1, 1] to [low, high], as SB3's BasePolicy.unscale_action does.
        return self._action_low + (scaled + 1.0) * self._action_half_range

    def gaussian(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        Return the mean and log standard deviation of the action Gaussian, each (batch, action_dim).

        For a squashed head the Gaussian is the one over the pre-tanh ``u``. For a deterministic
        head the mean is the action and the standard deviation is fixed.
        """
        obs = self._policy_input(obs)
        if isinstance(self.policy, ActorCriticPolicy):
            distribution = self.policy.get_distribution(obs).distribution
            return distribution.mean, distribution.stddev.log()
        if self.head == "squashed":
            mean, log_std, _ = self.policy.actor.get_action_dist_params(obs)
            return mean, log_std
        mean = self._unscale(self.policy.actor(obs))
        log_std = th.log(self.action_std * self._action_half_range).expand_as(mean)
        return mean, log_std

    def value(self, obs: th.Tensor) -> th.Tensor:
        """
        Return the critic's value estimate for a batch of normalized observations, shape (batch,).

        An actor-critic policy (PPO, A2C, students) returns its state value V(s). A policy with Q
        critics (SAC, TQC, TD3, DDPG) returns the minimum over its critics of Q(s, μ(s)) at its
        deterministic action, the pessimistic estimate that SAC's and TD3's critic targets also use.
        Gradients flow to ``obs`` through both the critic and the action.

        :raises ValueError: for a policy with neither a value head nor a ``critic``
        """
        policy_input = self._policy_input(obs)
        if isinstance(self.policy, ActorCriticPolicy):
            return self.policy.predict_values(policy_input).flatten()

        critic = getattr(self.policy, "critic", None)
        if critic is None:
            raise ValueError(f"{self.name} has no critic (its policy is a {type(self.policy).__name__})")

        # SB3's off-policy algorithms store actions scaled to [-1, 1] in the replay buffer, so
        # their critics take the action in that space: tanh(u) for a squashed head, the actor's
        # tanh output for a deterministic one.
        if self.squashed:
            mean, _ = self.gaussian(obs)
            scaled_action = th.tanh(mean)
        else:
            scaled_action = self.policy.actor(policy_input)

        q_values = critic(policy_input, scaled_action)
        if isinstance(q_values, th.Tensor):
            # TQC's critic returns quantiles, (batch, n_critics, n_quantiles); a critic's Q value
            # is the mean of its quantiles.
            per_critic = q_values.mean(dim=2)
        else:
            per_critic = th.cat(q_values, dim=1)
        return per_critic.min(dim=1).values

    def mean_action(self, obs: th.Tensor) -> th.Tensor:
        """Return the deterministic action before clipping to the bounds."""
        mean, _ = self.gaussian(obs)
        if self.squashed:
            return self._unscale(th.tanh(mean))
        return mean

    def sample_action(self, obs: th.Tensor, generator: th.Generator | None = None) -> th.Tensor:
        """Return a stochastic action before clipping: a Gaussian sample, squashed for a squashed head."""
        mean, log_std = self.gaussian(obs)
        sample = mean + log_std.exp() * th.randn(mean.shape, generator=generator)
        if self.squashed:
            return self._unscale(th.tanh(sample))
        return sample

    def clip_action(self, actions: np.ndarray) -> np.ndarray:
        """Clip actions to the action space, as SB3's ``predict`` does for a Gaussian head."""
        return np.clip(actions, self.action_space.low, self.action_space.high)

    def act(self, raw_obs: np.ndarray, deterministic: bool = True, generator: th.Generator | None = None) -> np.ndarray:
        """Return the clipped action for a batch of raw observations (a sample when not ``deterministic``)."""
        obs = th.as_tensor(self.normalizer.normalize(raw_obs))
        with th.no_grad():
            actions = self.mean_action(obs) if deterministic else self.sample_action(obs, generator)
        return self.clip_action(actions.numpy())

    def actor_parameter_count(self) -> int:
        """Count the parameters that produce the action: the actor's layers, its head and log std."""
        if not isinstance(self.policy, ActorCriticPolicy):
            return sum(param.numel() for param in self.policy.actor.parameters())
        modules = [self.policy.mlp_extractor.policy_net, self.policy.action_net]
        if not self.policy.share_features_extractor:
            modules.append(self.policy.pi_features_extractor)
        count = sum(param.numel() for module in modules for param in module.parameters())
        return count + self.policy.log_std.numel()
