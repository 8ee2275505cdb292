import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from scipy.special import erf

from conftest import BACKEND, REPO_ROOT, to_numpy
from mvmr_keras.models import ImageEncoder, VisionTransformerBackbone
from mvmr_keras.models.vit import DropPath, bicubic_resize_matrix, bicubic_resize_matrix_ops


def tiny_vit(**kwargs):
    args = dict(image_size=32, patch_size=8, hidden_dim=16, num_layers=2, num_heads=2)
    return VisionTransformerBackbone(**{**args, **kwargs})


def _weights(layer):
    return {w.path.split("/", 1)[1]: to_numpy(w).astype("float64") for w in layer.weights}


def _torch_bicubic(grid, height, width):
    import torch

    x = torch.from_numpy(grid).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def _layer_norm(x, gamma, beta, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _reference_tokens(vit, images):
    """A float64 NumPy restatement of the ViT forward pass (inference),
    with PyTorch's bicubic interpolate resizing the position embedding."""
    w = {}
    for layer in vit.layers:
        for name, value in _weights(layer).items() if layer.weights else ():
            w[f"{layer.name}/{name}"] = value
    p, d = vit.patch_size, vit.hidden_dim
    b, h, wd, c = images.shape
    gh, gw = h // p, wd // p
    patches = images.reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, -1)
    kernel = w["patch_embedding/kernel"].reshape(-1, d)  # (p, p, c, d) row-major = patch order
    x = patches @ kernel + w["patch_embedding/bias"]
    pos = w["position_embedding/position_embedding"][0]
    g = vit.image_size // p
    grid = pos[1:].reshape(g, g, d)
    if (gh, gw) != (g, g):
        grid = _torch_bicubic(grid, gh, gw)
    cls = np.broadcast_to(w["position_embedding/class_token"], (b, 1, d))
    x = np.concatenate([cls, x], axis=1) + np.concatenate([pos[:1], grid.reshape(-1, d)])[None]
    for i in range(vit.num_layers):
        k = f"block{i + 1}/"
        y = _layer_norm(x, w[k + "norm1/gamma"], w[k + "norm1/beta"])
        q, kk, v = (
            np.einsum("bnd,dhe->bhne", y, w[k + f"attention/{n}/kernel"])
            + w[k + f"attention/{n}/bias"][None, :, None, :]
            for n in ("query", "key", "value")
        )
        scores = q @ kk.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (scores / scores.sum(-1, keepdims=True)) @ v  # (b, h, n, e)
        out = np.einsum("bhne,hed->bnd", attended, w[k + "attention/attention_output/kernel"])
        x = x + out + w[k + "attention/attention_output/bias"]
        y = _layer_norm(x, w[k + "norm2/gamma"], w[k + "norm2/beta"])
        y = y @ w[k + "mlp_in/kernel"] + w[k + "mlp_in/bias"]
        y = 0.5 * y * (1.0 + erf(y / np.sqrt(2.0)))  # exact GELU
        x = x + y @ w[k + "mlp_out/kernel"] + w[k + "mlp_out/bias"]
    return _layer_norm(x, w["norm/gamma"], w["norm/beta"])


@pytest.mark.parametrize("in_size, out_size", [(4, 2), (4, 3), (4, 6), (14, 6), (2, 5)])
def test_resize_matrix_is_pytorch_bicubic(in_size, out_size):
    grid = np.random.default_rng(0).normal(size=(in_size, in_size, 3))
    rows = bicubic_resize_matrix(in_size, out_size)
    cols = bicubic_resize_matrix(in_size, in_size + 1)
    ours = np.einsum("hg,wk,gkd->hwd", rows, cols, grid)
    np.testing.assert_allclose(ours, _torch_bicubic(grid, out_size, in_size + 1), atol=1e-12)
    np.testing.assert_allclose(bicubic_resize_matrix(in_size, in_size), np.eye(in_size), atol=1e-12)


@pytest.mark.parametrize("in_size, out_size", [(4, 2), (4, 4), (14, 6), (2, 5)])
def test_tensor_resize_matrix_equals_the_numpy_one(in_size, out_size):
    # Used when TensorFlow traces the grid size as unknown.
    got = to_numpy(bicubic_resize_matrix_ops(in_size, out_size))
    np.testing.assert_allclose(got, bicubic_resize_matrix(in_size, out_size), atol=1e-5)


def test_same_weights_at_two_sizes_match_a_numpy_restatement():
    vit = tiny_vit()
    rng = np.random.default_rng(1)
    for size in (32, 16):
        images = rng.normal(size=(3, size, size, 3)).astype("float32")
        features = to_numpy(vit(images))
        assert features.shape == (3, 16) and np.all(np.isfinite(features))
        want = _reference_tokens(vit, images.astype("float64"))
        np.testing.assert_allclose(features, want[:, 0], atol=2e-5)
        tokens = vit.tokens(images)
        np.testing.assert_allclose(to_numpy(tokens["patches"]), want[:, 1:], atol=2e-5)


def test_tokens_shapes_and_cls_is_the_call_output():
    vit = tiny_vit(patch_size=4)
    images = np.random.default_rng(2).normal(size=(2, 16, 24, 3)).astype("float32")
    tokens = vit.tokens(images)
    assert set(tokens) == {"cls", "patches"}
    assert tuple(tokens["cls"].shape) == (2, 16)
    assert tuple(tokens["patches"].shape) == (2, 4 * 6, 16)
    np.testing.assert_allclose(to_numpy(tokens["cls"]), to_numpy(vit(images)), atol=1e-6)


def test_drop_path_only_in_training():
    images = np.random.default_rng(3).normal(size=(8, 32, 32, 3)).astype("float32")
    vit = tiny_vit(drop_path_rate=0.5)
    inference = [to_numpy(vit(images, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    train = [to_numpy(vit(images, training=True)) for _ in range(2)]
    assert np.abs(train[0] - train[1]).max() > 1e-3
    assert np.abs(train[0] - inference[0]).max() > 1e-3
    # Rates rise linearly over the blocks from 0.
    assert [b.drop_path.rate for b in vit.blocks] == [0.0, 0.5]
    still = tiny_vit(drop_path_rate=0.0)
    np.testing.assert_allclose(to_numpy(still(images, training=True)), to_numpy(still(images)), atol=1e-6)


def test_drop_path_drops_whole_samples_and_rescales():
    layer = DropPath(0.25, seed=0)
    x = np.ones((4000, 3, 2), "float32")
    out = to_numpy(layer(x, training=True))
    per_sample = out.reshape(4000, -1)
    assert np.all(per_sample.min(1) == per_sample.max(1))  # whole samples
    np.testing.assert_allclose(np.unique(per_sample), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(to_numpy(layer(x)), x)


def test_student_and_teacher_rates_have_the_same_variables():
    student, teacher = tiny_vit(drop_path_rate=0.1), tiny_vit(drop_path_rate=0.0)
    # Seed generators are named by a global counter: compare the rest by path.
    def described(model):
        return [(v.path if "seed_generator" not in v.path else "seed", tuple(v.shape))
                for v in model.variables]

    assert described(student) == described(teacher)
    teacher.set_weights(student.get_weights())
    images = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(teacher(images)), to_numpy(student(images)), atol=1e-6)


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        tiny_vit(image_size=30)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        tiny_vit(num_heads=3)
    with pytest.raises(ValueError, match="drop_path_rate"):
        tiny_vit(drop_path_rate=1.0)


def test_config_round_trip():
    vit = tiny_vit(drop_path_rate=0.2, mlp_dim=24, qkv_bias=False)
    clone = VisionTransformerBackbone.from_config(vit.get_config())
    assert clone.get_config() == vit.get_config()
    assert clone.count_params() == vit.count_params()
    assert clone.blocks[0].mlp_in.units == 24 and not clone.blocks[0].attention._use_bias


def _encoder():
    encoder = ImageEncoder(tiny_vit(drop_path_rate=0.1))
    # Non-trivial LayerNorm and embedding weights.
    rng = np.random.default_rng(5)
    encoder.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in encoder.get_weights()])
    return encoder


def _images(rng):
    return {size: rng.uniform(0, 255, (3, size, size, 3)).astype("float32") for size in (32, 16)}


def test_encoder_save_load_round_trip(tmp_path):
    encoder = _encoder()
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.backbone, VisionTransformerBackbone)
    assert loaded.output_dim == 16
    for images in _images(np.random.default_rng(6)).values():
        np.testing.assert_allclose(
            to_numpy(loaded.predict(images, verbose=0)), to_numpy(encoder.predict(images, verbose=0)),
            rtol=1e-5, atol=1e-5,
        )


_LOAD_ON_OTHER_BACKEND = """
import sys, numpy as np, keras
import mvmr_keras
encoder = keras.saving.load_model(sys.argv[1])
for size in (32, 16):
    images = np.load(f"{sys.argv[2]}/images{size}.npy")
    features = np.asarray(keras.ops.convert_to_numpy(encoder.predict(images, verbose=0)))
    np.save(f"{sys.argv[2]}/features{size}.npy", features)
"""


@pytest.mark.parametrize("other_backend", [b for b in ("tensorflow", "jax", "torch") if b != BACKEND])
def test_encoder_saved_here_gives_same_features_on_other_backend(tmp_path, other_backend):
    encoder = _encoder()
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    expected = {}
    for size, images in _images(np.random.default_rng(7)).items():
        np.save(tmp_path / f"images{size}.npy", images)
        expected[size] = to_numpy(encoder.predict(images, verbose=0))
    script = tmp_path / "load.py"
    script.write_text(_LOAD_ON_OTHER_BACKEND)
    env = dict(os.environ, KERAS_BACKEND=other_backend, PYTHONPATH=REPO_ROOT)
    subprocess.run([sys.executable, str(script), path, str(tmp_path)],
                   env=env, check=True, capture_output=True, timeout=300)
    for size, want in expected.items():
        np.testing.assert_allclose(np.load(tmp_path / f"features{size}.npy"), want, rtol=1e-4, atol=1e-4)
