"""`train(config, workdir)` end to end with the mokd method, on the bundled
digits: both teachers saved, scored and loadable on another backend."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND, REPO_ROOT, to_numpy
from mvmr_keras import training
from mvmr_keras.configs import mokd_digits, mokd_imagenet
from mvmr_keras.methods.mokd import MOKDMethod, model_config
from mvmr_keras.optimizers import DistillationAdamW, DistillationSGD

OTHER_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[BACKEND]


def _quiet(*args):
    pass


def tiny_mokd_config(**overrides):
    config = mokd_digits.get_config()
    config.backbone_width = 4
    config.mokd.second.backbone_width = 12
    config.mokd.thead_heads = 2
    config.mokd.out_dim = 32
    config.mokd.hidden_dim = 16
    config.mokd.bottleneck_dim = 8
    config.epochs = 1
    config.steps_per_epoch = 2
    config.batch_size = 16
    config.warmup_epochs = 0
    config.mokd.second.warmup_epochs = 0
    # The online probe and kNN monitor (tests/callbacks) are off here, where
    # time goes to two models, but for the test of mokd.monitor.
    config.evaluation.online_probe = False
    config.evaluation.knn_every_n_epochs = 0
    config.evaluation.epochs = 1
    config.evaluation.augmented_passes = 0
    config.update(overrides)
    return config


_LOAD_ON_OTHER_BACKEND = """
import sys, numpy as np, keras
import mvmr_keras
images = np.load(f"{sys.argv[1]}/images.npy")
for name in ("encoder", "encoder_vit"):
    encoder = keras.saving.load_model(f"{sys.argv[1]}/{name}.keras")
    np.save(f"{sys.argv[1]}/{name}_features.npy",
            np.asarray(keras.ops.convert_to_numpy(encoder.predict(images, verbose=0))))
"""


def test_train_saves_and_scores_both_teachers(tmp_path):
    workdir = str(tmp_path / "run")
    # The online probe and kNN monitor follow both teachers (mokd.monitor's default).
    config = tiny_mokd_config()
    config.evaluation.online_probe = True
    config.evaluation.knn_every_n_epochs = 1
    results = training.train(config, workdir, verbose=0, log=_quiet)
    for name in ("config.json", "history.json", "results.json", "model.keras", "encoder.keras",
                 "encoder_vit.keras", "curves.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    history = json.load(open(os.path.join(workdir, "history.json")))
    for name in ("resnet", "vit"):
        for term in ("loss", "self_mlp", "self_thead", "cross_mlp", "cafs", "teacher_entropy"):
            assert len(history[f"{name}_{term}"]) == 1
    # Both models scored, each beside its own random init and the pixels.
    saved = json.load(open(os.path.join(workdir, "results.json")))
    assert saved["method"] == "mokd" and saved["models"] == ["resnet", "vit"]
    for scores in (saved, saved["vit"]):
        for key in ("linear_probe_top1", "knn_top1", "random_init_knn_top1", "pixels_knn_top1"):
            assert 0 <= scores[key] <= 1, key
    assert saved["vit"]["random_init_knn_top1"] != saved["random_init_knn_top1"]
    run = json.load(open(os.path.join(workdir, "run.json")))
    assert set(run) >= {"random_init", "random_init_vit", "pixels"}
    assert results["vit"] == saved["vit"]
    # Each monitor scored its own teacher: at the last epoch, the same kNN as results.json's.
    assert history["knn_top1"][-1] == pytest.approx(saved["knn_top1"], abs=0.01)
    assert history["knn_vit_top1"][-1] == pytest.approx(saved["vit"]["knn_top1"], abs=0.01)
    for key in ("probe_top1", "probe_vit_top1"):
        assert 0 <= history[key][-1] <= 1
    checkpoint = os.path.join(workdir, "checkpoints", "epoch-00001")
    assert {"online_probe.keras", "online_probe_vit.keras"} <= set(os.listdir(checkpoint))
    # evaluate.py scores the second teacher too, its results beside the first's.
    from mvmr_keras import evaluation
    found = evaluation.evaluate("knn", os.path.join(workdir, "encoder_vit.keras"),
                                tiny_mokd_config(), verbose=0, log=_quiet, baselines=())
    assert os.path.exists(os.path.join(workdir, "results_knn_vit.json"))
    assert not os.path.exists(os.path.join(workdir, "results_knn.json"))
    # The same protocol as results.json's (evaluate.py streams its features:
    # an image or two may tie differently).
    assert found["top1"] == pytest.approx(saved["vit"]["knn_top1"], abs=0.02)
    # The encoders are the teachers; both load on another backend with the same features.
    resnet = keras.saving.load_model(os.path.join(workdir, "encoder.keras"))
    vit = keras.saving.load_model(os.path.join(workdir, "encoder_vit.keras"))
    assert resnet.backbone.name.startswith("resnet") and hasattr(vit.backbone, "patch_size")
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    for name in ("encoder", "encoder_vit"):
        os.link(os.path.join(workdir, f"{name}.keras"), tmp_path / f"{name}.keras")
    script = tmp_path / "load.py"
    script.write_text(_LOAD_ON_OTHER_BACKEND)
    env = dict(os.environ, KERAS_BACKEND=OTHER_BACKEND, PYTHONPATH=REPO_ROOT)
    subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, check=True,
                   capture_output=True, timeout=300)
    for name, encoder in (("encoder", resnet), ("encoder_vit", vit)):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}_features.npy"),
                                   to_numpy(encoder.predict(images, verbose=0)),
                                   rtol=1e-4, atol=1e-4)


def test_the_reference_optimisers_and_warmups():
    config = mokd_imagenet.get_config()
    method = MOKDMethod(config)
    steps = 5005  # ImageNet at batch 256
    optimizer = method.build_optimizer(steps)
    cnn, cnn_thead, vit = optimizer.optimizers
    assert isinstance(cnn, DistillationSGD) and isinstance(cnn_thead, DistillationSGD)
    assert isinstance(vit, DistillationAdamW)
    assert cnn.weight_decay_start == cnn.final_weight_decay == 1e-4 and not cnn.decay_all
    # The CNN's T-Head: SGD on the ViT's schedules, every tensor decayed.
    assert (cnn_thead.weight_decay_start, cnn_thead.final_weight_decay) == (0.04, 0.4)
    assert cnn_thead.decay_all and cnn_thead.momentum == 0.9
    assert (vit.weight_decay_start, vit.final_weight_decay) == (0.04, 0.4)
    peak = 10 * steps  # after the 10 warm-up epochs
    for o, lr in ((cnn, 0.1), (cnn_thead, 3e-4), (vit, 3e-4)):
        np.testing.assert_allclose(float(to_numpy(o._learning_rate(peak))), lr, rtol=1e-4)
        assert o.clipnorm == 3.0 and o.freeze_steps == steps
    assert method._optimizer_plan()[2][0] == ["vit", "vit_thead"]
    assert model_config(config, 1).backbone == "vit_small" and model_config(config, 0).backbone \
        == "resnet50"
    # Warm-ups: 50 epochs for the CNN's own losses, 30 for every other.
    from mvmr_keras.methods.mokd import _warmup_epochs
    assert _warmup_epochs(config.mokd.first.self_warmup_fraction, config.epochs) == 50
    assert _warmup_epochs(config.mokd.second.self_warmup_fraction, config.epochs) == 30
    assert _warmup_epochs(config.mokd.cross_warmup_fraction, config.epochs) == 30
    assert config.num_local_crops == 8 and config.mokd.thead_blocks == 3
    assert config.mokd.first.cross_weight == 1.0 and config.mokd.second.cross_weight == 0.1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.mokd.second.update(name="resnet"), "two different identifiers"),
        (lambda c: c.mokd.second.update(backbone="vgg"), "unknown backbone 'vgg' for mokd.second"),
        (lambda c: c.mokd.first.update(thead_schedule="theirs"), "thead_schedule must be one of"),
        (lambda c: c.mokd.second.update(optimizer="lamb"), "unknown optimizer 'lamb'"),
        (lambda c: c.update(local_crop_size=18), "local_crop_size 18 is not a multiple of"),
        (lambda c: c.mokd.update(thead_heads=5), "not divisible by mokd.thead_heads 5"),
        (lambda c: c.update(gradient_accumulation_steps=2), "not supported for mokd"),
        (lambda c: c.mokd.second.update(cross_weight=-1.0), "must be >= 0"),
        (lambda c: c.mokd.update(monitor=("vit", "cnn")), "mokd.monitor must be a list"),
        # The checks shared with DINO (methods/dino.py).
        (lambda c: c.mokd.update(teacher_momentum=1.5),
         "mokd.teacher_momentum must be in \\[0, 1\\]"),
        (lambda c: c.mokd.update(out_dim=0), "mokd.out_dim must be >= 1"),
        (lambda c: c.update(drop_path_rate=0.1), "ViT backbones; the first model \\(resnet18\\)"),
        (lambda c: c.mokd.second.update(drop_path_rate=1.0),
         "mokd.second: drop_path_rate must be in"),
    ],
)
def test_bad_configs_are_one_clear_line(change, message):
    config = mokd_digits.get_config()
    change(config)
    with pytest.raises(training.ConfigError, match=message):
        training.validate_config(config)
