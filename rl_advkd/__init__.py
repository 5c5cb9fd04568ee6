"""Distill a Stable-Baselines3 teacher into a compact student that stays robust under attack."""

__version__ = "0.1.0"

__all__ = ["AdvKD", "__version__"]


def __getattr__(name: str):
    # Imported on first use so that `rl-advkd --help` and the deployment runtime stay light.
    if name == "AdvKD":
        from rl_advkd.advkd import AdvKD

        return AdvKD
    raise AttributeError(f"module 'rl_advkd' has no attribute {name!r}")
