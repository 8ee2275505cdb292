"""The DINO model: EMA teacher inside the train step, no teacher gradient,
last layer frozen in epoch 0, the loss going down, the teacher's encoder
portable across backends."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND, REPO_ROOT, to_numpy
from mvmr_keras import ImageEncoder, ResNetBackbone
from mvmr_keras.models.dino import DINO
from mvmr_keras.models.dino_head import DINOHead
from mvmr_keras.optimizers import DistillationAdamW


def _encoder(name):
    backbone = ResNetBackbone.from_name("resnet18", width=4, stackwise_num_blocks=(1, 1, 1, 1),
                                        image_shape=(None, None, 3))
    return ImageEncoder(backbone, name=name)


def tiny_dino(**kwargs):
    kwargs.setdefault("steps_per_epoch", 2)
    kwargs.setdefault("total_steps", 100)
    model = DINO(_encoder("student"), _encoder("encoder"), DINOHead(64, 16, 8, name="sh"),
                 DINOHead(64, 16, 8, name="th"), **kwargs)
    model.build()
    return model


def multicrop_batch(n=8, num_local=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "global_crops": rng.uniform(0, 255, (n, 2, 32, 32, 3)).astype("float32"),
        "local_crops": rng.uniform(0, 255, (n, num_local, 16, 16, 3)).astype("float32"),
    }


def _values(variables):
    return [np.array(to_numpy(v)) for v in variables]


def test_teacher_starts_as_the_student_and_has_no_trainable_variable():
    model = tiny_dino()
    trainable = {id(v) for v in model.trainable_variables}
    for s, t in model.ema_pairs():
        np.testing.assert_array_equal(to_numpy(s), to_numpy(t))
        assert id(t) not in trainable and id(s) in trainable
    assert model.encoder is model.teacher
    # Its BatchNorm still uses batch statistics in training mode.
    assert model.teacher.backbone.get_layer("stem_bn").trainable


def test_after_one_step_the_teacher_is_the_ema_of_the_student():
    model = tiny_dino(teacher_momentum=0.5)  # m at step 0 is m0
    model.compile(optimizer=DistillationAdamW(1e-2, weight_decay=0.04))
    pairs = model.ema_pairs()
    teacher0 = _values(t for _, t in pairs)
    model.fit(multicrop_batch(8), batch_size=8, epochs=1, verbose=0)
    student1, teacher1 = _values(s for s, _ in pairs), _values(t for _, t in pairs)
    moved = 0
    for t0, s1, t1 in zip(teacher0, student1, teacher1):
        np.testing.assert_allclose(t1, 0.5 * t0 + 0.5 * s1, rtol=1e-5, atol=1e-6)
        moved += not np.allclose(t1, t0)
    assert moved > len(pairs) // 2
    assert int(to_numpy(model.step_counter)) == 1


def test_the_teacher_gets_no_gradient_only_the_ema():
    model = tiny_dino(teacher_momentum=1.0)  # m = 1: the EMA leaves it as it is
    model.compile(optimizer=DistillationAdamW(1e-2, weight_decay=0.04))
    pairs = model.ema_pairs()
    student0, teacher0 = _values(s for s, _ in pairs), _values(t for _, t in pairs)
    model.fit(multicrop_batch(16), batch_size=8, epochs=1, verbose=0)
    for t0, t1 in zip(teacher0, _values(t for _, t in pairs)):
        np.testing.assert_array_equal(t0, t1)
    assert any(not np.allclose(a, b) for a, b in zip(student0, _values(s for s, _ in pairs)))


def test_the_last_layer_does_not_move_in_epoch_0_and_moves_after():
    model = tiny_dino(steps_per_epoch=2)
    model.compile(optimizer=DistillationAdamW(1e-2, weight_decay=0.04, final_weight_decay=0.4,
                                              decay_steps=6, freeze_steps=2, clipnorm=3.0))
    last = model.student_head.last_layer_direction
    first = model.student_head.mlp[0].kernel
    last0, first0 = _values([last, first])
    data = multicrop_batch(16)
    model.fit(data, batch_size=8, epochs=1, verbose=0)  # epoch 0: 2 steps
    np.testing.assert_array_equal(to_numpy(last), last0)
    assert not np.allclose(to_numpy(first), first0)
    model.fit(data, batch_size=8, epochs=1, verbose=0)
    assert not np.allclose(to_numpy(last), last0)


def test_a_short_fit_lowers_the_loss_and_logs_the_teacher_entropy():
    # A constant teacher temperature: its warm-up softens the targets, which
    # raises the loss by itself.
    model = tiny_dino(steps_per_epoch=2, total_steps=6, teacher_temperature=0.04)
    model.compile(optimizer=DistillationAdamW(3e-3, weight_decay=0.04))
    history = model.fit(multicrop_batch(16), batch_size=8, epochs=3, verbose=0).history
    assert history["loss"][-1] < 0.7 * history["loss"][0], history["loss"]
    assert set(history) == {"loss", "teacher_entropy", "teacher_marginal_entropy",
                            "teacher_temperature"}
    assert all(0 < h < np.log(64) for h in history["teacher_entropy"])
    centre = to_numpy(model.centre)
    assert centre.shape == (64,) and np.abs(centre).max() > 0


def test_the_teacher_temperature_warms_up_per_epoch():
    model = tiny_dino(steps_per_epoch=1, warmup_teacher_temperature=0.04, teacher_temperature=0.07,
                      warmup_teacher_temperature_epochs=3)
    model.compile(optimizer=DistillationAdamW(1e-3, weight_decay=0.04))
    history = model.fit(multicrop_batch(8, num_local=0), batch_size=8, epochs=4, verbose=0).history
    np.testing.assert_allclose(history["teacher_temperature"], [0.04, 0.055, 0.07, 0.07], rtol=1e-5)


def test_the_centre_moves_after_the_loss_towards_the_teacher_mean():
    model = tiny_dino(center_momentum=0.9)
    data = multicrop_batch(8)
    outputs = model(data, training=True)
    before = to_numpy(model.centre)
    loss = model.compute_loss(y_pred=outputs, training=True)
    teacher = to_numpy(outputs["teacher"]).reshape(-1, 64)
    np.testing.assert_allclose(to_numpy(model.centre), 0.9 * before + 0.1 * teacher.mean(0),
                               rtol=1e-5, atol=1e-6)
    assert np.isfinite(float(to_numpy(loss)))


def test_the_whole_model_saves_and_loads(tmp_path):
    model = tiny_dino()
    model.compile(optimizer=DistillationAdamW(1e-3, weight_decay=0.04))
    model.fit(multicrop_batch(8), batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    images = multicrop_batch(2)["global_crops"][:, 0]
    np.testing.assert_allclose(to_numpy(again.predict(images, verbose=0)),
                               to_numpy(model.predict(images, verbose=0)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(again.centre), to_numpy(model.centre))


_LOAD_ON_OTHER_BACKEND = """
import sys, numpy as np, keras
import mvmr_keras
encoder = keras.saving.load_model(sys.argv[1])
for name in ("global", "local"):
    images = np.load(f"{sys.argv[2]}/{name}.npy")
    np.save(f"{sys.argv[2]}/{name}_features.npy",
            np.asarray(keras.ops.convert_to_numpy(encoder.predict(images, verbose=0))))
"""


@pytest.mark.parametrize("other_backend", [b for b in ("tensorflow", "jax", "torch") if b != BACKEND])
def test_the_teachers_encoder_gives_the_same_features_on_another_backend(tmp_path, other_backend):
    model = tiny_dino(teacher_momentum=0.5)
    model.compile(optimizer=DistillationAdamW(1e-2, weight_decay=0.04))
    data = multicrop_batch(8)
    model.fit(data, batch_size=8, epochs=1, verbose=0)  # trained teacher, BN statistics
    path = str(tmp_path / "encoder.keras")
    model.encoder.save(path)
    crops = {"global": data["global_crops"][:4, 0], "local": data["local_crops"][:4, 0]}
    for name, images in crops.items():
        np.save(tmp_path / f"{name}.npy", images)
    script = tmp_path / "load.py"
    script.write_text(_LOAD_ON_OTHER_BACKEND)
    env = dict(os.environ, KERAS_BACKEND=other_backend, PYTHONPATH=REPO_ROOT)
    subprocess.run([sys.executable, str(script), path, str(tmp_path)], env=env, check=True,
                   capture_output=True, timeout=300)
    for name, images in crops.items():
        expected = to_numpy(model.encoder.predict(images, verbose=0))
        got = np.load(tmp_path / f"{name}_features.npy")
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
