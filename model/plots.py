"""Loss-curve figures written beside a trained model (PNG): the triplet network's and SSBR's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_triplet_loss(history: list[float], boundaries: list[int], path: Path) -> None:
    """The triplet network's loss per step and its moving mean; ``boundaries``: the steps where a
    pseudo-label round began (dotted lines)."""
    # Figure + Agg canvas directly: no global matplotlib backend change inside a library.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = np.arange(1, len(history) + 1)
    ax.plot(steps, history, lw=0.6, alpha=0.4, label="loss per step")
    window = max(1, len(history) // 20)
    if len(history) >= window:
        smooth = np.convolve(history, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1.6, label=f"mean of {window} steps")
    for b in boundaries:
        ax.axvline(b, color="grey", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("sequential triplet loss")
    ax.set_title("LesionKG triplet network training")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)


def plot_ssbr_loss(metrics: dict[str, Any], path: Path) -> None:
    """SSBR's losses (total, L_order, L_dist) per step, as moving means on a log scale."""
    # Figure + Agg canvas directly: no global matplotlib backend change inside a library.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    window = max(1, len(metrics["loss_history"]) // 50)
    for key, label in (
        ("loss_history", "L_order + L_dist"),
        ("order_loss_history", "L_order"),
        ("dist_loss_history", "L_dist"),
    ):
        values = np.asarray(metrics[key], dtype=float)
        if len(values) == 0:
            continue
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axes.plot(np.arange(window, len(values) + 1), smooth, label=label)
    axes.set_xlabel("step")
    smoothing = f", moving mean over {window} steps" if window > 1 else ""
    axes.set_ylabel(f"loss per group{smoothing}")
    axes.set_yscale("log")
    axes.set_title("SSBR training loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
