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


@pytest.mark.parametrize("policy", data.POLICIES)
def test_every_policy_gives_float_views_in_pixel_range(digits, policy):
    ds = data.views(digits[:32], policy, image_size=32, batch_size=16, seed=0)
    batches = list(ds)
    assert len(batches) == 2
    for original, augmented in batches:
        assert original.shape == augmented.shape == (16, 32, 32, 3)
        assert original.dtype.name == augmented.dtype.name == "float32"
        a = augmented.numpy()
        assert a.min() >= 0.0 and a.max() <= 255.0
    assert not np.allclose(batches[0][0].numpy(), batches[0][1].numpy())


@pytest.mark.parametrize("policy", data.POLICIES)
def test_same_seed_same_batches_other_seed_other_batches(digits, policy):
    def batches(seed):
        ds = data.views(digits[:48], policy, image_size=32, batch_size=16, seed=seed)
        return [np.concatenate([o.numpy(), a.numpy()]) for o, a in ds]

    first, again, other = batches(5), batches(5), batches(6)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert not np.array_equal(first[0], other[0])


def test_seeded_epochs_differ_and_repeat_across_runs(digits):
    def two_epochs():
        ds = data.views(digits[:32], "custom", image_size=32, batch_size=32, seed=1, shuffle=False)
        return [next(iter(ds))[1].numpy() for _ in range(2)]

    run1, run2 = two_epochs(), two_epochs()
    assert not np.array_equal(run1[0], run1[1])  # new augmentations each epoch
    assert np.array_equal(run1[0], run2[0]) and np.array_equal(run1[1], run2[1])


def test_cifar_policy_is_a_padded_shift_with_optional_flip(digits):
    (original, augmented), = data.views(
        digits[:16], "cifar", image_size=32, batch_size=16, seed=0, shuffle=False
    ).take(1)
    padded = np.pad(original.numpy(), [(0, 0), (4, 4), (4, 4), (0, 0)])
    for image, view in zip(padded, augmented.numpy()):
        windows = [image[y:y + 32, x:x + 32] for y in range(9) for x in range(9)]
        windows += [w[:, ::-1] for w in windows]
        assert min(np.abs(w - view).max() for w in windows) < 1e-3


def test_ops_with_identity_parameters_leave_images_alone():
    import tensorflow as tf

    from mvmr_keras.data import augment_ops as ops

    images = tf.random.stateless_uniform((4, 16, 16, 3), (0, 1), 0, 255)
    seed = tf.constant([3, 4], tf.int64)
    full_crop = ops.random_resized_crop(images, 16, (1.0, 1.0), (1.0, 1.0), seed)
    np.testing.assert_allclose(full_crop.numpy(), images.numpy(), atol=1e-3)
    mirrored = ops.random_resized_crop(images, 16, (1.0, 1.0), (1.0, 1.0), seed, flip_rate=1.0)
    np.testing.assert_allclose(mirrored.numpy(), images.numpy()[:, :, ::-1], atol=1e-3)
    no_jitter = ops.color_jitter(images, seed, 0.0, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(no_jitter.numpy(), images.numpy())
    no_colour = ops.fused_color(images, seed, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(no_colour.numpy(), images.numpy(), atol=1e-2)
    all_grey = ops.fused_color(images, seed, 0.0, 0.8, 0.8, 0.8, 0.2, 1.0)
    np.testing.assert_allclose(all_grey.numpy(), ops.grayscale(images).numpy(), atol=1e-2)
    # Hue rotates chroma only: a grey image stays grey; a coloured one changes.
    grey_in = ops.grayscale(images)
    hue_only = ops.fused_color(grey_in, seed, 1.0, 0.0, 0.0, 0.0, 0.5, 0.0)
    np.testing.assert_allclose(hue_only.numpy(), grey_in.numpy(), atol=1e-2)
    assert not np.allclose(ops.fused_color(images, seed, 1.0, 0.0, 0.0, 0.0, 0.5, 0.0).numpy(),
                           images.numpy(), atol=1.0)
    sharp = ops.gaussian_blur(images, 5, (1e-3, 1e-3), seed)
    np.testing.assert_allclose(sharp.numpy(), images.numpy(), atol=1e-3)
    blurred = ops.gaussian_blur(images, 5, (2.0, 2.0), seed).numpy()
    assert blurred.std() < 0.8 * images.numpy().std()  # noise is smoothed
    gray = ops.grayscale(images).numpy()
    assert np.array_equal(gray[..., 0], gray[..., 1])


def test_images_of_different_sizes_are_centre_cropped_and_augmented():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    sizes = [(40, 60), (64, 48), (50, 50), (70, 90)] * 4
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    ds = tf.data.Dataset.from_generator(
        lambda: ((img, np.int64(i)) for i, img in enumerate(images)),
        output_signature=(tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.int64)),
    )
    for policy in ("custom", "cifar20"):
        (original, augmented, labels), = data.views(
            ds, policy, image_size=32, batch_size=16, seed=0, shuffle=False, labels=True
        ).take(1)
        assert original.shape == augmented.shape == (16, 32, 32, 3)
    # Shorter side to 32 * 256 / 224 = 37 (40x60 -> 37x56), then the centre 32 x 32.
    expected = tf.image.resize_with_crop_or_pad(
        tf.image.resize(images[0].astype("float32"), (37, 56)), 32, 32
    )
    np.testing.assert_allclose(original.numpy()[0], expected.numpy(), atol=1e-3)


def test_shards_split_the_images_between_workers():
    import tensorflow as tf

    images = np.arange(32, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    seen = []
    for index in range(2):
        ds = data.views(tf.data.Dataset.from_tensor_slices(images), image_size=8,
                        batch_size=4, shuffle=False, num_shards=2, shard_index=index, seed=0)
        seen.append({int(v) for o, _ in ds for v in o.numpy()[:, 0, 0, 0]})
    assert seen[0] == set(range(0, 32, 2)) and seen[1] == set(range(1, 32, 2))
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    ds = data.views(tf.data.Dataset.from_tensor_slices(images), image_size=8,
                    batch_size=4, shuffle=False, input_context=context)
    assert {int(v) for o, _ in ds for v in o.numpy()[:, 0, 0, 0]} == seen[1]
    with pytest.raises(ValueError, match=r"shard_index must be in \[0, 2\)"):
        data.views(images, image_size=8, batch_size=4, num_shards=2, shard_index=2)


def test_normalization_statistics_per_dataset():
    from mvmr_keras.models.encoder import NORMALIZATION_STATS

    assert data.normalization_for("cifar100") == data.normalization_for("cifar20") == "cifar"
    assert data.normalization_for("stl10") == data.normalization_for("imagenet100") == "imagenet"
    assert data.normalization_for("folder:/x") == "imagenet"
    assert set(data.NORMALIZATION_BY_DATASET.values()) <= set(NORMALIZATION_STATS)
    assert set(data.NORMALIZATION_BY_DATASET) == set(data.DATASETS)


def test_unknown_policy(digits):
    with pytest.raises(ValueError, match="Unknown augmentation policy 'simclr'"):
        data.views(digits, "simclr", batch_size=16)


def test_views_carry_labels_and_extras_with_their_images():
    import tensorflow as tf

    images, labels = data.load_numpy("digits", "train")
    images, labels = images[:32], labels[:32]
    # The extra is the image's own index: after the shuffle it must still
    # point at the same image and label.
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype("int64"), np.arange(32)))
    original, augmented, batch_labels, index = next(
        iter(data.views(ds, image_size=32, batch_size=16, seed=1, labels=True))
    )
    index = index.numpy()
    assert augmented.shape == (16, 32, 32, 3)
    np.testing.assert_array_equal(original.numpy(), images[index].astype("float32"))
    np.testing.assert_array_equal(batch_labels.numpy(), labels[index])


def test_views_of_a_loaded_dataset():
    (original, augmented), = data.views(
        data.load("digits", "test").take(16), image_size=32, batch_size=16
    ).take(1)
    assert original.shape == augmented.shape == (16, 32, 32, 3)
