"""Shared test setup. The suite runs once per backend (KERAS_BACKEND)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Cached baselines (mvmr_keras.evaluation.baselines) go to a fresh folder per
# test session, never the user's ~/.cache; subprocesses inherit it.
import tempfile  # noqa: E402

os.environ["MVMR_CACHE_DIR"] = tempfile.mkdtemp(prefix="mvmr-test-cache-")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


BACKENDS = ("tensorflow", "jax", "torch")


def pytest_collection_modifyitems(config, items):
    """Cases of a test marked `one_backend_per_case` are dealt out over the
    three backends (case i runs on BACKENDS[i % 3]), so each case runs once
    in the three-backend suite, on one backend. Only for checks of
    backend-independent code (config validation messages, the workdir's
    rename protocol) whose cases each cost a subprocess; the summary line
    counts the others as deselected."""
    kept, deselected, seen = [], [], {}
    turn = BACKENDS.index(BACKEND) if BACKEND in BACKENDS else 0
    for item in items:
        if item.get_closest_marker("one_backend_per_case") is None:
            kept.append(item)
            continue
        key = (item.path, item.originalname)
        index = seen.get(key, 0)
        seen[key] = index + 1
        (kept if index % len(BACKENDS) == turn else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(autouse=True)
def _float32_policy_and_seed():
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def tiny_model(representations=("pixels",), image_size=32, **mvmr_kwargs):
    """An MVMR small enough for a unit test (width 4, one block per stage)."""
    from mvmr_keras import MVMR, ImageEncoder, ResNetBackbone, representations as reps

    backbone = ResNetBackbone.from_name(
        "resnet18", width=4, stackwise_num_blocks=(1, 1, 1, 1),
        image_shape=(image_size, image_size, 3),
    )
    model = MVMR(
        ImageEncoder(backbone),
        projector="32-32",
        representations=[reps.get(n) for n in representations],
        **mvmr_kwargs,
    )
    model.build((None, image_size, image_size, 3))
    return model


def random_views(n=16, size=32, seed=0):
    """An (original, augmented) pair of float32 image batches in [0, 255]."""
    rng = np.random.default_rng(seed)
    original = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    augmented = np.clip(original + rng.normal(0, 25, original.shape), 0, 255)
    return original, augmented.astype("float32")
