"""Classification metrics in NumPy: top-k accuracy and (mean) average precision.

Example:

>>> scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
>>> top_k_accuracy(scores, np.array([2, 0]), k=1)
0.5
>>> top_k_accuracy(scores, np.array([2, 0]), k=2)
1.0
"""

import numpy as np


def top_k_accuracy(scores, labels, k=1):
    """Fraction in [0, 1] of rows whose label is among the `k` highest scores.

    `scores` is `(N, C)` (logits, probabilities or votes: only the order
    matters), `labels` `(N,)` integers. Ties count against the label (a
    label scoring the same as the k-th is not "in" unless it sorts there).
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).astype("int64").reshape(-1)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(
            f"scores must be (N, C) and labels (N,); got {scores.shape} and {labels.shape}"
        )
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def average_precision(scores, targets):
    """Non-interpolated average precision of one class.

    `scores` `(N,)` ranks the examples, `targets` `(N,)` is 1 for the
    positives. AP = sum over positives, in decreasing score order, of the
    precision at that positive's rank, divided by the number of positives;
    tied scores are one threshold (all of them enter the ranking together).
    NaN when the class has no positive.
    """
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    targets = np.asarray(targets).reshape(-1) > 0.5
    num_positives = int(targets.sum())
    if num_positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, targets = scores[order], targets[order]
    true_positives = np.cumsum(targets)
    # The last index of each run of tied scores is one threshold.
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tp = true_positives[last_of_tie]
    seen = np.flatnonzero(last_of_tie) + 1
    precision = tp / seen
    recall_gain = np.diff(np.r_[0, tp]) / num_positives
    return float(np.sum(precision * recall_gain))


def mean_average_precision(scores, targets):
    """Mean over classes (columns) of `average_precision`, skipping classes
    without positives. Returns `(mAP, per-class APs)`."""
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(
            f"scores and targets must both be (N, C); got {scores.shape} and {targets.shape}"
        )
    per_class = np.array(
        [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    )
    if np.all(np.isnan(per_class)):
        raise ValueError("no class has a positive example; mAP is undefined")
    return float(np.nanmean(per_class)), per_class
