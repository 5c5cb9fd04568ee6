"""
Run the README's main job (``rl-advkd distill`` with its defaults) and keep its raw output.

The run folder's ``results.json``, ``results.md``, ``config.yaml`` and ``command.txt`` are
copied to ``benchmarks/results/main_job/`` with ``timing.json`` (wall time of the whole
command, training included, on this machine). The README's table is ``results.md`` from there.

Usage: ``python benchmarks/main_job.py [extra distill options]``
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "main_job"


def main() -> int:
    run_dir = ROOT / "runs" / "benchmark-main-job"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = ["rl-advkd", "distill", "--run-dir", str(run_dir), *sys.argv[1:]]

    load_at_start = os.getloadavg()[0]
    started = time.time()
    subprocess.run(command, cwd=ROOT, check=True)
    wall_seconds = time.time() - started

    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.md", "config.yaml", "command.txt"):
        shutil.copy(run_dir / name, OUT / name)
    timing = {
        "command": " ".join(command),
        "wall_seconds": round(wall_seconds, 1),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        # Other jobs on the machine slow the run down; these record how busy it was.
        "load_average_1min_at_start": round(load_at_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    (OUT / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(f"wall time {wall_seconds / 60:.1f} min; raw output in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
