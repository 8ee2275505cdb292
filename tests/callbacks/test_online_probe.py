"""OnlineLinearProbe and KNNMonitor inside `fit`, on every backend."""

import os

import keras
import numpy as np
import pytest

from conftest import tiny_model, to_numpy
from mvmr_keras import data
from mvmr_keras.callbacks import KNNMonitor, OnlineLinearProbe
from mvmr_keras.evaluation import extract_features, knn_accuracy


@pytest.fixture(scope="module")
def digits():
    return data.load_digits("train"), data.load_digits("test")


def _encoder_state(model):
    """Every encoder variable, trainable or not (BatchNorm moving stats)."""
    return {v.path: to_numpy(v).copy() for v in model.encoder.variables}


def test_probe_updates_never_change_the_encoder(digits):
    train, test = digits
    model = tiny_model()
    moving = [v for v in model.encoder.non_trainable_variables if "moving" in v.path]
    assert moving, "the encoder must have BatchNorm moving statistics to check"
    before = _encoder_state(model)
    probe = OnlineLinearProbe(train, test, learning_rate=1e-2, batch_size=64)
    probe.set_model(model)
    probe.on_train_begin()
    probe_before = None
    losses = []
    for step in range(8):
        losses.append(probe.probe_step())
        if probe_before is None:
            probe_before = [to_numpy(v).copy() for v in probe.probe.trainable_variables]
    probe.on_epoch_end(0, {})
    after = _encoder_state(model)
    assert before.keys() == after.keys()
    for path in before:
        np.testing.assert_array_equal(before[path], after[path], err_msg=path)
    # ...while the probe itself did train.
    changed = [not np.array_equal(a, to_numpy(b))
               for a, b in zip(probe_before, probe.probe.trainable_variables)]
    assert all(changed)
    # Sanity of the check: the same batch in training mode moves the stats.
    model.encoder(train[0][:64].astype("float32"), training=True)
    assert any(not np.array_equal(before[v.path], to_numpy(v)) for v in moving)


def test_probe_learns_during_fit_and_its_logs_reach_history_and_monitors(digits, tmp_path):
    train, test = digits
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = data.views(train[0], "custom", image_size=32, batch_size=64, seed=0).repeat()
    probe = OnlineLinearProbe(train, test, learning_rate=5e-2, batch_size=64)
    checkpoint = os.path.join(str(tmp_path), "best.weights.h5")
    history = model.fit(
        ds, epochs=3, steps_per_epoch=10, verbose=0,
        callbacks=[
            probe,
            keras.callbacks.ModelCheckpoint(checkpoint, monitor="probe_top1", mode="max",
                                            save_best_only=True, save_weights_only=True),
        ],
    ).history
    top1 = history["probe_top1"]
    assert len(top1) == 3 and len(history["probe_top5"]) == 3
    assert top1[-1] > top1[0] + 0.1, top1  # it learns...
    assert top1[-1] > 0.3, top1  # ...to three times chance (10%)
    assert all(t1 <= t5 for t1, t5 in zip(top1, history["probe_top5"]))
    assert os.path.exists(checkpoint)  # ModelCheckpoint read probe_top1

    # The logged number is the probe's accuracy on the test set, recomputed.
    logits = probe.probe.predict(extract_features(model.encoder, test[0]), verbose=0)
    assert np.mean(np.argmax(logits, 1) == test[1]) == pytest.approx(top1[-1], abs=1e-6)


def test_early_stopping_reads_probe_top1():
    train, test = data.load_digits("train"), data.load_digits("test")
    model = tiny_model()
    model.compile(optimizer="adam")
    ds = data.views(train[0][:128], "custom", image_size=32, batch_size=32, seed=0).repeat()
    # Improving needs +2 in accuracy: never, once the first epoch set the best.
    stopper = keras.callbacks.EarlyStopping(monitor="probe_top1", mode="max",
                                            min_delta=2.0, patience=0)
    history = model.fit(
        ds, epochs=5, steps_per_epoch=2, verbose=0,
        callbacks=[OnlineLinearProbe((train[0][:64], train[1][:64]), (test[0][:64], test[1][:64]),
                                     num_classes=10, batch_size=32), stopper],
    ).history
    # So training stops at the first epoch EarlyStopping may stop at (the
    # second), if and only if it saw probe_top1 (a missing monitor only
    # warns, and all 5 epochs run).
    assert len(history["loss"]) == 2 and stopper.stopped_epoch == 1


def test_probe_takes_a_labelled_tf_dataset_of_views():
    train, test = data.load_digits("train"), data.load_digits("test")
    labelled = data.views(data.load("digits", "train"), "custom", image_size=32,
                          batch_size=32, seed=0, labels=True)
    probe = OnlineLinearProbe(labelled, data.load("digits", "test").take(50), batch_size=32)
    model = tiny_model()
    probe.set_model(model)
    probe.on_train_begin()
    probe.probe_step()
    scores = probe.scores()
    assert set(scores) == {"probe_top1", "probe_top5"}
    assert probe._validation[0].shape == (50, 32, 32, 3)


def test_probe_checkpoint_restores_weights_and_optimiser_state(digits, tmp_path):
    train, test = digits
    small = (train[0][:64], train[1][:64]), (test[0][:32], test[1][:32])
    path = str(tmp_path / "probe.keras")
    model = tiny_model()
    probe = OnlineLinearProbe(*small, learning_rate=1e-2, batch_size=32, checkpoint_path=path)
    probe.set_model(model)
    probe.on_train_begin()
    for _ in range(3):
        probe.probe_step()
    logs = {}
    probe.on_epoch_end(0, logs)
    assert os.path.exists(path) and not os.path.exists(str(tmp_path / "probe.partial.keras"))
    weights = [to_numpy(v).copy() for v in probe.probe.weights]

    # A new callback on the same path (a resumed run) starts from the saved
    # probe: same weights, same Adam step count and moments, same scores.
    resumed = OnlineLinearProbe(*small, learning_rate=1e-2, batch_size=32, checkpoint_path=path)
    resumed.set_model(model)
    resumed.on_train_begin()
    for a, b in zip(weights, resumed.probe.weights):
        np.testing.assert_array_equal(a, to_numpy(b))
    assert int(to_numpy(resumed.probe.optimizer.iterations)) == 3
    for a, b in zip(probe.probe.optimizer.variables, resumed.probe.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=a.path)
    assert resumed.scores() == {k: logs[k] for k in ("probe_top1", "probe_top5")}
    # ...and its next step is the step the first probe would have taken.
    probe._batches = resumed._batches = None
    probe.on_train_begin()
    resumed.on_train_begin()
    assert resumed.probe_step() == pytest.approx(probe.probe_step(), rel=1e-5)

    with pytest.raises(ValueError, match="end in .keras"):
        OnlineLinearProbe(*small, checkpoint_path=str(tmp_path / "probe.h5"))


def test_knn_monitor_logs_every_n_epochs_and_matches_offline_knn(digits):
    train, test = digits
    train = (train[0][:300], train[1][:300])
    model = tiny_model()
    model.compile(optimizer="adam")
    ds = data.views(train[0], "custom", image_size=32, batch_size=32, seed=0).repeat()
    monitor = KNNMonitor(train, test, every_n_epochs=2, k=10)
    logged = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logged.append(dict(logs))

    model.fit(ds, epochs=3, steps_per_epoch=2, verbose=0, callbacks=[monitor, Record()])
    assert ["knn_top1" in logs for logs in logged] == [False, True, True]  # 2nd, and last
    expected = knn_accuracy(extract_features(model.encoder, train[0]), train[1],
                            extract_features(model.encoder, test[0]), test[1], k=10)
    assert logged[-1]["knn_top1"] == pytest.approx(expected["top1"])
    assert logged[-1]["knn_top5"] == pytest.approx(expected["top5"])
    assert expected["top1"] > 0.3  # features of digits beat chance (10%)


def test_bad_arguments():
    with pytest.raises(ValueError, match="every_n_epochs"):
        KNNMonitor(None, None, every_n_epochs=0)
    with pytest.raises(ValueError, match="learning_rate"):
        OnlineLinearProbe(None, None, learning_rate=0)
