"""The robustness benchmark in its short budget: trains, evaluates and writes a well-formed page."""

import json
import os
import subprocess
import sys

from rl_advkd.paths import SOURCE_ROOT


def test_short_robustness_benchmark_writes_page(tmp_path):
    page = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, str(SOURCE_ROOT / "benchmarks" / "robustness.py"), "--budget", "short",
        "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--page", str(page),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    policies = summary["tasks"]["InvertedPendulum-v5"]["policies"]
    assert sorted(policies) == ["advkd", "kl-only", "ppo-scratch", "teacher"]
    for name, policy in policies.items():
        worst = policy["cells"]["worst@0.3"]
        assert len(worst["per_seed"]) == 2, name
        assert worst["low"] <= worst["iqm"] <= worst["high"], name
        assert worst["iqm"] <= policy["cells"]["natural@0"]["iqm"], name
        # The optimal attack runs in its own evaluation and joins the worst case at its ε.
        optimal = policy["cells"]["optimal@0.3"]
        assert len(optimal["per_seed"]) == 2, name
        assert worst["per_seed"] == [min(pair) for pair in zip(worst["per_seed"], optimal["per_seed"])], name
    assert summary["attacks"] == "natural,random,mad,optimal"
    assert summary["optimal"] == {"epsilon": {"InvertedPendulum-v5": 0.3}, "steps_per_attacker": 256}
    assert (tmp_path / "out" / "robustness-curves.png").stat().st_size > 10_000

    text = page.read_text()
    assert "### InvertedPendulum-v5" in text
    assert "| **worst** | 0.3 |" in text
    assert "### Cost on InvertedPendulum-v5" in text
    assert "| optimal | 0.3 |" in text
    assert "robustness-curves.png" in text
    assert "Worst case over natural, beside published robust agents" in text
    # The page names the raw output folder it was built from.
    assert str(tmp_path / "out") in text
