"""Features on disk (`evaluation.feature_file`) and the protocols that read
them by rows: the same numbers as from arrays in memory, and nothing left
behind in the workdir."""

import os

import keras
import numpy as np
import pytest

from mvmr_keras import evaluation
from mvmr_keras.evaluation.feature_file import FeatureFile, chunks, mean_and_variance
from mvmr_keras.evaluation.features import compute_features
from mvmr_keras.evaluation.linear import predict_logits, train_linear_classifier
from mvmr_keras.configs import digits as digits_config


def written(path, rows, batch=7):
    features = FeatureFile(str(path))
    for start in range(0, len(rows), batch):
        features.append(rows[start:start + batch])
    return features.close()


def test_rows_read_back_like_an_array(tmp_path):
    rows = np.random.default_rng(0).normal(size=(50, 6)).astype("float32")
    features = written(tmp_path / "f.f32", rows)
    assert features.shape == (50, 6) and len(features) == 50
    np.testing.assert_array_equal(features[[40, 3, 3]], rows[[40, 3, 3]])
    np.testing.assert_array_equal(features[10:20], rows[10:20])
    np.testing.assert_array_equal(np.asarray(features), rows)
    np.testing.assert_array_equal(np.concatenate(list(chunks(features, 16))), rows)
    assert os.path.getsize(tmp_path / "f.f32") == rows.nbytes  # raw float32, nothing else
    features.delete()
    assert not os.path.exists(tmp_path / "f.f32")


def test_bad_rows_and_early_reads_are_refused(tmp_path):
    features = FeatureFile(str(tmp_path / "f.f32"))
    features.append(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rows of 4 features after rows of 3"):
        features.append(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="still being written"):
        features[0]
    features.close()


def test_mean_and_variance_over_views_match_numpy(tmp_path):
    rng = np.random.default_rng(1)
    views = [rng.normal(1000, 3, size=(300, 5)).astype("float32") for _ in range(3)]
    on_disk = [written(tmp_path / f"{i}.f32", v) for i, v in enumerate(views)]
    mean, variance = mean_and_variance(on_disk, size=64)
    whole = np.concatenate(views).astype("float64")
    np.testing.assert_allclose(mean, whole.mean(0), rtol=1e-6)
    np.testing.assert_allclose(variance, whole.var(0), rtol=1e-4)


def test_classifier_on_files_equals_classifier_on_arrays(tmp_path):
    rng = np.random.default_rng(2)
    views = rng.normal(size=(3, 120, 8)).astype("float32")
    labels = rng.integers(0, 4, 120)
    files = [written(tmp_path / f"{i}.f32", v) for i, v in enumerate(views)]
    from_arrays = train_linear_classifier(views, labels, 4, epochs=3, batch_size=32, seed=5)
    from_files = train_linear_classifier(files, labels, 4, epochs=3, batch_size=32, seed=5)
    for a, b in zip(from_arrays.get_weights(), from_files.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    test = written(tmp_path / "test.f32", views[0][:50])
    np.testing.assert_allclose(predict_logits(from_files, test, chunk_size=16),
                               predict_logits(from_arrays, views[0][:50]), rtol=1e-5, atol=1e-5)


def test_compute_features_to_a_file_equals_in_memory(tmp_path):
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                                keras.layers.Dense(4)])
    import tensorflow as tf

    images = np.random.default_rng(3).integers(0, 255, (20, 32, 32, 3)).astype("uint8")
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(20)))
    in_memory, labels = compute_features(encoder, ds, 32, batch_size=8)
    on_disk, disk_labels = compute_features(encoder, ds, 32, batch_size=8,
                                            path=str(tmp_path / "x.f32"))
    assert isinstance(on_disk, FeatureFile)
    np.testing.assert_array_equal(np.asarray(on_disk), in_memory)
    np.testing.assert_array_equal(disk_labels, labels)


def test_knn_bank_cap_uses_a_subset_and_the_workdir_keeps_no_features(encoder_path, tmp_path):
    config = digits_config.get_config()
    config.evaluation.knn_k = 10
    quiet = dict(verbose=0, log=lambda *a: None, baselines=("pixels",))
    whole = evaluation.evaluate("knn", encoder_path, config, str(tmp_path / "all"), **quiet)
    config.evaluation.knn_bank_size = 200
    capped = evaluation.evaluate("knn", encoder_path, config, str(tmp_path / "cap"), **quiet)
    assert whole["bank_size"] == whole["num_train"] == 1437
    assert capped["bank_size"] == 200 and capped["num_train"] == 1437
    # The capped bank is the fixed random subset of the config's seed.
    from mvmr_keras import data

    encoder = keras.saving.load_model(encoder_path)
    (train, train_y), (test, test_y) = [data.load_digits(split) for split in ("train", "test")]
    train_f, test_f = evaluation.extract_features(encoder, train), evaluation.extract_features(
        encoder, test)
    chosen = np.sort(np.random.default_rng(config.seed).permutation(len(train_f))[:200])
    expected = evaluation.knn_accuracy(train_f[chosen], train_y[chosen], test_f, test_y, k=10,
                                       num_classes=10)
    assert capped["top1"] == pytest.approx(expected["top1"], abs=1e-3)
    assert capped["top1"] != pytest.approx(whole["top1"], abs=1e-3)
    for run in ("all", "cap"):
        assert sorted(os.listdir(tmp_path / run)) == ["results_knn.json"]
