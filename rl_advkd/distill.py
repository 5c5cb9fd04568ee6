"""The main job: distill a teacher into a student in a run folder, then evaluate both side by side."""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3.common.logger import configure

from rl_advkd.adversaries import ForcePerturbation, ProtagonistEnv, default_axes
from rl_advkd.adversaries.rarl import AdversarySlot, AlternatingAdversaryCallback, make_adversary
from rl_advkd.advkd import AdvKD
from rl_advkd.checkpoint import DistillCheckpoint, read_checkpoint, restore_random_states
from rl_advkd.errors import UsageError
from rl_advkd.evaluation import evaluate_policy, results_record, write_results
from rl_advkd.logging_utils import SummaryLineWriter
from rl_advkd.normalization import ObservationNormalizer
from rl_advkd.preflight import preflight
from rl_advkd.profiles import (
    DistillConfig,
    TaskProfile,
    check_distill_config,
    check_epsilon,
    check_net_arch,
    learning_rate_schedule,
    load_profile,
)
from rl_advkd.reporting import log_model_artifact, record_evaluation, report_results
from rl_advkd.provenance import command_line, library_versions, utc_now
from rl_advkd.teacher_loading import load_teacher
from rl_advkd.tracking import Tracker
from rl_advkd.tracking_options import TrackingOptions
from rl_advkd.vec_env import make_student_env

logger = logging.getLogger(__name__)

STUDENT_FILE = "student.zip"
ADVERSARY_FILE = "force_adversary.zip"
CONFIG_FILE = "config.yaml"
NORMALIZATION_FILE = "normalization.json"


@dataclass
class TeacherOptions:
    """
    Source of the teacher and how to load it, as :func:`rl_advkd.teacher_loading.load_teacher` takes them.

    :param path: teacher folder, RL Zoo run folder or model zip; ``None`` for the shipped teacher
    :param vecnormalize: its ``VecNormalize`` file, when not where the layout puts it
    :param raw_observations: the teacher was trained without observation normalization
    :param trust: use SB3's full load, which runs pickled code from the files
    :param allow_env_mismatch: accept a teacher recorded for another env id; results are tagged
    """

    path: str | None = None
    vecnormalize: str | None = None
    raw_observations: bool = False
    trust: bool = False
    allow_env_mismatch: bool = False


class DistillInterrupted(Exception):
    """Training stopped on Ctrl-C after writing a checkpoint that ``--resume`` continues from."""

    def __init__(self, run_dir: Path, steps: int, total: int) -> None:
        super().__init__(f"interrupted at {steps} of {total} steps")
        self.run_dir = run_dir
        self.steps = steps
        self.total = total


def force_perturbation(profile: TaskProfile, config: DistillConfig) -> ForcePerturbation:
    """Return the push of the force adversary from the profile's bodies and the configured bound."""
    bodies = profile.adversary.bodies
    bound = profile.adversary.force_bound if config.force_bound is None else config.force_bound
    if not bodies:
        raise UsageError(
            f"--force-adversary needs the bodies to push, and the profile {profile.source} names none; "
            "add an adversary: section with bodies and force_bound, or pass --no-force-adversary"
        )
    if not bound > 0:
        raise UsageError(f"the force bound must be > 0 newtons, got {bound}; pass e.g. --force-bound 20")
    return ForcePerturbation(bodies, bound, profile.adversary.axes or default_axes(profile.env_id))


def default_run_dir(env_id: str, seed: int) -> Path:
    """Return ``runs/<env_id>/advkd-seed<seed>-<UTC time>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / env_id / f"advkd-seed{seed}-{stamp}"


def build_student(
    config: DistillConfig,
    teacher: Any,
    env_id: str,
    epsilon: float,
    verbose: int = 0,
    force: tuple[ForcePerturbation, AdversarySlot] | None = None,
    env_seed: int | None = None,
) -> AdvKD:
    """
    Build the AdvKD student for ``env_id`` from a distillation config.

    :param force: a push and the slot of the adversary that drives it in the student's envs;
        ``None`` trains without a force adversary
    :param env_seed: seed of the student's envs; the config's seed by default
    """
    env_factory: str | Callable[[], gym.Env] = env_id
    if force is not None:
        perturbation, slot = force

        def env_factory() -> gym.Env:
            return ProtagonistEnv(gym.make(env_id), perturbation, slot)

    env = make_student_env(
        env_factory,
        teacher.normalizer,
        teacher.info.get("reward_scale", 1.0),
        n_envs=config.n_envs,
        seed=config.seed if env_seed is None else env_seed,
    )
    return AdvKD(
        "MlpPolicy",
        env,
        teacher=teacher,
        epsilon=epsilon,
        lambda_adv=config.lambda_adv,
        beta=config.beta,
        attack_fraction=config.attack_fraction,
        pgd_steps=config.pgd_steps,
        kl_direction=config.kl_direction,
        hard_targets=config.hard_targets,
        env_id=env_id,
        seed=config.seed,
        verbose=verbose,
        **ppo_kwargs(config),
    )


def ppo_kwargs(config: DistillConfig) -> dict[str, Any]:
    """Return the SB3 PPO settings of the student: network, optimizer and PPO term, on the CPU."""
    net_arch = check_net_arch(config.net_arch)
    return {
        "learning_rate": learning_rate_schedule(config),
        "n_steps": config.n_steps,
        "batch_size": config.batch_size,
        "n_epochs": config.n_epochs,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "clip_range": config.clip_range,
        "ent_coef": config.ent_coef,
        "vf_coef": config.vf_coef,
        "max_grad_norm": config.max_grad_norm,
        "policy_kwargs": {"net_arch": {"pi": net_arch, "vf": net_arch}},
        "device": "cpu",
    }


def load_run_teacher(
    env_id: str,
    config: DistillConfig,
    options: TeacherOptions,
    normalizer: ObservationNormalizer | None = None,
) -> Any:
    """Load the teacher of a run from its options and the config's teacher settings."""
    return load_teacher(
        options.path,
        env_id,
        vecnormalize=options.vecnormalize,
        raw_observations=options.raw_observations,
        trust=options.trust,
        allow_env_mismatch=options.allow_env_mismatch,
        normalizer=normalizer,
        stats_steps=config.stats_steps,
        action_std=config.teacher_std,
        # A fixed seed: estimated statistics define ε, so they depend on the teacher alone and
        # runs with different seeds attack within the same ball.
        seed=0,
    )


def run_distillation(
    profile: TaskProfile,
    config: DistillConfig,
    run_dir: str | Path,
    teacher_path: str | Path | None = None,
    epsilon: float | None = None,
    progress_bar: bool = True,
    tracking: TrackingOptions | None = None,
    teacher_options: TeacherOptions | None = None,
) -> dict[str, Any]:
    """
    Check the teacher, distill, save and evaluate; everything lands in ``run_dir``.

    The folder receives ``config.yaml`` (the resolved configuration with the pre-flight report),
    ``command.txt``, ``student.zip`` (with its normalization statistics inside),
    ``force_adversary.zip`` when a force adversary trained, ``normalization.json`` when the
    statistics were estimated from teacher rollouts, ``checkpoint/`` (see
    :mod:`rl_advkd.checkpoint`), ``logs/`` (SB3's stdout log, ``progress.csv`` and TensorBoard
    events), ``results.json`` and ``results.md``. With ``tracking.track`` or ``tracking.video``
    it also receives ``videos/``, and with ``tracking.track`` ``results.png``, ``student.onnx``
    and the W&B run (see :mod:`rl_advkd.tracking`).

    :param teacher_path: the teacher, when ``teacher_options`` is not given
    :param tracking: W&B and video options; ``None`` records only the run folder
    :param teacher_options: where the teacher comes from and how to load it
    :return: the results record
    :raise DistillInterrupted: on Ctrl-C, after writing a checkpoint
    """
    epsilon = profile.epsilon if epsilon is None else epsilon
    check_epsilon(epsilon)
    check_distill_config(config)
    rollout_size = config.n_steps * config.n_envs
    if config.total_timesteps % rollout_size:
        logger.info(
            "total_timesteps %d is not a multiple of n_steps * n_envs = %d, so training stops after the rollout "
            "that passes it (%d steps)",
            config.total_timesteps,
            rollout_size,
            -(-config.total_timesteps // rollout_size) * rollout_size,
        )
    perturbation = force_perturbation(profile, config) if config.force_adversary else None
    if teacher_options is None:
        teacher_options = TeacherOptions(path=str(teacher_path) if teacher_path is not None else None)
    teacher = load_run_teacher(profile.env_id, config, teacher_options)
    report = preflight(
        teacher, profile.env_id, config.preflight_episodes, config.min_teacher_return, seed=config.seed + 30_000
    )

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if teacher.raw_input:
        # Reused on --resume and stored in the student's zip: these statistics define ε for the run.
        (run_dir / NORMALIZATION_FILE).write_text(json.dumps(teacher.normalizer.to_dict()) + "\n")
    resolved = {
        "env_id": profile.env_id,
        "epsilon": epsilon,
        "profile": profile.source,
        "teacher": {
            "path": str(teacher.path),
            "sha256": teacher.info["sha256"],
            "algo": teacher.info["algo"],
            "head": teacher.head,
            "load_mode": teacher.info["load_mode"],
            "statistics": teacher.info["statistics"],
            "options": asdict(teacher_options),
        },
        "preflight": {key: value for key, value in report.items() if key != "lines"},
        "distill": asdict(config),
        "versions": library_versions(),
        "created": utc_now(),
    }
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    (run_dir / "command.txt").write_text(command_line() + "\n")
    return _run(profile, config, run_dir, teacher, epsilon, perturbation, progress_bar, tracking, resolved, None)


def resume_distillation(
    run_dir: str | Path, progress_bar: bool = True, tracking: TrackingOptions | None = None
) -> dict[str, Any]:
    """
    Continue an interrupted run from its checkpoint to the budget recorded in its ``config.yaml``.

    The student, its optimizer, the force adversary, the step counters and the random states
    come back from the checkpoint.
    NOTE: the envs restart from fresh episodes (seeded with the run's seed plus the steps done),
    because MuJoCo states mid-episode are not saved. A resumed run therefore ends with the same
    number of steps as an uninterrupted one, but not with bit-identical weights.

    :raise DistillInterrupted: on Ctrl-C, after writing a new checkpoint
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise UsageError(f"--resume {run_dir}: no {CONFIG_FILE} there; pass the folder of a run that rl-advkd distill started")
    try:
        state = read_checkpoint(run_dir)
    except FileNotFoundError:
        raise UsageError(
            f"--resume {run_dir}: the run has no checkpoint yet (none is written before the first "
            f"--checkpoint-every steps); start it again without --resume"
        ) from None

    resolved = yaml.safe_load(config_path.read_text())
    profile = load_profile(resolved["env_id"], resolved["profile"])
    config = DistillConfig(**resolved["distill"])
    options = TeacherOptions(**resolved["teacher"]["options"])
    normalizer = None
    if (run_dir / NORMALIZATION_FILE).is_file():
        normalizer = ObservationNormalizer.from_dict(json.loads((run_dir / NORMALIZATION_FILE).read_text()))
    teacher = load_run_teacher(profile.env_id, config, options, normalizer)
    if teacher.info["sha256"] != resolved["teacher"]["sha256"]:
        raise UsageError(
            f"--resume {run_dir}: the teacher {teacher.path} changed since the run started (SHA-256 "
            f"{teacher.info['sha256'][:12]}..., recorded {resolved['teacher']['sha256'][:12]}...); restore it"
        )
    perturbation = force_perturbation(profile, config) if config.force_adversary else None
    logger.info("resuming %s at %d of %d steps", run_dir, state["num_timesteps"], config.total_timesteps)
    return _run(
        profile, config, run_dir, teacher, resolved["epsilon"], perturbation, progress_bar, tracking, resolved, state
    )


def _run(
    profile: TaskProfile,
    config: DistillConfig,
    run_dir: Path,
    teacher: Any,
    epsilon: float,
    perturbation: ForcePerturbation | None,
    progress_bar: bool,
    tracking: TrackingOptions | None,
    resolved: dict[str, Any],
    checkpoint: dict[str, Any] | None,
) -> dict[str, Any]:
    variant = "advkd-force" if perturbation is not None else "advkd"
    tracker = Tracker.start(
        tracking,
        run_dir,
        {**resolved, "command": command_line()},
        job_type="distill",
        group=f"{profile.env_id}/{variant}",
        name=f"{variant}-seed{config.seed}",
    )
    try:
        record = _distill_and_evaluate(
            profile, config, run_dir, teacher, epsilon, perturbation, progress_bar, tracker, tracking, checkpoint
        )
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    return record


def _distill_and_evaluate(
    profile: TaskProfile,
    config: DistillConfig,
    run_dir: Path,
    teacher: Any,
    epsilon: float,
    perturbation: ForcePerturbation | None,
    progress_bar: bool,
    tracker: Tracker,
    tracking: TrackingOptions | None,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    done = checkpoint["num_timesteps"] if checkpoint is not None else 0
    env_seed = config.seed + done
    rollout_size = config.n_steps * config.n_envs

    # The student's envs hold a slot for the force adversary, which needs the student as its victim.
    callbacks = []
    adversary = None
    if perturbation is not None:
        slot = AdversarySlot(action_dim=len(perturbation.bodies) * len(perturbation.axes))
        model = build_student(config, teacher, profile.env_id, epsilon, force=(perturbation, slot), env_seed=env_seed)
        adversary = make_adversary(model, profile.env_id, perturbation, seed=config.seed + 1 + done)
        slot.model = adversary
        alternation = AlternatingAdversaryCallback(adversary, config.adversary_every, config.adversary_steps)
        alternation.iterations = done // rollout_size
        alternation.phases = alternation.iterations // config.adversary_every
        callbacks.append(alternation)
    else:
        model = build_student(config, teacher, profile.env_id, epsilon, env_seed=env_seed)
    saver = DistillCheckpoint(run_dir, config.checkpoint_every, adversary)
    callbacks.append(saver)
    if checkpoint is not None:
        _restore(model, adversary, checkpoint)

    # A resumed run logs into its own folder, so the first part's progress.csv stays as it was.
    log_dir = run_dir / "logs" if checkpoint is None else run_dir / "logs" / f"resumed-at-{done}"
    sb3_logger = configure(str(log_dir), ["log", "csv", "tensorboard"])
    sb3_logger.output_formats.append(SummaryLineWriter(config.total_timesteps))
    sb3_logger.output_formats.append(tracker.writer())
    model.set_logger(sb3_logger)
    logger.info(
        "distilling %s: teacher %d actor parameters, student %d; %d steps, ε=%g",
        profile.env_id,
        teacher.actor_parameter_count(),
        model.as_frozen_policy().actor_parameter_count(),
        config.total_timesteps,
        epsilon,
    )

    started = time.time()
    remaining = config.total_timesteps - done
    if remaining > 0:
        try:
            model.learn(
                remaining,
                callback=callbacks,
                progress_bar=progress_bar,
                log_interval=1,
                reset_num_timesteps=checkpoint is None,
            )
        except KeyboardInterrupt:
            saver.save()
            logger.warning("interrupted at %d steps; checkpoint saved in %s", saver.completed_steps, run_dir)
            raise DistillInterrupted(run_dir, saver.completed_steps, config.total_timesteps) from None
        # The final checkpoint lets --resume rerun the evaluation if it is interrupted. A resumed
        # run with no steps left skips training, and its checkpoint is already the final one.
        saver.completed_steps = model.num_timesteps
        saver.save()
    train_seconds = time.time() - started
    _save_players(run_dir, model, adversary)
    logger.info("trained %d steps in %.0f s; student saved to %s", model.num_timesteps, train_seconds, run_dir)

    # Teacher and student side by side, on the same episode seeds.
    student = model.as_frozen_policy()
    student.path = run_dir / STUDENT_FILE
    try:
        policies = [
            evaluate_policy(policy, profile.env_id, config.eval_attacks, epsilon, config.eval_episodes, seed=config.seed)
            for policy in (teacher, student)
        ]
    except KeyboardInterrupt:
        logger.warning("interrupted during the final evaluation; the trained student is saved in %s", run_dir)
        raise DistillInterrupted(run_dir, int(model.num_timesteps), config.total_timesteps) from None
    record = results_record(profile.env_id, epsilon, config.eval_episodes, config.seed, policies)
    record["train_seconds"] = round(train_seconds, 1)
    record["total_timesteps"] = int(model.num_timesteps)
    record["teacher_sha256"] = teacher.info["sha256"]
    if checkpoint is not None:
        record["resumed_at"] = int(done)
    if teacher.info.get("env_mismatch"):
        record["tags"] = [f"teacher trained on {teacher.info['env_mismatch']}, used on {profile.env_id}"]
    write_results(record, run_dir / "results.json", run_dir / "results.md")

    record_evaluation(sb3_logger, record, model.num_timesteps)
    report_results(tracker, tracking, run_dir, record, run_dir / STUDENT_FILE, seed=config.seed)
    extra_files = [run_dir / CONFIG_FILE, run_dir / "results.json"]
    log_model_artifact(tracker, run_dir / STUDENT_FILE, profile.env_id, "student", extra_files)
    sb3_logger.close()
    return record


def _restore(model: AdvKD, adversary: Any, checkpoint: dict[str, Any]) -> None:
    """Load the checkpoint's weights, optimizer states, counters and random states into fresh players."""
    folder = checkpoint["folder"]
    model.set_parameters(str(folder / STUDENT_FILE), exact_match=True, device="cpu")
    model.num_timesteps = int(checkpoint["num_timesteps"])
    model._n_updates = int(checkpoint["n_updates"])
    model._episode_num = int(checkpoint["episode_num"])
    if adversary is not None:
        adversary.set_parameters(str(folder / ADVERSARY_FILE), exact_match=True, device="cpu")
        adversary.num_timesteps = int(checkpoint["adversary_timesteps"] or 0)
    restore_random_states(model, checkpoint["random_states"])


def _save_players(run_dir: Path, student: AdvKD, adversary: Any) -> None:
    student.save(run_dir / STUDENT_FILE)
    if adversary is not None:
        adversary.save(run_dir / ADVERSARY_FILE)
