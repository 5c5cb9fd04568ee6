"""The ``rl-advkd`` command: argument parsing only; the library does the work."""

import argparse
import logging
import sys
from pathlib import Path

from rl_advkd import __version__
from rl_advkd.errors import UsageError
from rl_advkd.tracking_options import add_tracking_arguments, tracking_options

logger = logging.getLogger("rl_advkd")


def _add_teacher(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("teacher", help="train an SB3 teacher (PPO by default) with VecNormalize from a task profile")
    parser.add_argument("--env", default="Hopper-v5", help="Gymnasium env id (default: %(default)s)")
    parser.add_argument("--profile", help="task profile YAML (default: envs/<ENV>.yaml)")
    parser.add_argument("--timesteps", type=int, help="environment steps (default: the profile's)")
    parser.add_argument("--seed", type=int, help="random seed (default: the profile's)")
    parser.add_argument("--out", help="output folder (default: agents/<ENV>/teacher)")
    add_tracking_arguments(parser)
    parser.set_defaults(handler=_run_teacher)


def _run_teacher(args: argparse.Namespace) -> int:
    from rl_advkd.paths import shipped_teacher_dir
    from rl_advkd.profiles import load_profile
    from rl_advkd.teachers import train_teacher

    profile = load_profile(args.env, args.profile)
    if args.timesteps is not None and args.timesteps < 1:
        raise UsageError(f"--timesteps must be >= 1, got {args.timesteps}")
    out_dir = Path(args.out) if args.out else shipped_teacher_dir(args.env)
    record = train_teacher(
        profile,
        out_dir,
        total_timesteps=args.timesteps,
        seed=args.seed,
        progress_bar=_on_terminal(),
        tracking=tracking_options(args),
    )
    evaluation = record["evaluation"]
    print(
        f"teacher saved to {out_dir}: deterministic return {evaluation['mean_return']:.1f} "
        f"± {evaluation['std_return']:.1f} over {evaluation['episodes']} episodes "
        f"after {record['total_timesteps']} steps"
    )
    return 0


def _on_terminal() -> bool:
    return sys.stderr.isatty()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rl-advkd",
        description="Distill an SB3 teacher into a compact student that stays robust under observation attacks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_teacher(subparsers)
    from rl_advkd import cli_deploy, cli_distill

    cli_distill.add_subcommands(subparsers)
    cli_deploy.add_subcommands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors print one line and exit with status 2."""
    from rl_advkd.rendering import choose_gl_backend

    # MuJoCo reads MUJOCO_GL when it is imported, so the backend is chosen before any subcommand runs.
    choose_gl_backend()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # PyOpenGL, imported by MuJoCo's renderer, logs an INFO line about an optional module.
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"rl-advkd {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # distill handles Ctrl-C itself (checkpoint and resume); the other commands just stop.
        print(f"rl-advkd {args.command}: interrupted", file=sys.stderr)
        return 130
