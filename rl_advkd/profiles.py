"""
Task profiles: one YAML file per task in ``envs/`` with the env id, the attack budget,
the teacher's hyperparameters, the distillation defaults and the dynamics adversaries.
"""

import difflib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3.common.utils import LinearSchedule

from rl_advkd.errors import UsageError
from rl_advkd.paths import data_dir


@dataclass
class TeacherConfig:
    """Settings with which ``rl-advkd teacher`` trains an SB3 teacher."""

    algo: str = field(default="ppo", metadata={"help": "SB3 algorithm: ppo, a2c, sac, td3 or ddpg"})
    total_timesteps: int = field(default=1_000_000, metadata={"help": "environment steps"})
    seed: int = field(default=0, metadata={"help": "random seed of the run"})
    n_envs: int = field(default=1, metadata={"help": "parallel environments"})
    eval_episodes: int = field(default=20, metadata={"help": "deterministic evaluation episodes"})
    hyperparams: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments of the algorithm"})
    normalize: dict[str, Any] = field(
        default_factory=lambda: {"norm_obs": True, "norm_reward": True, "clip_obs": 10.0},
        metadata={"help": "VecNormalize keyword arguments"},
    )


@dataclass
class DistillConfig:
    """Defaults of ``rl-advkd distill``; every field is also a command-line option."""

    total_timesteps: int = field(default=200_000, metadata={"help": "student environment steps"})
    seed: int = field(default=0, metadata={"help": "random seed of the run"})
    n_envs: int = field(default=8, metadata={"help": "parallel environments in the student's rollouts"})
    net_arch: list[int] = field(default_factory=lambda: [64, 64], metadata={"help": "student hidden layer sizes"})
    lambda_adv: float = field(default=0.1, metadata={"help": "weight λ of the PPO return term L_adv"})
    beta: float = field(default=1.0, metadata={"help": "weight β of the robust KL term"})
    attack_fraction: float = field(
        default=0.5, metadata={"help": "share of rollout steps whose observation the MAD attacker perturbs"}
    )
    hard_targets: bool = field(
        default=False, metadata={"help": "replace the KL by the squared error to the teacher's mean action"}
    )
    kl_direction: str = field(default="forward", metadata={"help": "forward KL(teacher || student) or reverse"})
    pgd_steps: int = field(default=10, metadata={"help": "PGD steps of the attacks in training"})
    learning_rate: float = field(default=3e-4, metadata={"help": "Adam learning rate of the student"})
    learning_rate_schedule: str = field(
        default="constant", metadata={"help": "constant, or linear: decay to 0 at the end of the budget"}
    )
    n_steps: int = field(default=256, metadata={"help": "rollout steps per environment per update"})
    batch_size: int = field(default=256, metadata={"help": "minibatch size"})
    n_epochs: int = field(default=10, metadata={"help": "passes over each rollout"})
    gamma: float = field(default=0.99, metadata={"help": "discount factor"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE λ"})
    clip_range: float = field(default=0.2, metadata={"help": "PPO clip range"})
    ent_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight inside L_adv"})
    vf_coef: float = field(default=0.5, metadata={"help": "value loss weight inside L_adv"})
    max_grad_norm: float = field(default=0.5, metadata={"help": "gradient norm clip"})
    force_adversary: bool = field(
        default=False, metadata={"help": "train a force adversary (RARL) in alternation with the student"}
    )
    adversary_every: int = field(default=10, metadata={"help": "student iterations between adversary phases"})
    adversary_steps: int = field(default=8_192, metadata={"help": "env steps of each adversary phase"})
    force_bound: float | None = field(
        default=None, metadata={"help": "maximum push per axis in newtons, if not the adversary section's bound"}
    )
    teacher_std: float = field(
        default=0.1,
        metadata={"help": "fixed action std of a TD3 or DDPG teacher, as a fraction of half the action range"},
    )
    stats_steps: int = field(
        default=10_000,
        metadata={"help": "teacher rollout steps that estimate the statistics of a teacher trained on raw observations"},
    )
    preflight_episodes: int = field(
        default=5, metadata={"help": "teacher episodes in each mode (deterministic, stochastic) of the pre-flight check"}
    )
    min_teacher_return: float | None = field(
        default=None, metadata={"help": "stop before training if the teacher's deterministic pre-flight return is lower"}
    )
    checkpoint_every: int = field(
        default=50_000, metadata={"help": "environment steps between checkpoints; 0 keeps only the one Ctrl-C writes"}
    )
    eval_episodes: int = field(default=20, metadata={"help": "episodes of the final teacher-vs-student evaluation"})
    eval_attacks: list[str] = field(
        default_factory=lambda: ["natural", "random", "mad"], metadata={"help": "attacks of the final evaluation"}
    )


@dataclass
class AdversaryConfig:
    """Dynamics attacks of ``rl-advkd evaluate``: pushes on bodies, scaled masses and scaled friction."""

    bodies: list[str] = field(
        default_factory=list, metadata={"help": "names of the bodies that the force attacks push"}
    )
    axes: str | None = field(default=None, metadata={"help": "world axes of the push, e.g. xz (default: the task's)"})
    force_bound: float = field(default=0.0, metadata={"help": "maximum push per axis in newtons"})
    mass_factors: list[float] = field(
        default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5], metadata={"help": "factors on all body masses"}
    )
    friction_factors: list[float] = field(
        default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5], metadata={"help": "factors on all geom friction"}
    )
    total_timesteps: int = field(default=100_000, metadata={"help": "env steps of PPO training of the force adversary"})


@dataclass
class TaskProfile:
    """A task: the env id, the attack budget ε and the defaults of each command."""

    env_id: str
    epsilon: float
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    adversary: AdversaryConfig = field(default_factory=AdversaryConfig)
    notes: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Build a config dataclass from a YAML mapping, rejecting unknown keys."""
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(known)}")
    return cls(**values)


def available_profiles() -> list[str]:
    """Return the env ids that have a profile in ``envs/``."""
    return sorted(path.stem for path in data_dir("envs").glob("*.yaml"))


def check_env_id(env_id: str) -> None:
    """Raise a :class:`UsageError` naming close ids when ``env_id`` is not a registered Gymnasium env."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown env id {env_id!r}{hint}")


def load_profile(env_id: str, path: str | Path | None = None) -> TaskProfile:
    """
    Load the task profile of ``env_id`` from ``envs/<env_id>.yaml`` (or from ``path``).

    :param env_id: Gymnasium env id, for example ``Hopper-v5``
    :param path: explicit profile file; ``None`` looks in ``envs/``
    :return: the profile, with defaults filled in for keys it does not set
    """
    check_env_id(env_id)
    if path is None:
        path = data_dir("envs") / f"{env_id}.yaml"
        if not path.is_file():
            raise UsageError(
                f"no task profile for {env_id!r} in {path.parent}; available: {available_profiles()}. "
                "Write envs/<ENV_ID>.yaml (copy an existing one) or pass --profile FILE"
            )
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"profile file not found: {path}")

    with path.open() as file:
        raw = yaml.safe_load(file) or {}
    if raw.get("env_id", env_id) != env_id:
        raise UsageError(f"profile {path} is for {raw['env_id']!r}, not {env_id!r}")
    if "epsilon" not in raw:
        raise UsageError(f"profile {path} has no 'epsilon' (the attack budget in normalized units)")

    profile = TaskProfile(
        env_id=env_id,
        epsilon=float(raw["epsilon"]),
        teacher=_build(TeacherConfig, raw.get("teacher"), f"{path}: teacher"),
        distill=_build(DistillConfig, raw.get("distill"), f"{path}: distill"),
        adversary=_build(AdversaryConfig, raw.get("adversary"), f"{path}: adversary"),
        notes=str(raw.get("notes", "")),
        source=str(path),
    )
    check_epsilon(profile.epsilon)
    check_adversary(profile.adversary, f"{path}: adversary")
    return profile


def check_adversary(config: AdversaryConfig, where: str) -> None:
    """Raise a :class:`UsageError` for an adversary section with a value of the wrong type or range."""
    if not isinstance(config.bodies, list) or not all(isinstance(body, str) for body in config.bodies):
        raise UsageError(f"{where}: bodies must be a list of body names, got {config.bodies!r}")
    axes = config.axes
    valid_axes = isinstance(axes, str) and len(axes) > 0 and set(axes) <= set("xyz") and len(set(axes)) == len(axes)
    if axes is not None and not valid_axes:
        raise UsageError(f"{where}: axes must be a string of distinct x, y and z such as xz, got {axes!r}")
    bound = config.force_bound
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound) or bound < 0:
        raise UsageError(f"{where}: force_bound must be a finite number of newtons >= 0, got {bound!r}")
    for name in ("mass_factors", "friction_factors"):
        factors = getattr(config, name)
        valid = isinstance(factors, list) and len(factors) > 0
        valid = valid and all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in factors)
        if not valid or not all(math.isfinite(f) and f > 0 for f in factors):
            raise UsageError(f"{where}: {name} must be a non-empty list of numbers > 0, got {factors!r}")
    steps = config.total_timesteps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"{where}: total_timesteps must be an integer >= 1, got {steps!r}")


def learning_rate_schedule(config: DistillConfig) -> float | Callable[[float], float]:
    """Return the learning rate, or SB3's schedule of the remaining progress (1 at the start, 0 at the end)."""
    if config.learning_rate_schedule == "constant":
        return config.learning_rate
    if config.learning_rate_schedule == "linear":
        return LinearSchedule(config.learning_rate, 0.0, 1.0)
    raise UsageError(
        f"unknown learning_rate_schedule {config.learning_rate_schedule!r}; pass --learning-rate-schedule "
        "constant or linear"
    )


def check_distill_config(config: DistillConfig) -> None:
    """
    Raise a :class:`UsageError` naming the first invalid value of a distillation config.

    Every check runs before the run folder is created, so bad input leaves nothing behind and
    no training time is spent on a config that would fail at the evaluation.
    """
    from rl_advkd.evaluation import parse_attacks

    check_net_arch(config.net_arch)
    at_least_one = (
        "total_timesteps",
        "n_envs",
        "n_steps",
        "n_epochs",
        "eval_episodes",
        "adversary_every",
        "adversary_steps",
        "stats_steps",
    )
    for name in at_least_one:
        value = getattr(config, name)
        if not value >= 1:
            raise UsageError(f"{name} must be >= 1, got {value}; pass e.g. --{name.replace('_', '-')} 1")
    checks = [
        ("batch_size", config.batch_size >= 2, "an integer >= 2 (PPO normalizes advantages per minibatch)", 256),
        ("pgd_steps", config.pgd_steps >= 0, "an integer >= 0", 10),
        ("learning_rate", config.learning_rate > 0, "> 0", 3e-4),
        ("lambda_adv", config.lambda_adv >= 0, ">= 0", 0.1),
        ("beta", config.beta >= 0, ">= 0", 1.0),
        ("attack_fraction", 0.0 <= config.attack_fraction <= 1.0, "in [0, 1]", 0.5),
        ("gamma", 0.0 < config.gamma <= 1.0, "in (0, 1]", 0.99),
        ("gae_lambda", 0.0 <= config.gae_lambda <= 1.0, "in [0, 1]", 0.95),
        ("clip_range", config.clip_range > 0, "> 0", 0.2),
        ("ent_coef", config.ent_coef >= 0, ">= 0", 0.0),
        ("vf_coef", config.vf_coef >= 0, ">= 0", 0.5),
        ("max_grad_norm", config.max_grad_norm > 0, "> 0", 0.5),
        ("kl_direction", config.kl_direction in ("forward", "reverse"), "forward or reverse", "forward"),
        ("teacher_std", config.teacher_std > 0, "> 0", 0.1),
        ("preflight_episodes", config.preflight_episodes >= 0, "an integer >= 0", 5),
        ("checkpoint_every", config.checkpoint_every >= 0, "an integer >= 0", 50000),
    ]
    for name, valid, allowed, example in checks:
        if not valid:
            value = getattr(config, name)
            raise UsageError(f"{name} must be {allowed}, got {value!r}; pass e.g. --{name.replace('_', '-')} {example}")
    if config.force_bound is not None and not config.force_bound > 0:
        raise UsageError(f"force_bound must be > 0 newtons, got {config.force_bound}; pass e.g. --force-bound 20")
    learning_rate_schedule(config)
    try:
        parse_attacks(config.eval_attacks)
    except ValueError as error:
        raise UsageError(f"eval_attacks: {error}") from None


def check_epsilon(epsilon: float) -> None:
    """Raise a :class:`UsageError` for a negative or non-finite attack budget."""
    if not epsilon >= 0.0 or epsilon == float("inf"):
        raise UsageError(f"epsilon must be a finite number >= 0, got {epsilon}; pass e.g. --epsilon 0.075")


def check_net_arch(net_arch: Any) -> list[int]:
    """Return ``net_arch`` as a list of positive ints, or raise a :class:`UsageError` saying why not."""
    if isinstance(net_arch, str):
        parts = [part.strip() for part in net_arch.replace("[", "").replace("]", "").split(",") if part.strip()]
        try:
            net_arch = [int(part) for part in parts]
        except ValueError:
            raise UsageError(
                f"student architecture {net_arch!r} is not a list of positive integers; pass e.g. --net-arch 64,64"
            ) from None
    valid = isinstance(net_arch, (list, tuple)) and len(net_arch) > 0
    valid = valid and all(isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in net_arch)
    if not valid:
        raise UsageError(
            f"student architecture {net_arch!r} is not a list of positive integers; pass e.g. --net-arch 64,64"
        )
    return list(net_arch)
