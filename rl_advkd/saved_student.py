"""Read what a saved AdvKD student records about itself, from the JSON part of its zip."""

import json
import zipfile
from pathlib import Path
from typing import Any


def read_student_attributes(path: Path) -> dict[str, Any] | None:
    """
    Read a student's recorded attributes (``env_id``, ``epsilon``, ``teacher_sha256``) from the JSON
    part of its zip, without running any pickle.

    :return: the attributes, or ``None`` when ``path`` is not a student saved by AdvKD
    """
    if path.suffix != ".zip" or not path.is_file():
        return None
    with zipfile.ZipFile(path) as archive:
        if "data" not in archive.namelist():
            return None
        data = json.loads(archive.read("data"))
    if "normalization" not in data:
        return None
    return {key: data.get(key) for key in ("env_id", "epsilon", "teacher_sha256")}


def recorded_env_id(path: str | Path) -> str | None:
    """Return the env id recorded with a student zip or a teacher (its ``provenance.json``), or ``None``."""
    path = Path(path)
    student = read_student_attributes(path)
    if student is not None:
        return student["env_id"]
    # The file name that rl_advkd.teachers writes; not imported from there, which would load torch.
    provenance = (path if path.is_dir() else path.parent) / "provenance.json"
    if provenance.is_file():
        return json.loads(provenance.read_text()).get("env_id")
    return None
