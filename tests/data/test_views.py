import numpy as np
import pytest

from mvmr_keras import data


@pytest.fixture(scope="module")
def digits():
    return data.load_digits("train")[0][:64]


def test_views_are_float_pairs_in_pixel_range(digits):
    ds = data.views(digits, "custom", image_size=32, batch_size=16, seed=0)
    batches = list(ds)
    assert len(batches) == 4
    for original, augmented in batches:
        assert original.shape == augmented.shape == (16, 32, 32, 3)
        assert original.dtype.name == augmented.dtype.name == "float32"
        a = augmented.numpy()
        assert a.min() >= -1e-3 and a.max() <= 255 + 1e-3
    original, augmented = batches[0]
    # The original view is an untouched training image; the augmented one is not.
    assert any(np.array_equal(original.numpy()[0], img) for img in digits.astype("float32"))
    assert not np.allclose(original.numpy(), augmented.numpy())


def test_views_resize_and_drop_partial_batch(digits):
    ds = data.views(digits[:40], "custom", image_size=48, batch_size=16, seed=0, shuffle=False)
    batches = list(ds)
    assert len(batches) == 2  # 40 = 2 x 16 + 8 dropped
    assert batches[0][0].shape == (16, 48, 48, 3) and batches[0][1].shape == (16, 48, 48, 3)


def test_views_feed_a_model_on_this_backend(digits):
    from conftest import tiny_model

    model = tiny_model()
    model.compile(optimizer="adam")
    ds = data.views(digits, "custom", image_size=32, batch_size=16, seed=0)
    history = model.fit(ds, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


@pytest.mark.parametrize("batch_size, match", [(1, ">= 2"), (65, "larger than the 64 images")])
def test_bad_batch_sizes(digits, batch_size, match):
    with pytest.raises(ValueError, match=match):
        data.views(digits, "custom", batch_size=batch_size)


def test_unknown_policy(digits):
    with pytest.raises(ValueError, match="Unknown augmentation policy 'simclr'"):
        data.views(digits, "simclr", batch_size=16)
