"""evaluate.py and `evaluation.evaluate`: every mode against independent
scikit-learn computations on the same frozen features, and bad input."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from conftest import BACKEND, REPO_ROOT
from mvmr_keras.configs import digits as digits_config
from mvmr_keras import data, evaluation
from mvmr_keras.evaluation import EvaluationError, extract_features
from mvmr_keras.evaluation.finetune import label_subset


def _config(**evaluation_overrides):
    config = digits_config.get_config()
    config.evaluation.update(evaluation_overrides)
    return config


def _run_cli(*args):
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    return subprocess.run(
        [sys.executable, "evaluate.py", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=600,
    )


def _frozen(encoder_path, split):
    images, labels = data.load_digits(split)
    encoder = keras.saving.load_model(encoder_path)
    return extract_features(encoder, images), labels


def test_linear_cli_matches_sklearn_logistic_regression(encoder_path, tmp_path):
    out = str(tmp_path)
    # No augmented passes: the classifier sees the very features sklearn does
    # (augmented crops shift a random encoder's features by a few points).
    run = _run_cli("--mode=linear", f"--encoder={encoder_path}",
                   "--config=configs/digits.py", f"--workdir={out}", "--quiet",
                   "--config.evaluation.augmented_passes=0", "--baselines=pixels")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| top1" in run.stdout and "results_linear.json" in run.stdout
    assert "| top1, pixels" in run.stdout  # the raw pixels, same protocol
    results = json.load(open(os.path.join(out, "results_linear.json")))
    assert results["backend"] == BACKEND and results["settings"]["epochs"] == 100

    train, test = _frozen(encoder_path, "train"), _frozen(encoder_path, "test")
    reference = evaluation.linear_probe_top1(*train, *test)
    assert abs(results["top1"] - reference) < 0.05, (results["top1"], reference)
    assert results["top1"] > 0.3 and results["top1"] <= results["top5"]
    # The saved head reproduces the reported top-1 on the original view.
    head = keras.saving.load_model(os.path.join(out, "linear_head.keras"))
    logits = head.predict(test[0], verbose=0)
    assert np.mean(np.argmax(logits, 1) == test[1]) == pytest.approx(results["top1"])


def test_linear_ten_crop_reports_both(encoder_path, tmp_path):
    results = evaluation.evaluate(
        "linear", encoder_path, _config(epochs=3, augmented_passes=1, ten_crop=True),
        str(tmp_path), verbose=0, log=lambda *a: None, baselines=(),
    )
    for key in ("top1", "top5", "ten_crop_top1", "ten_crop_top5"):
        assert 0 <= results[key] <= 1
    assert results["ten_crop_top1"] != results["top1"] or results["ten_crop_top5"] != results["top5"]


def test_ten_crops_are_corners_centre_and_mirrors():
    from mvmr_keras.evaluation.features import ten_crops

    images = np.arange(2 * 8 * 8 * 3, dtype="float32").reshape(2, 8, 8, 3)
    crops = np.asarray(ten_crops(images, 7))  # resized to 8: the image itself
    assert crops.shape == (2, 10, 7, 7, 3)
    np.testing.assert_allclose(crops[:, 0], images[:, :7, :7])
    np.testing.assert_allclose(crops[:, 3], images[:, 1:, 1:])
    np.testing.assert_allclose(crops[:, 5], images[:, :7, :7][:, :, ::-1])


def test_knn_mode_matches_direct_computation(encoder_path, tmp_path):
    results = evaluation.evaluate("knn", encoder_path, _config(knn_k=10), str(tmp_path),
                                  verbose=0, log=lambda *a: None, baselines=())
    (train, train_y), (test, test_y) = _frozen(encoder_path, "train"), _frozen(encoder_path, "test")
    # Independent: cosine similarities, top-10, exp(sim / 0.07) votes.
    t = train / np.linalg.norm(train, axis=1, keepdims=True)
    q = test / np.linalg.norm(test, axis=1, keepdims=True)
    sim = q @ t.T
    votes = np.zeros((len(q), 10))
    for i, row in enumerate(sim):
        for j in np.argsort(-row)[:10]:
            votes[i, train_y[j]] += np.exp(row[j] / 0.07)
    assert results["top1"] == pytest.approx(np.mean(votes.argmax(1) == test_y), abs=1e-3)
    assert os.path.exists(os.path.join(str(tmp_path), "results_knn.json"))


def _tiny_model_config(**evaluation_overrides):
    config = _config(**evaluation_overrides)
    config.backbone_width, config.backbone_depths = 4, (1, 1, 1, 1)
    config.projector = "32-32"
    return config


def test_knn_mode_reports_pixel_and_random_init_baselines(encoder_path, tmp_path):
    config = _tiny_model_config(knn_k=10)
    results = evaluation.evaluate("knn", encoder_path, config, str(tmp_path), verbose=0,
                                  log=lambda *a: None)
    found = results["baselines"]
    assert set(found) == {"pixels", "random_init"} and set(found["pixels"]) == {"top1", "top5"}
    # Independently: normalised pixels and the config's model at its seed.
    from mvmr_keras import training
    from mvmr_keras.models.encoder import NORMALIZATION_STATS

    mean, std = (np.asarray(s) for s in NORMALIZATION_STATS["imagenet"])
    (train, train_y), (test, test_y) = data.load_digits("train"), data.load_digits("test")

    def pixels(x):
        return ((x / 255.0 - mean) / std).reshape(len(x), -1)

    expected = evaluation.knn_accuracy(pixels(train), train_y, pixels(test), test_y, k=10)
    assert found["pixels"]["top1"] == pytest.approx(expected["top1"], abs=1e-6)
    assert found["pixels"]["top1"] > 0.9
    keras.utils.set_random_seed(config.seed)
    untrained = training.build_model(config).encoder
    expected = evaluation.knn_accuracy(extract_features(untrained, train), train_y,
                                       extract_features(untrained, test), test_y, k=10)
    assert found["random_init"]["top1"] == pytest.approx(expected["top1"], abs=1e-6)
    saved = json.load(open(os.path.join(str(tmp_path), "results_knn.json")))
    assert saved["baselines"] == found
    table = evaluation.protocols.results_table(results)
    row = next(line for line in table.splitlines() if "top1, pixels" in line)
    assert row.endswith(f"| {100 * found['pixels']['top1']:.2f}% |")


def test_unknown_baseline_is_refused_before_any_work(encoder_path, tmp_path):
    with pytest.raises(EvaluationError, match="unknown baseline 'sift'"):
        evaluation.evaluate("knn", encoder_path, _config(), str(tmp_path), verbose=0,
                            log=lambda *a: None, baselines=("sift",))


def test_embedding_mode_writes_the_map_and_projector_files(encoder_path, tmp_path):
    import PIL.Image

    from mvmr_keras import plots

    config = _config()
    config.evaluation.embedding_points = 120
    results = evaluation.evaluate("embedding", encoder_path, config, str(tmp_path), verbose=0,
                                  log=lambda *a: None)
    assert results["num_points"] == 120 and "baselines" not in results
    with PIL.Image.open(os.path.join(str(tmp_path), "embedding.png")) as image:
        assert image.format == "PNG" and image.size == plots.EMBEDDING_SIZE
    projector = os.path.join(str(tmp_path), "projector")
    tensors = np.loadtxt(os.path.join(projector, "tensors.tsv"))
    labels = np.loadtxt(os.path.join(projector, "metadata.tsv"), dtype=int)
    assert tensors.shape == (120, 128) and labels.shape == (120,)  # width 16: 8 * 16
    # The rows are the encoder's features of the test images they label.
    images, test_labels = data.load_digits("test")
    features = extract_features(keras.saving.load_model(encoder_path), images)
    nearest = np.argmin(((features[None] - tensors[:, None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(test_labels[nearest], labels)


def test_label_subset_is_class_balanced():
    labels = np.repeat(np.arange(5), [100, 50, 10, 3, 200])
    subset = label_subset(labels, 0.1, seed=0)
    counts = np.bincount(labels[subset], minlength=5)
    assert counts.tolist() == [10, 5, 1, 1, 20]
    assert len(np.unique(subset)) == len(subset)


def test_finetune_mode_trains_the_encoder(encoder_path, tmp_path):
    config = _config(label_fraction=0.2, finetune_epochs=6, finetune_learning_rate=3e-3,
                     finetune_batch_size=32)
    results = evaluation.evaluate("finetune", encoder_path, config, str(tmp_path),
                                  verbose=0, log=lambda *a: None)
    assert results["num_labelled"] == len(label_subset(data.load_digits("train")[1], 0.2))
    assert results["top1"] > 0.5, results  # fine-tuned, well above chance
    assert results["top1"] <= results["top5"]
    # The saved encoder file is untouched by fine-tuning in memory.
    saved = json.load(open(os.path.join(str(tmp_path), "results_finetune.json")))
    assert saved["top1"] == results["top1"]


def _synthetic_multilabel(n, seed, num_classes=20):
    """Like voc2007: (uint8 image, multi-hot float32 (20,)); class c lights
    up tile c of a 4 x 5 grid."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    targets = (rng.random((n, num_classes)) < 0.2).astype("float32")
    images = rng.integers(0, 40, (n, 32, 40, 3)).astype("uint8")  # not square: resized
    for c in range(num_classes):
        y, x = divmod(c, 5)
        images[targets[:, c] > 0, 8 * y:8 * y + 8, 8 * x:8 * x + 8] = 230
    return tf.data.Dataset.from_tensor_slices((images, targets))


def test_voc07_mode_map_matches_sklearn(encoder_path, tmp_path, monkeypatch):
    splits = {"trainval": _synthetic_multilabel(400, 0), "test": _synthetic_multilabel(200, 1)}
    monkeypatch.setattr(data, "load", lambda name, split, data_dir=None: splits[split])
    config = _config(epochs=30)
    config.probe_train_split, config.test_split = "trainval", "test"
    results = evaluation.evaluate("voc07", encoder_path, config, str(tmp_path),
                                  verbose=0, log=lambda *a: None, baselines=())
    assert len(results["per_class_ap"]) == 20

    # Independently: features of the resized images, the saved head, sklearn.
    import tensorflow as tf

    images, targets = [], []
    for x, y in splits["test"].as_numpy_iterator():
        images.append(tf.image.resize(x.astype("float32"), (32, 32)).numpy())
        targets.append(y)
    encoder = keras.saving.load_model(encoder_path)
    head = keras.saving.load_model(os.path.join(str(tmp_path), "voc07_head.keras"))
    scores = head.predict(extract_features(encoder, np.stack(images)), verbose=0)
    expected = average_precision_score(np.stack(targets), scores, average="macro")
    assert results["map"] == pytest.approx(expected, abs=1e-4)
    assert results["map"] > 0.35  # chance is about 0.2, the positive rate
    saved = json.load(open(os.path.join(str(tmp_path), "results_voc07.json")))
    assert saved["map"] == results["map"]


def test_voc07_mode_refuses_single_label_data(encoder_path, tmp_path):
    with pytest.raises(EvaluationError, match="multi-hot labels"):
        evaluation.evaluate("voc07", encoder_path, _config(), str(tmp_path), verbose=0,
                            log=lambda *a: None)


def test_a_config_whose_split_has_no_labels_is_refused(encoder_path, tmp_path, monkeypatch):
    import tensorflow as tf

    unlabelled = tf.data.Dataset.from_tensor_slices(
        (np.zeros((8, 32, 32, 3), "uint8"), -np.ones(8, "int64"))
    )
    monkeypatch.setattr(data, "load", lambda name, split, data_dir=None: unlabelled)
    with pytest.raises(EvaluationError, match="has no labels"):
        evaluation.evaluate("linear", encoder_path, _config(), str(tmp_path), verbose=0,
                            log=lambda *a: None)


def test_cli_refuses_a_file_that_is_not_a_keras_model(tmp_path):
    bogus = tmp_path / "encoder.keras"
    bogus.write_text("not a model")
    run = _run_cli("--mode=knn", f"--encoder={bogus}")
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "not a .keras archive" in last


def test_cli_refuses_an_image_size_the_encoder_cannot_take(encoder_path, tmp_path):
    run = _run_cli("--mode=knn", f"--encoder={encoder_path}", "--config.image_size=64",
                   f"--workdir={tmp_path}")
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last == ("error: the encoder takes 32x32 images but the config's image_size "
                    "is 64; set --config.image_size=32")


def test_missing_encoder_and_unknown_mode(tmp_path, encoder_path):
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluation.evaluate("knn", str(tmp_path / "none.keras"), _config(), verbose=0,
                            log=lambda *a: None)
    with pytest.raises(EvaluationError, match="unknown mode"):
        evaluation.evaluate("svm", encoder_path, _config(), verbose=0, log=lambda *a: None)
