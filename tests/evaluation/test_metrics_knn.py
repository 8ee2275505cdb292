"""Top-k accuracy, average precision and weighted kNN against independent
scikit-learn / NumPy computations."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, top_k_accuracy_score
from sklearn.neighbors import NearestNeighbors

from mvmr_keras.evaluation import (
    average_precision,
    knn_accuracy,
    knn_scores,
    mean_average_precision,
    top_k_accuracy,
)


def test_top_k_accuracy_matches_sklearn():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 10))
    labels = rng.integers(0, 10, 200)
    for k in (1, 3, 5):
        expected = top_k_accuracy_score(labels, scores, k=k, labels=np.arange(10))
        assert top_k_accuracy(scores, labels, k) == pytest.approx(expected)


def test_average_precision_matches_sklearn_including_ties():
    rng = np.random.default_rng(1)
    for trial in range(20):
        targets = rng.random(100) < 0.3
        scores = rng.normal(size=100) + targets
        if trial % 2:
            scores = np.round(scores, 1)  # many ties
        assert average_precision(scores, targets) == pytest.approx(
            average_precision_score(targets, scores), abs=1e-12
        )


def test_mean_average_precision_over_classes_matches_sklearn_macro():
    rng = np.random.default_rng(2)
    targets = (rng.random((150, 20)) < 0.15).astype("float32")
    targets[0] = 1  # every class has a positive
    scores = rng.normal(size=(150, 20)) + 2 * targets
    mean_ap, per_class = mean_average_precision(scores, targets)
    assert mean_ap == pytest.approx(average_precision_score(targets, scores, average="macro"))
    assert per_class.shape == (20,)


def _reference_knn_scores(bank, bank_labels, queries, k, temperature, num_classes):
    """Straightforward: sklearn's exact cosine neighbours, exp(sim / T) votes."""
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(bank)
    distances, indices = nn.kneighbors(queries)
    scores = np.zeros((len(queries), num_classes))
    for q in range(len(queries)):
        for d, i in zip(distances[q], indices[q]):
            scores[q, bank_labels[i]] += np.exp((1.0 - d) / temperature)
    return scores


@pytest.mark.parametrize("k,temperature", [(20, 0.07), (5, 0.5), (1, 0.07)])
def test_weighted_knn_matches_a_direct_computation(k, temperature):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(5, 16))
    bank_labels = rng.integers(0, 5, 300)
    bank = centres[bank_labels] + rng.normal(scale=1.5, size=(300, 16))
    query_labels = rng.integers(0, 5, 80)
    queries = centres[query_labels] + rng.normal(scale=1.5, size=(80, 16))

    ours = knn_scores(bank, bank_labels, queries, k=k, temperature=temperature,
                      num_classes=5, chunk_size=7)
    reference = _reference_knn_scores(bank, bank_labels, queries, k, temperature, 5)
    # knn_scores scales every vote by exp(-1 / T) to avoid overflow.
    np.testing.assert_allclose(ours * np.exp(1.0 / temperature), reference, rtol=1e-4)

    result = knn_accuracy(bank, bank_labels, queries, query_labels, k=k,
                          temperature=temperature)
    expected_top1 = np.mean(np.argmax(reference, axis=1) == query_labels)
    assert result["top1"] == pytest.approx(expected_top1)
    assert 0.5 < result["top1"] <= result["top5"] == 1.0  # 5 classes: top-5 is all


def test_knn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k must be >= 1"):
        knn_scores(np.ones((3, 2)), [0, 1, 0], np.ones((1, 2)), k=0)
    with pytest.raises(ValueError, match="temperature"):
        knn_scores(np.ones((3, 2)), [0, 1, 0], np.ones((1, 2)), temperature=0)
