"""The trainer distilling a tiny teacher through the cache on digits."""

import json
import os

import numpy as np

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


def test_two_cached_teachers_train_together(tiny_preset, tiny_dinov2_preset, tmp_path,
                                            monkeypatch):
    config = tiny_config(representations="", epochs=3, steps_per_epoch=10)
    config.teachers = [
        dict(name="clip", preset=tiny_preset, image_size=32, weight=1.0),
        dict(name="dino", preset=tiny_dinov2_preset, image_size=32, embedding="cls+mean",
             weight=1.0),
    ]
    config.evaluation.online_probe = False
    config.evaluation.knn_every_n_epochs = 0
    config.evaluation.after_training = ""
    workdir = str(tmp_path / "run")
    results = training.train(config, workdir, verbose=0, log=_quiet)
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert set(history) == {"loss", "mse", "std", "dcor_zz", "dcor_teacher_clip",
                            "dcor_teacher_dino"}
    # 30 steps raise the held-out dependence on each teacher (measured on
    # JAX: clip 0.199 -> 0.259, dino 0.187 -> 0.234).
    for name in ("clip", "dino"):
        before = results[f"teacher_dcor_heldout_init_{name}"]
        after = results[f"teacher_dcor_heldout_{name}"]
        assert 0 < before < after - 0.01 and after < 1, (name, before, after)

    # One cache per teacher and split; changing the dino teacher's preset
    # recomputes its caches only.
    from mvmr_keras import data
    from mvmr_keras.teachers import cache as cache_lib, distillation
    from mvmr_keras.teachers.testing import save_preset

    cache_root = os.path.join(workdir, "teacher_cache")
    before = {c: os.stat(os.path.join(cache_root, c, "chunk_000000.npy")).st_mtime_ns
              for c in os.listdir(cache_root)}
    assert len(before) == 4
    train_images, _ = data.load_digits("train")
    test_images, _ = data.load_digits("test")
    old = distillation.prepare(config, workdir, train_images, test_images, log=_quiet)
    built = []
    build = cache_lib.teacher_from_spec
    monkeypatch.setattr(cache_lib, "teacher_from_spec",
                        lambda spec: built.append(spec.name) or build(spec))
    config.teachers[1]["preset"] = save_preset("dinov2", tmp_path / "other_dinov2", seed=1)
    new = distillation.prepare(config, workdir, train_images, test_images, log=_quiet)
    assert built == ["dino"]
    after = os.listdir(cache_root)
    assert len(after) == 6 and set(before) < set(after)
    for directory, written in before.items():  # nothing rewritten
        path = os.path.join(cache_root, directory, "chunk_000000.npy")
        assert os.stat(path).st_mtime_ns == written
    np.testing.assert_array_equal(new.train_embeddings["clip"], old.train_embeddings["clip"])
    assert new.train_embeddings["dino"].shape == (len(train_images), 64)
    assert not np.allclose(new.train_embeddings["dino"], old.train_embeddings["dino"])


def test_bad_teachers_settings_are_one_line_config_errors(tiny_preset):
    import pytest

    cases = [
        (dict(preset=tiny_preset, weights=1.0), "unknown fields \\['weights'\\]"),
        (dict(image_size=32), "teachers\\[0\\] needs a preset"),
        (dict(preset=tiny_preset, weight=-1.0), "teachers\\[0\\].weight must be >= 0"),
        (dict(preset=tiny_preset, embedding="pooled"), "unknown teachers\\[0\\].embedding"),
        (dict(preset=tiny_preset, interpolation="area"),
         "unknown teachers\\[0\\].interpolation"),
    ]
    for entry, message in cases:
        config = tiny_config()
        config.teachers = [entry]
        with pytest.raises(training.ConfigError, match=message):
            training.validate_config(config)
    config = tiny_config()
    config.teachers = [dict(preset=tiny_preset), dict(preset=tiny_preset + "/")]
    with pytest.raises(training.ConfigError, match="names \\['tiny_clip0'\\] appear more than once"):
        training.validate_config(config)
    config.teachers = [dict(preset=tiny_preset)]
    config.teacher.preset = tiny_preset
    with pytest.raises(training.ConfigError, match="either teacher.preset .* or teachers"):
        training.validate_config(config)
