"""
Zero-sum games between a learning agent and a frozen policy, after Pinto et al. (2017),
"Robust Adversarial Reinforcement Learning".

A :class:`Perturbation` defines what the adversary's action changes: a push on bodies
(:class:`ForcePerturbation`) or a shift of the observation given to the protagonist
(:class:`ObservationPerturbation`). Two envs build the two views of one game on top of it.

- :class:`ZeroSumEnv`: the adversary acts, a frozen protagonist (the victim) acts inside, and
  the adversary's reward is minus the victim's reward.
- :class:`ProtagonistEnv`: the protagonist acts, a frozen adversary acts inside, and the reward
  is the env's own.

At step ``t`` both players see the same observation ``s_t`` and act at once, so the two views
produce the same trajectory for the same pair of policies.
"""

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import TransformObservation
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env

from rl_advkd.adversaries.forces import AdversarialForce
from rl_advkd.normalization import ObservationNormalizer
from rl_advkd.policies import FrozenPolicy

logger = logging.getLogger(__name__)

Actor = Callable[[np.ndarray], np.ndarray]
"""A frozen player: maps one raw observation to one action."""


def policy_actor(policy: FrozenPolicy) -> Actor:
    """Wrap a frozen policy as an :data:`Actor` that returns its deterministic, clipped action."""

    def act(obs: np.ndarray) -> np.ndarray:
        return policy.act(obs[None])[0]

    return act


def model_actor(model: BaseAlgorithm) -> Actor:
    """Wrap an SB3 model as an :data:`Actor` that returns its deterministic action."""

    def act(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(obs, deterministic=True)
        return action

    return act


class RandomAdversary:
    """
    An :data:`Actor` that draws each action uniformly from a box.

    :class:`ProtagonistEnv` calls :meth:`reset` with the seed of each seeded episode, so an
    episode's pushes depend only on its seed and not on the episodes before it.

    :param action_space: the box to draw from
    :param seed: seed of the first episode's draws
    """

    def __init__(self, action_space: spaces.Box, seed: int | None = None):
        self.action_space = action_space
        self.reset(seed)

    def reset(self, seed: int | None) -> None:
        """Restart the draws from ``seed``."""
        # The env's own generator is seeded with the same episode seed. Its stream starts from
        # SeedSequence(seed), so a spawn key separates this stream from it.
        self.rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        low, high = self.action_space.low, self.action_space.high
        return self.rng.uniform(low, high).astype(self.action_space.dtype)


class Perturbation(ABC):
    """The effect of the adversary's action: on the dynamics, on the protagonist's observation, or both."""

    def wrap(self, env: gym.Env) -> gym.Env:
        """Return ``env`` with whatever wrapper the perturbation needs; the default adds none."""
        return env

    @abstractmethod
    def action_space(self, env: gym.Env) -> spaces.Box:
        """Return the adversary's action space for an env returned by :meth:`wrap`."""

    def apply(self, env: gym.Env, action: np.ndarray) -> None:
        """Put the adversary's action into effect on the dynamics of the next step; the default does nothing."""

    def perturb_observation(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Return the observation given to the protagonist; the default returns ``obs`` unchanged."""
        return obs


class ForcePerturbation(Perturbation):
    """
    The adversary pushes named bodies through :class:`AdversarialForce`.

    :param bodies: names of the bodies to push
    :param bound: maximum force per axis in newtons
    :param axes: world axes of the push; ``None`` takes the task's default
    """

    def __init__(self, bodies: Sequence[str], bound: float, axes: str | Sequence[str] | None = None):
        self.bodies = list(bodies)
        self.bound = float(bound)
        self.axes = axes

    def wrap(self, env: gym.Env) -> gym.Env:
        return AdversarialForce(env, self.bodies, self.bound, self.axes)

    def action_space(self, env: gym.Env) -> spaces.Box:
        return env.get_wrapper_attr("adversary_action_space")

    def apply(self, env: gym.Env, action: np.ndarray) -> None:
        env.get_wrapper_attr("set_adversary_action")(action)


class ObservationPerturbation(Perturbation):
    """
    The adversary shifts the protagonist's observation: ``s̃ = s + ε · scale · a`` with ``a`` in ``[-1, 1]^n``.

    :param epsilon: ℓ∞ budget
    :param scale: per-dimension unit of ε; 1.0 measures ε in raw units. :meth:`from_normalizer`
        sets it to the normalizer's standard deviation, so ε is in normalized units as for the
        gradient attacks.
    """

    def __init__(self, epsilon: float, scale: float | np.ndarray = 1.0):
        if not np.isfinite(epsilon) or epsilon < 0.0:
            raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon}")
        self.epsilon = float(epsilon)
        self.scale = np.asarray(scale, dtype=np.float64)

    @classmethod
    def from_normalizer(cls, epsilon: float, normalizer: ObservationNormalizer) -> "ObservationPerturbation":
        """Measure ε in the normalized units of ``normalizer``."""
        # NOTE: the normalizer also clips to ±clip_obs, which this linear map ignores. A shift
        # that crosses the clip boundary moves the normalized observation by less than ε.
        return cls(epsilon, np.sqrt(normalizer.var + normalizer.epsilon))

    def action_space(self, env: gym.Env) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, shape=env.observation_space.shape)

    def perturb_observation(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        shift = self.epsilon * self.scale * np.clip(action, -1.0, 1.0)
        return (obs + shift).astype(obs.dtype)


class ZeroSumEnv(gym.Wrapper):
    """
    An env in which the agent is the adversary of a frozen victim.

    Each :meth:`step` takes the adversary's action. The victim picks its action from the
    observation as the perturbation shows it, the perturbation acts on the dynamics, and the env
    steps with the victim's action. The reward is exactly minus the victim's reward, which
    ``info["victim_reward"]`` carries. The adversary observes the raw, unperturbed observation.

    :param env: the task env, for example ``gym.make("Hopper-v5")``
    :param victim: a frozen policy, or any :data:`Actor`
    :param perturbation: what the adversary's action changes
    """

    def __init__(self, env: gym.Env, victim: FrozenPolicy | Actor, perturbation: Perturbation):
        super().__init__(perturbation.wrap(env))
        self.victim = victim
        self.perturbation = perturbation
        self._victim_actor = policy_actor(victim) if isinstance(victim, FrozenPolicy) else victim
        self.action_space = perturbation.action_space(self.env)
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = obs
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise ValueError("step() was called before reset(); reset the env first")

        seen = self.perturbation.perturb_observation(self._obs, action)
        victim_action = self._victim_actor(seen)

        self.perturbation.apply(self.env, action)
        obs, reward, terminated, truncated, info = self.env.step(victim_action)
        self._obs = obs

        info = {**info, "victim_reward": float(reward), "victim_action": victim_action}
        return obs, -float(reward), terminated, truncated, info


class ProtagonistEnv(gym.Wrapper):
    """
    An env in which the agent is the protagonist and a frozen adversary acts inside.

    The adversary picks its action from each raw observation as it arrives. The env returns the
    observation as the perturbation shows it, and the next :meth:`step` applies the adversary's
    action to the dynamics before the env steps. The reward is the env's own, and
    ``info["adversary_action"]`` carries the action applied in that step. An adversary with a
    ``reset(seed)`` method, such as :class:`RandomAdversary`, is reseeded at each seeded reset.

    :param env: the task env
    :param perturbation: what the adversary's action changes
    :param adversary: the frozen adversary, for example :func:`model_actor` of a trained PPO model
    """

    def __init__(self, env: gym.Env, perturbation: Perturbation, adversary: Actor):
        super().__init__(perturbation.wrap(env))
        self.perturbation = perturbation
        self.adversary = adversary
        self.adversary_action_space = perturbation.action_space(self.env)
        self._adversary_action: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None and callable(getattr(self.adversary, "reset", None)):
            self.adversary.reset(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observe(obs), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._adversary_action is None:
            raise ValueError("step() was called before reset(); reset the env first")

        applied = self._adversary_action
        self.perturbation.apply(self.env, applied)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(obs), reward, terminated, truncated, {**info, "adversary_action": applied}

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        # The adversary acts on the raw observation of the step to come.
        self._adversary_action = np.asarray(self.adversary(obs))
        return self.perturbation.perturb_observation(obs, self._adversary_action)


def train_agent(env_factory: Callable[[], gym.Env], total_timesteps: int, seed: int, **ppo_kwargs: Any) -> PPO:
    """
    Train an SB3 PPO agent, with SB3's default hyperparameters unless ``ppo_kwargs`` override them.

    :param env_factory: builds one env of the game, for example a :class:`ZeroSumEnv`
    :param total_timesteps: env steps of training
    :param seed: seed of PPO and of the env's resets
    """
    if total_timesteps < 1:
        raise ValueError(f"total_timesteps must be >= 1, got {total_timesteps}")
    venv = make_vec_env(env_factory, n_envs=1, seed=seed)
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **ppo_kwargs)
    model.learn(total_timesteps=total_timesteps)
    venv.close()
    return model


def train_adversary(
    victim: FrozenPolicy,
    env_id: str,
    bodies: Sequence[str],
    bound: float,
    total_timesteps: int,
    seed: int = 0,
    axes: str | Sequence[str] | None = None,
) -> PPO:
    """
    Train a PPO adversary that pushes ``bodies`` to lower the return of a frozen ``victim``.

    :param victim: the policy under attack; its weights do not change
    :param env_id: Gymnasium id of the task
    :param bodies: names of the bodies to push
    :param bound: maximum force per axis in newtons
    :param total_timesteps: env steps of adversary training
    :param seed: seed of PPO and of the env's resets
    :param axes: world axes of the push; ``None`` takes the task's default
    :return: the trained adversary; :func:`model_actor` turns it into a frozen adversary
    """
    perturbation = ForcePerturbation(bodies, bound, axes)

    def make_game() -> ZeroSumEnv:
        return ZeroSumEnv(gym.make(env_id), victim, perturbation)

    # Build one game up front, so a wrong body name or axis fails before training starts.
    make_game().close()

    started = time.perf_counter()
    logger.info("training a force adversary on %s (%s, %g N) for %d steps", env_id, bodies, bound, total_timesteps)
    # NOTE: the adversary learns from raw observations and rewards with SB3's default PPO
    # settings, untuned and without VecNormalize. It may miss pushes as simple as a constant one,
    # so a high return under this adversary does not prove robustness.
    model = train_agent(make_game, total_timesteps, seed)
    logger.info("adversary trained in %.0f s", time.perf_counter() - started)
    return model


def train_observation_adversary(
    victim: FrozenPolicy,
    env_id: str,
    epsilon: float,
    total_timesteps: int,
    seed: int = 0,
    **ppo_kwargs: Any,
) -> PPO:
    """
    Train a PPO adversary that shifts the observations of a frozen ``victim`` to lower its return.

    The adversary's action ``a`` in ``[-1, 1]^n`` sets the victim's normalized observation to
    ``s + ε · a`` (:meth:`ObservationPerturbation.from_normalizer`), and its reward is minus the
    victim's reward (:class:`ZeroSumEnv`). The adversary observes the clean observation normalized
    with the victim's frozen statistics, so its inputs are on the scale PPO expects without
    ``VecNormalize``. A trained adversary must therefore be given normalized observations too.

    :param victim: the policy under attack; its weights and statistics do not change
    :param env_id: Gymnasium id of the task
    :param epsilon: ℓ∞ budget in the victim's normalized units
    :param total_timesteps: env steps of adversary training
    :param seed: seed of PPO and of the env's resets
    :param ppo_kwargs: PPO hyperparameters that replace SB3's defaults
    :return: the trained adversary
    """
    perturbation = ObservationPerturbation.from_normalizer(epsilon, victim.normalizer)
    normalizer = victim.normalizer
    bound = float(normalizer.clip_obs)

    def make_game() -> gym.Env:
        game = ZeroSumEnv(gym.make(env_id), victim, perturbation)
        observation_space = spaces.Box(-bound, bound, shape=game.observation_space.shape, dtype=np.float32)
        return TransformObservation(game, normalizer.normalize, observation_space)

    started = time.perf_counter()
    logger.info("training an observation adversary on %s (ε %g) for %d steps", env_id, epsilon, total_timesteps)
    # NOTE: rewards reach PPO unscaled (no VecNormalize), as for the force adversary. On tasks with
    # large per-step rewards the value loss then dominates the first updates and may slow the
    # adversary down. No run has compared this with normalized rewards.
    model = train_agent(make_game, total_timesteps, seed, **ppo_kwargs)
    logger.info("observation adversary trained in %.0f s", time.perf_counter() - started)
    return model
