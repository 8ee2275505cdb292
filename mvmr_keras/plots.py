"""Pictures of a run, drawn with matplotlib without a display (Agg).

- `plot_curves(history, path)`: the trainer's `curves.png`, the loss terms
  (left) and the online probe / kNN accuracy (right) per epoch, from
  `history.json`, with the baselines' scores as dashed lines;
- `plot_embedding(points, labels, path)`: `evaluate.py --mode=embedding`'s
  `embedding.png`, a 2-D map of features coloured by label.

Both write PNGs of a fixed size in pixels (`CURVES_SIZE`, `EMBEDDING_SIZE`).

Example:

>>> history = json.load(open("runs/digits/history.json"))
>>> plot_curves(history, "runs/digits/curves.png", {"raw pixels, kNN": 0.967})
"""

import math

import numpy as np

DPI = 100
CURVES_SIZE = (1200, 450)  # width, height in pixels
EMBEDDING_SIZE = (800, 800)
# Logged accuracies (the right panel); every other number is a loss term.
ACCURACY_SUFFIXES = ("_top1", "_top5")
_NOT_PLOTTED = ("learning_rate",)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display needed, on any machine
    import matplotlib.pyplot as plt

    return plt


def _series(values):
    """(epochs, values) of a history entry, skipping epochs without a value."""
    points = [(i + 1, v) for i, v in enumerate(values)
              if v is not None and math.isfinite(float(v))]
    return [p[0] for p in points], [float(p[1]) for p in points]


def plot_curves(history, path, baselines=None):
    """Writes `path` (PNG, `CURVES_SIZE`) from a `history.json` dict of
    `name -> per-epoch values` (None where an epoch has none).

    `baselines` maps a label to an accuracy drawn as a dashed line (such
    as the raw pixels' kNN top-1)."""
    plt = _pyplot()
    figure, (loss_axes, accuracy_axes) = plt.subplots(
        1, 2, figsize=(CURVES_SIZE[0] / DPI, CURVES_SIZE[1] / DPI), dpi=DPI
    )
    accuracies = sorted(k for k in history if k.endswith(ACCURACY_SUFFIXES))
    terms = sorted(k for k in history if k not in accuracies and k not in _NOT_PLOTTED)
    # The total first, drawn thicker: the terms are its parts.
    for name in sorted(terms, key=lambda k: k != "loss"):
        epochs, values = _series(history[name])
        loss_axes.plot(epochs, values, marker=".", label=name,
                       linewidth=2.5 if name == "loss" else 1.2)
    loss_axes.set(title="Loss terms", xlabel="epoch")
    for name in accuracies:
        epochs, values = _series(history[name])
        accuracy_axes.plot(epochs, values, marker="o", label=name,
                           linestyle="-" if name.endswith("_top1") else ":")
    for i, (label, value) in enumerate(sorted((baselines or {}).items())):
        accuracy_axes.axhline(value, linestyle="--", linewidth=1, color=f"C{(i + 5) % 10}",
                              label=f"{label} {value:.3f}")
    accuracy_axes.set(title="Accuracy on the test split", xlabel="epoch", ylim=(0.0, 1.0))
    for axes in (loss_axes, accuracy_axes):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, loc="best")
        axes.grid(alpha=0.3)
    if not accuracies and not baselines:
        accuracy_axes.text(0.5, 0.5, "no probe or kNN logged", ha="center",
                           transform=accuracy_axes.transAxes)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, format="png")
    plt.close(figure)
    return path


def plot_embedding(points, labels, path, title="", class_names=None):
    """Writes `path` (PNG, `EMBEDDING_SIZE`): `points (N, 2)` coloured by
    integer `labels (N,)`, with a legend of `class_names` (or the label
    values) for up to 20 classes."""
    points = np.asarray(points, dtype="float32")
    labels = np.asarray(labels).reshape(-1)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(
            f"expected (N, 2) points and N labels; got {points.shape} and {labels.shape}"
        )
    plt = _pyplot()
    figure, axes = plt.subplots(
        figsize=(EMBEDDING_SIZE[0] / DPI, EMBEDDING_SIZE[1] / DPI), dpi=DPI
    )
    classes = np.unique(labels)
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20
                           else "turbo")
    for i, label in enumerate(classes):
        chosen = labels == label
        name = class_names[int(label)] if class_names is not None else str(label)
        colour = colours(i if len(classes) <= 20 else i / max(len(classes) - 1, 1))
        axes.scatter(points[chosen, 0], points[chosen, 1], s=4, color=colour, label=name,
                     alpha=0.8, linewidths=0)
    if len(classes) <= 20:
        axes.legend(markerscale=4, fontsize=8, loc="best")
    axes.set(title=title, xticks=[], yticks=[])
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, format="png")
    plt.close(figure)
    return path
