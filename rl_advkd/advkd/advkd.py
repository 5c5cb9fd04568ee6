"""
AdvKD: PPO whose loss adds policy distillation towards a frozen teacher, on clean and on
adversarially perturbed observations, to the PPO loss on returns earned under attack.

    L = KL(π_T(·|s) || π_S(·|s)) + β · max_{s̃ ∈ B_ε(s)} KL(π_T(·|s) || π_S(·|s̃)) + λ · L_PPO

The first term is policy distillation on the student's own rollout states (Rusu et al., 2016;
kickstarting, Schmitt et al., 2018). The second is the robust KL of SA-PPO (Zhang et al., 2020)
with the teacher's clean action distribution as target; PGD finds its inner maximum. The
third is SB3's PPO loss on rollouts in which a MAD attacker perturbs a share of the student's
observations, so the student learns to earn return while attacked.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from rl_advkd.advkd.buffer import AdvKDRolloutBuffer, AdvKDRolloutSamples
from rl_advkd.attacks import mad_attack, pgd_maximize
from rl_advkd.distributions import teacher_student_divergence
from rl_advkd.normalization import ObservationNormalizer
from rl_advkd.policies import FrozenPolicy


class AdvKD(PPO):
    """
    Adversarial knowledge distillation of an SB3 teacher into a student policy.

    Takes every argument of SB3's :class:`~stable_baselines3.PPO` plus those below. The env
    must return observations normalized with the teacher's frozen statistics
    (:func:`rl_advkd.vec_env.make_student_env` builds one); :meth:`predict` takes *raw*
    observations and normalizes them itself, as an exported student does.

    :param teacher: the frozen teacher; it is not saved with the student, its path and hash are
    :param epsilon: ℓ∞ attack budget in normalized observation units
    :param lambda_adv: weight λ of the PPO term, a float or a schedule of the remaining progress
        (1 at the start of training, 0 at the end) as SB3's schedules are
    :param beta: weight of the robust KL term; 0 turns it off
    :param attack_fraction: probability that an observation in the rollouts is perturbed by
        MAD-PGD against the current student; 0 turns the rollout attacker off
    :param pgd_steps: PGD steps (of size ε / steps, random start) for both attacks in training
    :param kl_direction: ``"forward"`` for KL(teacher || student), ``"reverse"`` for the other one
    :param hard_targets: replace the KL terms by the squared error between the student's mean
        action and the teacher's mean action
    :param normalizer: the teacher's frozen observation statistics; defaults to the teacher's
    :param env_id: the Gymnasium id of the task, recorded in the saved model; defaults to the teacher's
    :param squash_actions: the env receives tanh of the Gaussian sample scaled to the bounds
        instead of the clipped sample, so the student has the squashed head of a SAC or TQC
        teacher and the KL between them stays exact. Defaults to the teacher's head.
    """

    # Class-level default for students saved before the squashed head existed.
    squash_actions: bool = False

    def __init__(
        self,
        policy: str | type,
        env: VecEnv | None,
        teacher: FrozenPolicy | None = None,
        epsilon: float = 0.0,
        lambda_adv: float | Callable[[float], float] = 0.1,
        beta: float = 1.0,
        attack_fraction: float = 0.5,
        pgd_steps: int = 10,
        kl_direction: str = "forward",
        hard_targets: bool = False,
        normalizer: ObservationNormalizer | None = None,
        env_id: str | None = None,
        squash_actions: bool | None = None,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        if not 0.0 <= attack_fraction <= 1.0:
            raise ValueError(f"attack_fraction must be in [0, 1], got {attack_fraction}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if kl_direction not in ("forward", "reverse"):
            raise ValueError(f"kl_direction must be 'forward' or 'reverse', got {kl_direction!r}")
        if kwargs.get("use_sde"):
            raise ValueError("AdvKD does not support use_sde=True: the KL terms assume a state-independent std")

        self.teacher = teacher
        self.epsilon = float(epsilon)
        self.lambda_adv = lambda_adv
        self.beta = float(beta)
        self.attack_fraction = float(attack_fraction)
        self.pgd_steps = int(pgd_steps)
        self.kl_direction = kl_direction
        self.hard_targets = bool(hard_targets)
        if squash_actions is None:
            squash_actions = teacher is not None and teacher.squashed
        self.squash_actions = bool(squash_actions)
        if normalizer is None and teacher is not None:
            normalizer = teacher.normalizer
        # Stored as a JSON-serializable dict so that it travels inside the saved zip.
        self.normalization = normalizer.to_dict() if normalizer is not None else None
        self.env_id = env_id or (teacher.env_id if teacher is not None else None)
        self.teacher_path = str(teacher.path) if teacher is not None and teacher.path else None
        self.teacher_sha256 = teacher.info.get("sha256") if teacher is not None else None
        self._attack_generator: th.Generator | None = None
        self._normalizer: ObservationNormalizer | None = normalizer

        kwargs.setdefault("rollout_buffer_class", AdvKDRolloutBuffer)
        super().__init__(policy, env, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            if teacher is None:
                raise ValueError("AdvKD needs a teacher to train; pass teacher=load_teacher(...)")
            self._check_teacher_fits()
            self._setup_model()

    def _excluded_save_params(self) -> list[str]:
        # The teacher is large and is a separate artifact; its path and hash are saved instead.
        return [*super()._excluded_save_params(), "teacher", "_attack_generator", "_normalizer"]

    def _check_teacher_fits(self) -> None:
        assert self.teacher is not None
        if self.teacher.observation_space.shape != self.observation_space.shape:
            raise ValueError(
                f"teacher observations have shape {self.teacher.observation_space.shape}, "
                f"the env's {self.observation_space.shape}"
            )
        if self.teacher.action_space.shape != self.action_space.shape:
            raise ValueError(
                f"teacher actions have shape {self.teacher.action_space.shape}, the env's {self.action_space.shape}"
            )

    @property
    def normalizer(self) -> ObservationNormalizer:
        """The frozen observation statistics the student's input is normalized with."""
        if self.normalization is None:
            raise ValueError("this AdvKD model has no normalization statistics; it was built without a teacher")
        # Built once: predict() runs on every step of an adversary's training, and the statistics
        # never change after construction or loading.
        if getattr(self, "_normalizer", None) is None:
            self._normalizer = ObservationNormalizer.from_dict(self.normalization)
        return self._normalizer

    def _current_lambda(self) -> float:
        if callable(self.lambda_adv):
            return float(self.lambda_adv(self._current_progress_remaining))
        return float(self.lambda_adv)

    def _generator(self) -> th.Generator:
        # Seeded from the global torch RNG, which SB3 seeds from the algorithm's seed.
        if self._attack_generator is None:
            self._attack_generator = th.Generator().manual_seed(int(th.randint(0, 2**31 - 1, (1,)).item()))
        return self._attack_generator

    def _student_gaussian(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        distribution = self.policy.get_distribution(obs).distribution
        return distribution.mean, distribution.stddev.log()

    def _attack_rollout_obs(self, obs: th.Tensor) -> tuple[th.Tensor, np.ndarray]:
        """Perturb a random ``attack_fraction`` of the rows with MAD-PGD against the current student."""
        generator = self._generator()
        attacked = th.rand(obs.shape[0], generator=generator) < self.attack_fraction
        if self.epsilon == 0.0 or not attacked.any():
            return obs, attacked.numpy()
        perturbed = obs.clone()
        perturbed[attacked] = mad_attack(
            self._student_gaussian, obs[attacked], self.epsilon, steps=self.pgd_steps, generator=generator
        )
        return perturbed, attacked.numpy()

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: AdvKDRolloutBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect a rollout as SB3's on-policy algorithms do, with the observation attacker between
        the env and the student. On attacked steps the student acts on ``s̃``. The buffer keeps
        both ``s̃`` (for the PPO ratio) and the clean ``s`` (for the teacher).
        """
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        callback.on_rollout_start()
        attacked_steps = 0

        for _ in range(n_rollout_steps):
            clean_obs = obs_as_tensor(self._last_obs, self.device)
            obs, attacked = self._attack_rollout_obs(clean_obs)
            attacked_steps += int(attacked.sum())
            with th.no_grad():
                actions, values, log_probs = self.policy(obs)
            actions = actions.cpu().numpy()
            # A Gaussian head samples beyond the bounds: the env receives the clipped (or squashed)
            # action, the buffer keeps the sample, on which the PPO ratio is computed.
            clipped_actions = self._env_actions(actions)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)

            # Bootstrap from the value of the last state when an episode is cut by the time limit.
            for index, done in enumerate(dones):
                if done and infos[index].get("terminal_observation") is not None and infos[index].get(
                    "TimeLimit.truncated", False
                ):
                    terminal_obs = self.policy.obs_to_tensor(infos[index]["terminal_observation"])[0]
                    with th.no_grad():
                        terminal_value = self.policy.predict_values(terminal_obs)[0]
                    rewards[index] += self.gamma * terminal_value

            rollout_buffer.add(
                obs.cpu().numpy(),
                actions,
                rewards,
                self._last_episode_starts,
                values,
                log_probs,
                clean_obs=self._last_obs,
            )
            self._last_obs = new_obs
            self._last_episode_starts = dones

        with th.no_grad():
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        self._store_teacher_targets(rollout_buffer)
        self.logger.record("rollout/attacked_fraction", attacked_steps / (n_rollout_steps * env.num_envs))

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Map Gaussian samples to the actions the env receives: squashed or clipped to the bounds."""
        low, high = self.action_space.low, self.action_space.high
        if self.squash_actions:
            # The Jacobian of tanh cancels in the PPO ratio, so the sample's log-probability serves.
            return low + (np.tanh(actions) + 1.0) * (high - low) / 2.0
        return np.clip(actions, low, high)

    def _store_teacher_targets(self, rollout_buffer: AdvKDRolloutBuffer) -> None:
        """Run the teacher once per rollout on every clean observation."""
        assert self.teacher is not None, "AdvKD needs its teacher to train; load with AdvKD.load(..., teacher=...)"
        clean = th.as_tensor(rollout_buffer.clean_observations.reshape(-1, *self.observation_space.shape))
        with th.no_grad():
            means, log_stds = self.teacher.gaussian(clean)
        shape = rollout_buffer.teacher_means.shape
        rollout_buffer.set_teacher_targets(means.numpy().reshape(shape), log_stds.numpy().reshape(shape))

    def _distillation_losses(self, batch: AdvKDRolloutSamples) -> tuple[th.Tensor, th.Tensor]:
        """Return the KL to the teacher on clean states and its maximum over the ε-ball."""

        def divergence(obs: th.Tensor) -> th.Tensor:
            mean, log_std = self._student_gaussian(obs)
            return teacher_student_divergence(
                batch.teacher_means,
                batch.teacher_log_stds,
                mean,
                log_std,
                direction=self.kl_direction,
                hard_targets=self.hard_targets,
            )

        kl_clean = divergence(batch.clean_observations).mean()
        if self.beta == 0.0 or self.epsilon == 0.0:
            return kl_clean, th.zeros(())

        # Inner maximization of the robust term; the teacher keeps the clean state as its input.
        worst_obs = pgd_maximize(
            divergence, batch.clean_observations, self.epsilon, steps=self.pgd_steps, generator=self._generator()
        )
        return kl_clean, divergence(worst_obs).mean()

    def _ppo_loss(self, batch: AdvKDRolloutSamples, clip_range: float) -> tuple[th.Tensor, dict[str, float]]:
        """SB3 PPO's loss (clipped surrogate, value loss, entropy bonus) on the attacked rollout."""
        actions = batch.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        values, log_prob, entropy = self.policy.evaluate_actions(batch.observations, actions)
        values = values.flatten()

        advantages = batch.advantages
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        ratio = th.exp(log_prob - batch.old_log_prob)
        surrogate = th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range))
        policy_loss = -surrogate.mean()

        if self.clip_range_vf is None:
            values_pred = values
        else:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)
            values_pred = batch.old_values + th.clamp(values - batch.old_values, -clip_range_vf, clip_range_vf)
        value_loss = F.mse_loss(batch.returns, values_pred)
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)

        with th.no_grad():
            log_ratio = log_prob - batch.old_log_prob
            stats = {
                "policy_gradient_loss": policy_loss.item(),
                "value_loss": value_loss.item(),
                "entropy_loss": entropy_loss.item(),
                "clip_fraction": th.mean((th.abs(ratio - 1) > clip_range).float()).item(),
                "approx_kl": th.mean((th.exp(log_ratio) - 1) - log_ratio).item(),
            }
        return policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss, stats

    def train(self) -> None:
        """Update the student on the last rollout with ``L = L_soft + λ · L_adv``."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        lambda_adv = self._current_lambda()
        history: dict[str, list[float]] = {}
        continue_training = True

        for epoch in range(self.n_epochs):
            for batch in self.rollout_buffer.get(self.batch_size):
                kl_clean, kl_adv = self._distillation_losses(batch)
                loss = kl_clean + self.beta * kl_adv
                stats = {"kl_teacher": kl_clean.item(), "kl_teacher_adv": kl_adv.item()}

                # The PPO term; λ = 0 leaves pure (robust) distillation and skips its cost.
                if lambda_adv > 0.0:
                    ppo_loss, ppo_stats = self._ppo_loss(batch, clip_range)
                    loss = loss + lambda_adv * ppo_loss
                    stats.update(ppo_stats)
                    if self.target_kl is not None and ppo_stats["approx_kl"] > 1.5 * self.target_kl:
                        continue_training = False
                        break
                stats["loss"] = loss.item()
                for key, value in stats.items():
                    history.setdefault(key, []).append(value)

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()

            self._n_updates += 1
            if not continue_training:
                break

        for key, values in history.items():
            self.logger.record(f"train/{key}", float(np.mean(values)))
        self.logger.record(
            "train/explained_variance",
            explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()),
        )
        self.logger.record("train/lambda_adv", lambda_adv)
        self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/clip_range", clip_range)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        Return the student's action for a *raw* observation (or a batch of them).

        The observation is normalized with the frozen statistics stored in the model, so this
        matches what the env receives from an exported student.
        """
        obs = self.normalizer.normalize(observation)
        if not self.squash_actions:
            return super().predict(obs, state, episode_start, deterministic)

        # SB3's predict clips the Gaussian sample to the bounds; a squashed head maps it instead.
        self.policy.set_training_mode(False)
        obs_tensor, vectorized = self.policy.obs_to_tensor(obs)
        with th.no_grad():
            samples = self.policy._predict(obs_tensor, deterministic=deterministic).cpu().numpy()
        actions = self._env_actions(samples.reshape((-1, *self.action_space.shape)))
        return (actions if vectorized else actions[0]), state

    def as_frozen_policy(self, name: str = "student") -> FrozenPolicy:
        """Return a frozen copy of the student for evaluation; training can continue on this model."""
        # A fresh policy built from the constructor parameters, as SB3's BasePolicy.load does. A
        # deepcopy would fail on the tensors of the last action distribution cached in the policy.
        policy = type(self.policy)(**self.policy._get_constructor_parameters())
        policy.load_state_dict(self.policy.state_dict())
        return FrozenPolicy(
            policy=policy,
            normalizer=self.normalizer,
            env_id=self.env_id or "",
            name=name,
            info={"teacher_path": self.teacher_path, "teacher_sha256": self.teacher_sha256},
            head="squashed" if self.squash_actions else "gaussian",
        )
