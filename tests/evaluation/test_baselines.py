"""The raw-pixel and random-init baselines, against NumPy / scikit-learn
restatements of the same protocols."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mvmr_keras import data
from mvmr_keras.evaluation import baselines
from mvmr_keras.models.encoder import NORMALIZATION_STATS


def _numpy_pixels(images, normalization="imagenet"):
    mean, std = (np.asarray(s, "float64") for s in NORMALIZATION_STATS[normalization])
    return ((images / 255.0 - mean) / std).reshape(len(images), -1)


def test_pixel_encoder_is_normalised_flattened_pixels():
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3)).astype("uint8")
    features = baselines.pixel_encoder(8, "cifar").predict(images.astype("float32"), verbose=0)
    assert features.shape == (3, 8 * 8 * 3)
    np.testing.assert_allclose(features, _numpy_pixels(images, "cifar"), rtol=1e-5, atol=1e-5)


def test_pixel_encoder_unknown_normalization():
    with pytest.raises(ValueError, match="Unknown normalization 'bogus'"):
        baselines.pixel_encoder(8, "bogus")


def _knn_reference(train, train_labels, test, k=20, temperature=0.07):
    """Weighted cosine kNN in float64, one query at a time."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    correct = 0
    for query, label in zip(*test):
        sim = train @ (query / np.linalg.norm(query))
        nearest = np.argsort(-sim)[:k]
        votes = np.zeros(10)
        np.add.at(votes, train_labels[nearest], np.exp(sim[nearest] / temperature))
        correct += int(np.argmax(votes) == label)
    return correct / len(test[1])


def test_pixel_scores_on_digits_match_sklearn_and_numpy():
    train, test = data.load_digits("train"), data.load_digits("test")
    # A stratified quarter of the test split keeps the float64 kNN quick.
    test = (test[0][::4], test[1][::4])
    found = baselines.pixel_scores(train, test, image_size=32, cache_dir="")
    train_pixels, test_pixels = _numpy_pixels(train[0]), _numpy_pixels(test[0])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    reference = probe.fit(train_pixels, train[1]).score(test_pixels, test[1])
    assert found["linear_probe_top1"] == pytest.approx(reference, abs=1 / len(test[1]) + 1e-9)
    assert found["knn_top1"] == pytest.approx(
        _knn_reference(train_pixels, train[1], (test_pixels, test[1])), abs=1e-9)
    assert found["knn_top1"] > 0.9  # raw digits are easy: the bar a method must clear


def test_pixel_scores_resize_to_the_image_size():
    train, test = data.load_digits("train"), data.load_digits("test")
    small = baselines.pixel_scores(train, test, image_size=8)
    resized = baselines.resize_images(train[0][:2], 8)
    assert resized.shape == (2, 8, 8, 3) and resized.dtype == np.float32
    assert small["knn_top1"] > 0.9  # 8 px is the digits' own resolution


def test_pixel_scores_are_cached_by_data_and_settings(tmp_path, monkeypatch):
    train, test = data.load_digits("train"), data.load_digits("test")
    train, test = (train[0][:300], train[1][:300]), (test[0][:100], test[1][:100])
    first = baselines.pixel_scores(train, test, image_size=8, cache_dir=str(tmp_path))
    assert len(list((tmp_path / "baselines").iterdir())) == 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("computed again although cached")

    monkeypatch.setattr(baselines, "frozen_scores", must_not_run)
    assert baselines.pixel_scores(train, test, image_size=8, cache_dir=str(tmp_path)) == first
    # Other images, labels or settings are another entry: computed, not reused.
    for other in (
        dict(train=(train[0][::-1], train[1][::-1])),
        dict(train=(train[0], (train[1] + 1) % 10)),
        dict(image_size=16),
        dict(knn_k=5),
    ):
        arguments = dict(dict(train=train, test=test, image_size=8, cache_dir=str(tmp_path)),
                         **other)
        with pytest.raises(AssertionError, match="computed again"):
            baselines.pixel_scores(**arguments)


def test_flat_results_and_summary_line():
    results = baselines.flat_results(
        {"linear_probe_top1": 0.9, "knn_top1": 0.8},
        {"linear_probe_top1": 0.4, "knn_top1": 0.3},
        {"linear_probe_top1": 0.95, "knn_top1": 0.97},
    )
    assert results == {
        "linear_probe_top1": 0.9, "knn_top1": 0.8,
        "random_init_linear_probe_top1": 0.4, "random_init_knn_top1": 0.3,
        "random_init_top1": 0.4,
        "pixels_linear_probe_top1": 0.95, "pixels_knn_top1": 0.97,
    }
    assert baselines.summary_line(results) == (
        "Linear probe top-1: 0.9000 (random init 0.4000, raw pixels 0.9500); "
        "kNN top-1: 0.8000 (random init 0.3000, raw pixels 0.9700)"
    )
    assert baselines.reference_lines(results) == {
        "raw pixels, linear probe": 0.95, "raw pixels, kNN": 0.97}
