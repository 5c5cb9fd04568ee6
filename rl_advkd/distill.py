"""The main job: distill a teacher into a student in a run folder, then evaluate both side by side."""

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from collections.abc import Callable

import gymnasium as gym
import yaml
from stable_baselines3.common.logger import configure

from rl_advkd.adversaries import ForcePerturbation, ProtagonistEnv, default_axes
from rl_advkd.adversaries.rarl import AdversarySlot, AlternatingAdversaryCallback, make_adversary
from rl_advkd.advkd import AdvKD
from rl_advkd.logging_utils import SummaryLineWriter
from rl_advkd.errors import UsageError
from rl_advkd.evaluation import evaluate_policy, results_record, write_results
from rl_advkd.profiles import (
    DistillConfig,
    TaskProfile,
    check_distill_config,
    check_epsilon,
    check_net_arch,
    learning_rate_schedule,
)
from rl_advkd.reporting import log_model_artifact, record_evaluation, report_results
from rl_advkd.provenance import command_line, library_versions, utc_now
from rl_advkd.teachers import load_teacher
from rl_advkd.tracking import Tracker
from rl_advkd.tracking_options import TrackingOptions
from rl_advkd.vec_env import make_student_env

logger = logging.getLogger(__name__)

STUDENT_FILE = "student.zip"
ADVERSARY_FILE = "force_adversary.zip"


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
) -> AdvKD:
    """
    Build the AdvKD student for ``env_id`` from a distillation config.

    :param force: a push and the slot of the adversary that drives it in the student's envs;
        ``None`` trains without a force adversary
    """
    net_arch = check_net_arch(config.net_arch)
    env_factory: str | Callable[[], gym.Env] = env_id
    if force is not None:
        perturbation, slot = force

        def env_factory() -> gym.Env:
            return ProtagonistEnv(gym.make(env_id), perturbation, slot)

    env = make_student_env(
        env_factory, teacher.normalizer, teacher.info.get("reward_scale", 1.0), n_envs=config.n_envs, seed=config.seed
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
        learning_rate=learning_rate_schedule(config),
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs={"net_arch": {"pi": net_arch, "vf": net_arch}},
        seed=config.seed,
        device="cpu",
        verbose=verbose,
    )


def run_distillation(
    profile: TaskProfile,
    config: DistillConfig,
    run_dir: str | Path,
    teacher_path: str | Path | None = None,
    epsilon: float | None = None,
    progress_bar: bool = True,
    tracking: TrackingOptions | None = None,
) -> dict[str, Any]:
    """
    Distill, save and evaluate; everything lands in ``run_dir``.

    The folder receives ``config.yaml`` (the resolved configuration), ``command.txt``,
    ``student.zip`` (with its normalization statistics inside), ``force_adversary.zip`` when a
    force adversary trained, ``logs/`` (SB3's stdout log, ``progress.csv`` and TensorBoard
    events), ``results.json`` and ``results.md``. With ``tracking.track`` or ``tracking.video``
    it also receives ``videos/``, and with ``tracking.track`` ``results.png``, ``student.onnx``
    and the W&B run (see :mod:`rl_advkd.tracking`).

    :param tracking: W&B and video options; ``None`` records only the run folder

    :return: the results record
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
    teacher = load_teacher(teacher_path, profile.env_id)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {
        "env_id": profile.env_id,
        "epsilon": epsilon,
        "profile": profile.source,
        "teacher": {"path": str(teacher.path), "sha256": teacher.info["sha256"], "algo": teacher.info["algo"]},
        "distill": asdict(config),
        "versions": library_versions(),
        "created": utc_now(),
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (run_dir / "command.txt").write_text(command_line() + "\n")
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
            profile, config, run_dir, teacher, epsilon, perturbation, progress_bar, tracker, tracking
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
) -> dict[str, Any]:
    # The student's envs hold a slot for the force adversary, which needs the student as its victim.
    callbacks = []
    adversary = None
    if perturbation is not None:
        slot = AdversarySlot(action_dim=len(perturbation.bodies) * len(perturbation.axes))
        model = build_student(config, teacher, profile.env_id, epsilon, force=(perturbation, slot))
        adversary = make_adversary(model, profile.env_id, perturbation, seed=config.seed + 1)
        slot.model = adversary
        callbacks.append(AlternatingAdversaryCallback(adversary, config.adversary_every, config.adversary_steps))
    else:
        model = build_student(config, teacher, profile.env_id, epsilon)
    sb3_logger = configure(str(run_dir / "logs"), ["log", "csv", "tensorboard"])
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
    try:
        model.learn(config.total_timesteps, callback=callbacks, progress_bar=progress_bar, log_interval=1)
    except KeyboardInterrupt:
        logger.warning("interrupted at %d steps; saving the student trained so far", model.num_timesteps)
        _save_players(run_dir, model, adversary)
        raise
    train_seconds = time.time() - started
    _save_players(run_dir, model, adversary)
    logger.info("trained %d steps in %.0f s; student saved to %s", model.num_timesteps, train_seconds, run_dir)

    # Teacher and student side by side, on the same episode seeds.
    student = model.as_frozen_policy()
    student.path = run_dir / STUDENT_FILE
    policies = [
        evaluate_policy(policy, profile.env_id, config.eval_attacks, epsilon, config.eval_episodes, seed=config.seed)
        for policy in (teacher, student)
    ]
    record = results_record(profile.env_id, epsilon, config.eval_episodes, config.seed, policies)
    record["train_seconds"] = round(train_seconds, 1)
    record["total_timesteps"] = int(model.num_timesteps)
    record["teacher_sha256"] = teacher.info["sha256"]
    write_results(record, run_dir / "results.json", run_dir / "results.md")

    record_evaluation(sb3_logger, record, model.num_timesteps)
    report_results(tracker, tracking, run_dir, record, run_dir / STUDENT_FILE, seed=config.seed)
    extra_files = [run_dir / "config.yaml", run_dir / "results.json"]
    log_model_artifact(tracker, run_dir / STUDENT_FILE, profile.env_id, "student", extra_files)
    sb3_logger.close()
    return record


def _save_players(run_dir: Path, student: AdvKD, adversary: Any) -> None:
    student.save(run_dir / STUDENT_FILE)
    if adversary is not None:
        adversary.save(run_dir / ADVERSARY_FILE)
