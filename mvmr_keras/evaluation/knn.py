"""Weighted k-nearest-neighbour classification of frozen features.

The common self-supervised practice (instance discrimination, DINO): L2-
normalise the features, take each query's `k` most cosine-similar training
examples, and let each vote for its label with weight `exp(sim / T)`. The
class scores are the summed votes.

Example:

>>> scores = knn_scores(train_features, train_labels, test_features, k=20)
>>> top_k_accuracy(scores, test_labels, 1)
0.97
"""

import numpy as np


def l2_normalize(features, eps=1e-12):
    features = np.asarray(features, dtype="float32")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, eps)


def knn_scores(train_features, train_labels, query_features, k=20, temperature=0.07,
               num_classes=None, chunk_size=1024):
    """Class scores `(Q, C)` of weighted kNN voting (module docstring).

    Args:
        train_features: `(N, D)` features of the labelled bank.
        train_labels: `(N,)` integer labels in `[0, num_classes)`.
        query_features: `(Q, D)` features to classify.
        k: neighbours per query (at most N).
        temperature: `T` in the vote weight `exp(sim / T)`.
        num_classes: default `max(train_labels) + 1`.
        chunk_size: queries per similarity block (bounds memory at
            `chunk_size * N` floats).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    train_labels = np.asarray(train_labels).astype("int64").reshape(-1)
    if len(train_labels) != len(train_features):
        raise ValueError(
            f"{len(train_features)} training features but {len(train_labels)} labels"
        )
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    bank = l2_normalize(train_features)  # in memory: cap it (evaluation.knn_bank_size)
    k = min(k, len(bank))
    scores = np.zeros((len(query_features), num_classes), dtype="float64")
    for start in range(0, len(query_features), chunk_size):
        # Queries a chunk at a time: an array or a FeatureFile on disk.
        sim = l2_normalize(query_features[start:start + chunk_size]) @ bank.T
        neighbours = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        neighbour_sim = np.take_along_axis(sim, neighbours, axis=1).astype("float64")
        # exp((s - 1) / T): the same ranking as exp(s / T), without overflow.
        weights = np.exp((neighbour_sim - 1.0) / temperature)
        rows = np.repeat(np.arange(len(sim)), k)
        np.add.at(scores[start:start + chunk_size], (rows, train_labels[neighbours].ravel()),
                  weights.ravel())
    return scores


def knn_accuracy(train_features, train_labels, test_features, test_labels, k=20,
                 temperature=0.07, num_classes=None):
    """`{"top1": ..., "top5": ...}` in [0, 1] of weighted kNN."""
    from mvmr_keras.evaluation.metrics import top_k_accuracy

    if num_classes is None:
        num_classes = int(max(np.max(train_labels), np.max(test_labels))) + 1
    scores = knn_scores(train_features, train_labels, test_features, k, temperature,
                        num_classes)
    return {
        "top1": top_k_accuracy(scores, test_labels, 1),
        "top5": top_k_accuracy(scores, test_labels, 5),
    }
