"""Provenance of an artifact: the command, the library versions and file hashes."""

import hashlib
import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("rl_advkd", "stable-baselines3", "gymnasium", "mujoco", "torch", "numpy", "wandb")


def library_versions() -> dict[str, str]:
    """Return the installed versions of the libraries that change results."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def command_line() -> str:
    """Return the command that started this process, quoted so it can be pasted into a shell."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("rl-advkd", "__main__.py")):
        argv[0] = "rl-advkd"
    return shlex.join(argv)


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, through a temporary file so a crash leaves no half file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_to_jsonable) + "\n")
    tmp.replace(path)


def _to_jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
