"""`train(config, workdir)` end to end with the dino method, on the bundled digits."""

import json
import os

import keras
import numpy as np
import pytest

from conftest import BACKEND, to_numpy
from mvmr_keras import training
from mvmr_keras.configs import dino_digits


def _quiet(*args):
    pass


def tiny_dino_config(**overrides):
    config = dino_digits.get_config()
    config.backbone_width = 4
    config.backbone_depths = (1, 1, 1, 1)
    config.num_local_crops = 2
    config.dino.out_dim = 32
    config.dino.hidden_dim = 16
    config.dino.bottleneck_dim = 8
    config.dino.warmup_teacher_temperature_epochs = 1
    config.epochs = 2
    config.steps_per_epoch = 2
    config.batch_size = 16
    config.warmup_epochs = 1
    config.evaluation.knn_every_n_epochs = 1
    config.evaluation.epochs = 2
    config.evaluation.augmented_passes = 0
    config.update(overrides)
    return config


class _InterruptAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_train_writes_the_teachers_encoder_and_resumes(tmp_path):
    workdir = str(tmp_path)
    config = tiny_dino_config()
    with pytest.raises(KeyboardInterrupt, match="resume from epoch 2"):
        training.train(config, workdir, verbose=0, log=_quiet, callbacks=[_InterruptAtEpoch(1)])
    results = training.train(config, workdir, verbose=0, log=_quiet)
    for name in ("config.json", "history.json", "results.json", "model.keras", "encoder.keras",
                 "curves.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    history = json.load(open(os.path.join(workdir, "history.json")))
    assert set(history) == {"loss", "teacher_entropy", "teacher_marginal_entropy",
                            "teacher_temperature", "probe_top1", "probe_top5", "knn_top1",
                            "knn_top5"}
    assert all(len(v) == 2 and None not in v for v in history.values())
    assert 0 < history["teacher_entropy"][-1] < np.log(32)
    saved = json.load(open(os.path.join(workdir, "results.json")))
    assert saved["method"] == "dino" and saved["backend"] == BACKEND
    assert saved["knn_top1"] == results["knn_top1"] and 0 <= saved["knn_top1"] <= 1
    assert saved["pixels_knn_top1"] > 0.9 and 0 <= saved["random_init_knn_top1"] <= 1

    # The resumed run went on from the checkpoint: the step counter (and so
    # the schedules) counts both sessions' steps.
    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    assert int(to_numpy(model.step_counter)) == 4
    # encoder.keras is the teacher's encoder, at both crop sizes.
    encoder = keras.saving.load_model(os.path.join(workdir, "encoder.keras"))
    for size in (32, 16):
        images = np.random.default_rng(0).uniform(0, 255, (3, size, size, 3)).astype("float32")
        np.testing.assert_allclose(to_numpy(encoder.predict(images, verbose=0)),
                                   to_numpy(model.teacher.predict(images, verbose=0)),
                                   rtol=1e-5, atol=1e-5)
    assert keras.config.dtype_policy().name == "float32"
