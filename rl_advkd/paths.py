"""Locations of the task profiles (``envs/``) and the shipped agent zoo (``agents/``)."""

from pathlib import Path

# The package is installed in editable mode from the repository, so the data folders sit
# next to the package directory. A folder of the same name in the working directory wins,
# which lets users keep their own profiles and agents outside the source tree.
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """
    Return the ``envs`` or ``agents`` folder to read from.

    :param name: ``"envs"`` or ``"agents"``
    :return: ``./name`` if it exists in the working directory, else the one in the source tree
    """
    local = Path.cwd() / name
    if local.is_dir():
        return local
    return SOURCE_ROOT / name


def shipped_teacher_dir(env_id: str) -> Path:
    """Return the folder of the shipped teacher for ``env_id`` (it may not exist)."""
    return data_dir("agents") / env_id / "teacher"
