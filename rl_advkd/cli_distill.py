"""Subcommands ``distill``, ``evaluate`` and ``sensitivity`` of the command line."""

import argparse
import dataclasses
import logging
import sys
import types
import typing
from pathlib import Path

from rl_advkd.errors import UsageError
from rl_advkd.saved_student import read_student_attributes, recorded_env_id
from rl_advkd.profiles import DistillConfig, TaskProfile
from rl_advkd.tracking_options import TrackingOptions, add_tracking_arguments, tracking_options

if typing.TYPE_CHECKING:
    from rl_advkd.policies import FrozenPolicy
    from rl_advkd.tracking import Tracker

logger = logging.getLogger(__name__)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option_type(annotation: object) -> type:
    """Return the type an option parses to: ``list`` for ``list[int]``, ``float`` for ``float | None``."""
    if isinstance(annotation, types.UnionType):
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return typing.get_origin(annotation) or annotation


def _add_config_options(parser: argparse.ArgumentParser, config_class: type) -> None:
    """Add one option per dataclass field; the default ``None`` means "take the profile's value"."""
    for field in dataclasses.fields(config_class):
        kind = _option_type(field.type)
        help_text = field.metadata.get("help", "") + " (default: the profile's)"
        if kind is bool:
            parser.add_argument(_option(field.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind is list:
            parser.add_argument(_option(field.name), default=None, help=help_text + "; comma-separated")
        else:
            parser.add_argument(_option(field.name), type=kind, default=None, help=help_text)


def _apply_overrides(config, args: argparse.Namespace):
    """Return ``config`` with every option the user passed on the command line."""
    changes = {}
    for field in dataclasses.fields(config):
        value = getattr(args, field.name, None)
        if value is None:
            continue
        if _option_type(field.type) is list:
            value = [item.strip() for item in value.split(",") if item.strip()]
            if field.name == "net_arch":
                from rl_advkd.profiles import check_net_arch

                value = check_net_arch(args.net_arch)
        changes[field.name] = value
    return dataclasses.replace(config, **changes)


def _add_distill(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="distill a teacher into a compact robust student (the main job)",
        description="Distill a teacher into a compact student with L = L_soft + λ·L_adv, then evaluate both.",
    )
    parser.add_argument("--env", default="Hopper-v5", help="Gymnasium env id (default: %(default)s)")
    parser.add_argument("--profile", help="task profile YAML (default: envs/<ENV>.yaml)")
    parser.add_argument("--epsilon", type=float, help="ℓ∞ attack budget in normalized units (default: the profile's)")
    parser.add_argument("--run-dir", help="output folder (default: runs/<ENV>/advkd-seed<SEED>-<TIME>)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its checkpoint, with the configuration recorded in it",
    )
    parser.add_argument("--timesteps", dest="total_timesteps", type=int, help=argparse.SUPPRESS)
    teacher = parser.add_argument_group("teacher")
    teacher.add_argument(
        "--teacher",
        help="rl_advkd teacher folder, RL Zoo run folder or SB3 model .zip of PPO, A2C, SAC, TQC, TD3 or DDPG "
        "(default: the shipped teacher of --env)",
    )
    teacher.add_argument("--vecnormalize", metavar="PATH", help="the teacher's VecNormalize file, if not next to it")
    teacher.add_argument(
        "--raw-observations",
        action="store_true",
        help="the teacher was trained without observation normalization: estimate the statistics that define ε "
        "from its rollouts (see --stats-steps)",
    )
    teacher.add_argument(
        "--trust-teacher",
        action="store_true",
        help="load with SB3's full load, which runs the pickled code stored in the files; by default only "
        "weights, JSON settings and normalization arrays are read",
    )
    teacher.add_argument(
        "--allow-env-mismatch",
        action="store_true",
        help="use a teacher recorded for another env id (results are tagged)",
    )
    _add_config_options(parser, DistillConfig)
    add_tracking_arguments(parser)
    parser.set_defaults(handler=_run_distill)


def _run_distill(args: argparse.Namespace) -> int:
    from rl_advkd.distill import (
        DistillInterrupted,
        TeacherOptions,
        default_run_dir,
        resume_distillation,
        run_distillation,
    )
    from rl_advkd.profiles import check_epsilon, load_profile

    tracking = tracking_options(args)
    try:
        if args.resume:
            run_dir = Path(args.resume)
            _warn_ignored_with_resume(args)
            record = resume_distillation(run_dir, progress_bar=sys.stderr.isatty(), tracking=tracking)
        else:
            if args.epsilon is not None:
                check_epsilon(args.epsilon)
            profile = load_profile(args.env, args.profile)
            config = _apply_overrides(profile.distill, args)
            run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.env, config.seed)
            options = TeacherOptions(
                path=args.teacher,
                vecnormalize=args.vecnormalize,
                raw_observations=args.raw_observations,
                trust=args.trust_teacher,
                allow_env_mismatch=args.allow_env_mismatch,
            )
            record = run_distillation(
                profile,
                config,
                run_dir,
                epsilon=args.epsilon,
                progress_bar=sys.stderr.isatty(),
                tracking=tracking,
                teacher_options=options,
            )
    except DistillInterrupted as stop:
        print(
            f"interrupted at {stop.steps} of {stop.total} steps; checkpoint saved in {stop.run_dir / 'checkpoint'}. "
            f"Continue with: rl-advkd distill --resume {stop.run_dir}",
            file=sys.stderr,
        )
        # 128 + SIGINT, the status a shell reports for a command stopped with Ctrl-C.
        return 130
    print((run_dir / "results.md").read_text())
    print(f"run folder: {run_dir} (student.zip, config.yaml, command.txt, logs/, results.json, results.md)")
    print(f"training took {record['train_seconds']:.0f} s for {record['total_timesteps']} steps")
    return 0


def _warn_ignored_with_resume(args: argparse.Namespace) -> None:
    """Log the options that ``--resume`` ignores, since the run's recorded configuration wins."""
    ignored = [field.name for field in dataclasses.fields(DistillConfig) if getattr(args, field.name, None) is not None]
    ignored += [name for name in ("teacher", "vecnormalize", "profile", "epsilon", "run_dir") if getattr(args, name)]
    if ignored:
        logger.warning(
            "--resume continues with the configuration recorded in the run; ignoring %s",
            ", ".join(_option(name) for name in ignored),
        )


def _add_teacher_loading_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that control how a teacher given as ``--policy`` is loaded."""
    parser.add_argument("--vecnormalize", metavar="PATH", help="a teacher's VecNormalize file, if not next to it")
    parser.add_argument(
        "--raw-observations",
        action="store_true",
        help="the teacher was trained without observation normalization; estimate the statistics from its rollouts",
    )
    parser.add_argument(
        "--trust-teacher",
        action="store_true",
        help="load a teacher with SB3's full load, which runs the pickled code stored in its files",
    )


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    from rl_advkd.attacks import ATTACKER_CONFIGS, OPTIMAL_STEPS, SELECTION_EPISODES

    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a teacher or a student under observation and dynamics attacks",
        description="Run deterministic episodes under each attack and write results.json and results.md.",
    )
    parser.add_argument(
        "--policy",
        required=True,
        action="append",
        help="student .zip, or a teacher folder or model .zip; repeat it or separate paths with commas to "
        "evaluate several policies side by side, for example a student and its teacher",
    )
    parser.add_argument("--env", help="Gymnasium env id (default: the one recorded with the first policy)")
    parser.add_argument(
        "--attacks",
        default="natural,random,mad",
        help="comma-separated, from natural, random, mad, critic (PGD that lowers the policy's own value "
        "estimate), optimal (PPO attackers trained against the policy) (observation attacks at each ε), "
        "force-random, force (pushes on the profile's bodies), mass, friction (a grid of scaled models) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--epsilon",
        help="ℓ∞ attack budget in normalized units, or a comma-separated list such as 0,0.1,0.3 for a robustness "
        "curve (default: the profile's)",
    )
    parser.add_argument("--episodes", type=int, default=50, help="episodes per attack (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: %(default)s)")
    parser.add_argument("--profile", help="task profile YAML (default: envs/<ENV>.yaml)")
    parser.add_argument(
        "--adversary-steps",
        type=int,
        help="env steps of PPO training of the adversary of the force attack (default: the profile's)",
    )
    parser.add_argument(
        "--optimal-steps",
        type=int,
        default=OPTIMAL_STEPS,
        help="env steps of PPO training of each attacker of the optimal attack, per ε (default: %(default)s)",
    )
    parser.add_argument(
        "--optimal-attackers",
        type=int,
        default=len(ATTACKER_CONFIGS),
        help="attacker configurations the optimal attack trains, of "
        f"{', '.join(config.name for config in ATTACKER_CONFIGS)}; the one with the lowest return on "
        f"{SELECTION_EPISODES} separate episodes is evaluated and reported (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        default="results.json",
        help="results JSON; the table goes next to it as .md, the robustness curves as -curves.png and "
        "TensorBoard events into logs/ beside it",
    )
    _add_teacher_loading_options(parser)
    add_tracking_arguments(parser)
    parser.set_defaults(handler=_run_evaluate)


def is_student_zip(path: Path) -> bool:
    """Tell a student saved by AdvKD from a teacher by the JSON part of the zip (no pickle is run)."""
    return read_student_attributes(path) is not None


def check_policy_path(path: str | Path) -> Path:
    """Raise a :class:`UsageError` unless ``path`` can be a student zip or a teacher folder or zip."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"policy not found: {path} does not exist")
    if path.is_file() and path.suffix != ".zip":
        raise UsageError(
            f"cannot evaluate {path}: pass a student .zip, or a teacher folder or model .zip "
            "(exported .onnx and .pt files run with 'rl-advkd play')"
        )
    if path.is_dir() and not (path / "model.zip").is_file() and (path / "student.zip").is_file():
        raise UsageError(f"{path} is a run folder; pass its student: --policy {path / 'student.zip'}")
    return path


def load_policy(path: str | Path, env_id: str, **teacher_kwargs):
    """
    Load a student zip or a teacher as a frozen policy for ``env_id``.

    :param teacher_kwargs: passed to :func:`rl_advkd.teacher_loading.load_teacher` for a teacher
    """
    import gymnasium as gym

    from rl_advkd.teacher_loading import check_spaces, load_teacher

    path = check_policy_path(path)
    if not is_student_zip(path):
        return load_teacher(path, env_id, **teacher_kwargs)

    from rl_advkd.advkd import AdvKD

    model = AdvKD.load(path, device="cpu")
    env = gym.make(env_id)
    try:
        check_spaces(model.observation_space, model.action_space, env, env_id, what=f"student {path}")
    finally:
        env.close()
    if model.env_id and model.env_id != env_id:
        raise UsageError(f"student {path} was distilled on {model.env_id}, not {env_id}; pass --env {model.env_id}")
    policy = model.as_frozen_policy()
    policy.path = path
    return policy


def check_push_bodies(profile: TaskProfile) -> None:
    """Raise a :class:`UsageError` unless the profile's adversary bodies exist in the task's model."""
    import gymnasium as gym

    from rl_advkd.adversaries import AdversarialForce

    config = profile.adversary
    if not config.bodies:
        raise UsageError(
            f"the force attacks need the bodies to push, and the profile {profile.source} names none; "
            "add an adversary: section with bodies and force_bound"
        )
    env = gym.make(profile.env_id)
    try:
        AdversarialForce(env, config.bodies, config.force_bound, config.axes)
    except ValueError as error:
        raise UsageError(f"{profile.source}: adversary: {error}") from None
    finally:
        env.close()


def _run_evaluate(args: argparse.Namespace) -> int:
    from rl_advkd.profiles import load_profile

    tracking = tracking_options(args)
    attacks = _evaluate_attacks(args)
    paths = parse_policy_paths(args.policy)
    if args.env is None:
        args.env = recorded_env_id(paths[0])
        if args.env is None:
            raise UsageError(f"no env id is recorded with {paths[0]}; pass --env ENV_ID")
    profile = load_profile(args.env, args.profile)
    epsilons = [profile.epsilon] if args.epsilon is None else parse_epsilons(args.epsilon)
    if any(attack in ("force-random", "force") for attack in attacks):
        check_push_bodies(profile)

    policies = [
        load_policy(
            path,
            args.env,
            vecnormalize=args.vecnormalize,
            raw_observations=args.raw_observations,
            trust=args.trust_teacher,
        )
        for path in paths
    ]
    name_columns(policies, paths)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tracker = start_evaluation_tracking(args, tracking, policies, profile, epsilons, out.parent)
    try:
        _evaluate_and_report(args, tracking, tracker, profile, policies, attacks, epsilons, out, paths[-1])
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    return 0


def _evaluate_attacks(args: argparse.Namespace) -> list[str]:
    """Return the attacks of ``evaluate`` after checking them and the counts that go with them."""
    from rl_advkd.attacks import attacker_configs
    from rl_advkd.evaluation import parse_attacks

    try:
        attacks = parse_attacks(args.attacks)
        attacker_configs(args.optimal_attackers)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if args.adversary_steps is not None and args.adversary_steps < 1:
        raise UsageError(f"--adversary-steps must be >= 1, got {args.adversary_steps}")
    if args.optimal_steps < 1:
        raise UsageError(f"--optimal-steps must be >= 1, got {args.optimal_steps}; pass e.g. --optimal-steps 100000")
    return attacks


def parse_epsilons(text: str) -> list[float]:
    """
    Parse ``--epsilon``: one budget or a comma-separated list, in normalized units.

    :raises UsageError: for a value that is not a number, is negative or not finite, or is listed twice
    """
    from rl_advkd.evaluation import epsilon_list

    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            values.append(float(item))
        except ValueError:
            raise UsageError(
                f"--epsilon {text!r}: {item!r} is not a number; pass one budget or a comma-separated list, "
                "e.g. --epsilon 0,0.1,0.3"
            ) from None
    try:
        return epsilon_list(values)
    except ValueError as error:
        raise UsageError(str(error)) from None


def parse_policy_paths(values: list[str]) -> list[Path]:
    """
    Return the policy paths of ``--policy``, which may be repeated and may hold comma-separated paths.

    :raises UsageError: for a path that cannot be a policy, or one listed twice
    """
    paths = [check_policy_path(item.strip()) for value in values for item in value.split(",") if item.strip()]
    if not paths:
        raise UsageError("--policy names no policy; pass a student .zip or a teacher folder")
    seen = set()
    for path in paths:
        if path.resolve() in seen:
            raise UsageError(f"--policy {path} is listed twice; list each policy once")
        seen.add(path.resolve())
    return paths


def name_columns(policies: list["FrozenPolicy"], paths: list[Path]) -> None:
    """
    Give every policy a distinct name, since the names head the table's columns.

    A policy keeps its own name (``teacher``, ``student``) when no other policy has it. Policies
    that share a name get the path they were loaded from added to it.
    """
    names = [policy.name for policy in policies]
    for policy, path in zip(policies, paths):
        if names.count(policy.name) > 1:
            policy.name = f"{policy.name} ({path})"


def start_evaluation_tracking(
    args: argparse.Namespace,
    tracking: TrackingOptions,
    policies: list["FrozenPolicy"],
    profile: TaskProfile,
    epsilons: list[float],
    out_dir: Path,
) -> "Tracker":
    """Start the W&B run of ``evaluate`` (inactive without ``--track``), with its resolved configuration."""
    from rl_advkd.provenance import command_line, file_sha256, library_versions
    from rl_advkd.tracking import Tracker

    described = []
    for policy in policies:
        policy_file = policy.path if policy.path is not None and Path(policy.path).is_file() else None
        described.append(
            {"name": policy.name, "path": str(policy.path), "sha256": policy_file and file_sha256(policy_file)}
        )
    config = {
        "env_id": args.env,
        # A single policy keeps the form of earlier versions, a mapping, so W&B runs stay comparable.
        "policy": described[0] if len(described) == 1 else described,
        "attacks": args.attacks,
        "epsilon": epsilons[0] if len(epsilons) == 1 else epsilons,
        "episodes": args.episodes,
        "seed": args.seed,
        "profile": profile.source,
        "adversary_steps": args.adversary_steps,
        "optimal_steps": args.optimal_steps,
        "optimal_attackers": args.optimal_attackers,
        "versions": library_versions(),
        "command": command_line(),
    }
    names = "-".join(policy.name for policy in policies)
    return Tracker.start(
        tracking,
        out_dir,
        config,
        job_type="evaluate",
        group=f"{args.env}/evaluate",
        name=f"evaluate-{names}-seed{args.seed}",
    )


def curves_path(out: Path) -> Path:
    """Return the PNG of the robustness curves that ``evaluate`` writes next to ``out``."""
    return out.with_name(f"{out.stem}-curves.png")


def _evaluate_and_report(
    args: argparse.Namespace,
    tracking: TrackingOptions,
    tracker: "Tracker",
    profile: TaskProfile,
    policies: list["FrozenPolicy"],
    attacks: list[str],
    epsilons: list[float],
    out: Path,
    video_policy: Path,
) -> None:
    from stable_baselines3.common.logger import configure

    from rl_advkd.evaluation import DYNAMICS_ATTACKS, evaluate_policy, results_record, write_results
    from rl_advkd.plots import plot_robustness_curves
    from rl_advkd.reporting import record_evaluation, report_results

    evaluated = [
        evaluate_policy(
            policy,
            args.env,
            attacks,
            epsilons,
            args.episodes,
            seed=args.seed,
            adversary=profile.adversary,
            adversary_steps=args.adversary_steps,
            optimal_steps=args.optimal_steps,
            optimal_attackers=args.optimal_attackers,
        )
        for policy in policies
    ]
    record = results_record(args.env, epsilons, args.episodes, args.seed, evaluated)
    if any(attack in DYNAMICS_ATTACKS for attack in attacks):
        record["adversary"] = dataclasses.asdict(profile.adversary)
    table = write_results(record, out, out.with_suffix(".md"))
    curves = plot_robustness_curves(record, curves_path(out))
    print(table)
    print(f"results written to {out} and {out.with_suffix('.md')}, robustness curves to {curves}")

    # TensorBoard events of the results, like those of a training run, at step 0.
    sb3_logger = configure(str(out.parent / "logs"), ["tensorboard"])
    sb3_logger.output_formats.append(tracker.writer())
    record_evaluation(sb3_logger, record, step=0)
    sb3_logger.close()
    report_results(tracker, tracking, out.parent, record, video_policy, seed=args.seed)


def _add_sensitivity(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sensitivity",
        help="rank the observation dimensions by the return a policy loses when only that one is attacked",
        description="Per observation dimension: the share of ε that the strongest gradient attack (mad or critic) "
        "spends on it, and the return lost under MAD on that dimension alone. Writes sensitivity.json, "
        "sensitivity.md and sensitivity.png.",
    )
    parser.add_argument("--policy", required=True, help="student .zip, or a teacher folder or model .zip")
    parser.add_argument("--env", help="Gymnasium env id (default: the one recorded with the policy)")
    parser.add_argument(
        "--epsilon", type=float, help="ℓ∞ attack budget in normalized units, > 0 (default: the profile's)"
    )
    parser.add_argument(
        "--episodes", type=int, default=10, help="episodes per run; there are 3 + obs_dim runs (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: %(default)s)")
    parser.add_argument("--profile", help="task profile YAML (default: envs/<ENV>.yaml)")
    parser.add_argument("--out", default="sensitivity", help="output folder (default: %(default)s)")
    _add_teacher_loading_options(parser)
    parser.set_defaults(handler=_run_sensitivity)


def _run_sensitivity(args: argparse.Namespace) -> int:
    from rl_advkd.profiles import check_epsilon, load_profile
    from rl_advkd.sensitivity import markdown_report, sensitivity_report, write_report

    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    path = check_policy_path(args.policy)
    env_id = args.env or recorded_env_id(path)
    if env_id is None:
        raise UsageError(f"no env id is recorded with {path}; pass --env ENV_ID")
    epsilon = load_profile(env_id, args.profile).epsilon if args.epsilon is None else args.epsilon
    check_epsilon(epsilon)
    if epsilon == 0.0:
        raise UsageError(
            "--epsilon 0 attacks nothing, so every dimension would lose nothing; pass e.g. --epsilon 0.075"
        )

    policy = load_policy(
        path, env_id, vecnormalize=args.vecnormalize, raw_observations=args.raw_observations, trust=args.trust_teacher
    )
    report = sensitivity_report(
        policy, env_id, epsilon, args.episodes, seed=args.seed, show_progress=sys.stderr.isatty()
    )
    files = write_report(report, args.out)
    print(markdown_report(report))
    print(f"report written to {files['json']}, {files['markdown']} and {files['plot']}")
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``distill``, ``evaluate`` and ``sensitivity``."""
    _add_distill(subparsers)
    _add_evaluate(subparsers)
    _add_sensitivity(subparsers)
