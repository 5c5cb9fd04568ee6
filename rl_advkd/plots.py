"""Figures of evaluation results, drawn with matplotlib without a display."""

from pathlib import Path
from typing import Any

import numpy as np


def plot_results(record: dict[str, Any], path: str | Path) -> Path:
    """
    Draw a bar plot of the mean return per attack, one bar per policy, and save it as PNG.

    The error bars are one standard deviation over the episodes. The ``worst`` row is left out
    because it repeats another row.

    :param record: a results record of :func:`rl_advkd.evaluation.results_record`
    :param path: the image file to write
    :return: the written file
    """
    # The Agg backend draws into memory, so no display is needed; importing pyplot after this
    # call keeps it from picking an interactive backend.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rl_advkd.evaluation import row_label

    policies = record["policies"]
    indices = [index for index, row in enumerate(policies[0]["rows"]) if row["attack"] != "worst"]
    labels = [row_label(policies[0]["rows"][index]) for index in indices]
    positions = np.arange(len(indices))
    width = 0.8 / len(policies)

    figure, axes = plt.subplots(figsize=(max(4.0, 1.2 * len(indices) + 2.0), 3.5), layout="constrained")
    for offset, policy in enumerate(policies):
        rows = [policy["rows"][index] for index in indices]
        axes.bar(
            positions + (offset - (len(policies) - 1) / 2) * width,
            [row["mean"] for row in rows],
            width,
            yerr=[row["std"] for row in rows],
            capsize=3,
            label=policy["name"],
        )
    axes.set_xticks(positions, labels)
    axes.set_ylabel("mean return")
    axes.set_title(f"{record['env_id']}, ε = {record['epsilon']:g}, {record['episodes']} episodes per attack")
    axes.legend()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
