"""The trainer distilling a tiny teacher through the cache on digits."""

import json
import os

from tiny_training_config import tiny_config
from mvmr_keras import training


def _quiet(*args):
    pass


def test_train_with_a_cached_teacher(tiny_preset, tmp_path, monkeypatch):
    config = tiny_config(representations="")
    config.teacher.preset = tiny_preset
    config.teacher.image_size = 32
    config.evaluation.online_probe = False  # tested in tests/callbacks
    config.evaluation.knn_every_n_epochs = 0
    config.evaluation.after_training = ""
    workdir = str(tmp_path)
    results = training.train(config, workdir, verbose=0, log=_quiet)
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert set(history) == {"loss", "mse", "std", "dcor_zz", "dcor_teacher"}
    assert 0 < results["teacher_dcor_heldout"] < 1
    assert 0 < results["teacher_dcor_heldout_init"] < 1
    caches = sorted(os.listdir(os.path.join(workdir, "teacher_cache")))
    assert [c.split("-")[:2] for c in caches] == [["digits", "test"], ["digits", "train"]]
    # Read back, never recomputed: building a teacher now would fail.
    from mvmr_keras import data
    from mvmr_keras.teachers import cache as cache_lib, distillation

    chunk = os.path.join(workdir, "teacher_cache", caches[1], "chunk_000000.npy")
    written = os.stat(chunk).st_mtime_ns

    def no_teacher(config):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(cache_lib, "teacher_from_config", no_teacher)
    train_images, _ = data.load_digits("train")
    test_images, _ = data.load_digits("test")
    setup = distillation.prepare(config, workdir, train_images, test_images, log=_quiet)
    assert setup.teacher is None and setup.train_embeddings.shape == (len(train_images), 16)
    assert os.stat(chunk).st_mtime_ns == written
