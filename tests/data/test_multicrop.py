import numpy as np
import pytest

from mvmr_keras.data import MultiCrop, multicrop_views, views

tf = pytest.importorskip("tensorflow")


def _images(n=16, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _first(ds, count=1):
    out = []
    for element in ds.take(count):
        crops = element[0] if isinstance(element, tuple) else element
        out.append({k: v.numpy() for k, v in crops.items()})
    return out


def test_shapes_dtypes_and_range():
    ds = multicrop_views(_images(), 32, 16, 3, batch_size=4, seed=0)
    assert set(ds.element_spec) == {"global_crops", "local_crops"}
    crops = _first(ds)[0]
    assert crops["global_crops"].shape == (4, 2, 32, 32, 3)
    assert crops["local_crops"].shape == (4, 3, 16, 16, 3)
    for value in crops.values():
        assert value.dtype == np.float32 and value.min() >= 0.0 and value.max() <= 255.0
        assert value.std() > 10.0  # real crops, not blanks
    none = _first(multicrop_views(_images(), 24, 8, 0, batch_size=4, seed=0))[0]
    assert none["global_crops"].shape == (4, 2, 24, 24, 3)
    assert none["local_crops"].shape == (4, 0, 8, 8, 3)


def test_same_seed_repeats_and_other_seeds_differ():
    def batches(seed):
        return _first(multicrop_views(_images(), 32, 16, 2, batch_size=4, seed=seed), 2)

    first, again, other = batches(3), batches(3), batches(4)
    for a, b, c in zip(first, again, other):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
            assert np.abs(a[key] - c[key]).max() > 1.0
    # The two global crops of an image, and its local crops, differ.
    g = first[0]["global_crops"]
    assert np.abs(g[:, 0] - g[:, 1]).mean() > 1.0
    local = first[0]["local_crops"]
    assert np.abs(local[:, 0] - local[:, 1]).mean() > 1.0


def _high_frequency(x):
    """Mean squared Laplacian over variance, per image (scale-free)."""
    grey = x.mean(-1)
    lap = (4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1]
           - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:])
    return (lap**2).mean((1, 2)) / (grey.var((1, 2)) + 1e-6)


def test_global_one_is_always_blurred_and_global_two_rarely():
    n = 256
    noise = tf.constant(np.random.default_rng(1).uniform(0, 255, (n, 32, 32, 3)), tf.float32)
    pair = tf.stack([noise, noise], axis=1)
    local = tf.stack([noise[:, :16, :16]], axis=1)
    g, l = MultiCrop(32, 16, 1).rest(pair, local, tf.constant([5, 6], tf.int64))
    sharp = _high_frequency(noise.numpy()).mean()
    blurred = {
        "g1": (_high_frequency(g[:, 0].numpy()) < 0.5 * sharp).mean(),
        "g2": (_high_frequency(g[:, 1].numpy()) < 0.5 * sharp).mean(),
        "local": (_high_frequency(l[:, 0].numpy()) < 0.5 * sharp).mean(),
    }
    # Sigma is uniform in 0.1-2 px; below about 0.4 px a blur barely shows.
    assert blurred["g1"] > 0.6, blurred
    assert blurred["g2"] < 0.2, blurred  # p 0.1
    assert 0.25 < blurred["local"] < 0.6, blurred  # p 0.5


def test_solarisation_only_on_global_two():
    # Grey horizontal ramps 0..255: colour jitter keeps them grey and
    # increasing, blur keeps them increasing; solarisation folds them.
    n = 300
    ramp = np.broadcast_to(np.linspace(0, 255, 32)[None, None, :, None], (n, 32, 32, 3))
    ramp = tf.constant(ramp, tf.float32)
    g, l = MultiCrop(32, 32, 1).rest(tf.stack([ramp, ramp], 1), ramp[:, None], tf.constant([1, 2], tf.int64))

    def folded(x):
        row = x[:, 16, 2:-2, 0]  # away from the reflect-padded edges
        return (row.max(1) - row[:, -1] > 20).mean()

    assert folded(g[:, 0].numpy()) == 0.0
    assert folded(l[:, 0].numpy()) == 0.0
    assert 0.08 < folded(g[:, 1].numpy()) < 0.3  # p 0.2, when the ramp reaches 128


def test_labels_pass_through_in_order_without_shuffle():
    images, labels = _images(12), np.arange(12, dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    out = [(c["global_crops"].shape[0], y.numpy()) for c, y in
           multicrop_views(ds, 16, 8, 1, batch_size=4, shuffle=False, labels=True, seed=0)]
    assert [b for b, _ in out] == [4, 4, 4]
    np.testing.assert_array_equal(np.concatenate([y for _, y in out]), labels)
    shuffled = np.concatenate([y.numpy() for _, y in multicrop_views(
        ds, 16, 8, 1, batch_size=4, labels=True, seed=0)])
    assert sorted(shuffled) == list(labels) and list(shuffled) != list(labels)
    with pytest.raises(ValueError, match="labels=True needs"):
        multicrop_views(_images(8), 16, 8, 1, batch_size=4, labels=True)


def test_images_of_different_sizes():
    rng = np.random.default_rng(2)
    shapes = [(40, 30), (32, 48), (28, 28), (50, 36)] * 2

    def generator():
        for i, (h, w) in enumerate(shapes):
            yield rng.integers(0, 256, (h, w, 3), dtype=np.uint8), i

    ds = tf.data.Dataset.from_generator(generator, output_signature=(
        tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.int64)))
    batches = list(multicrop_views(ds, 24, 12, 2, batch_size=4, labels=True, shuffle=False, seed=0))
    assert len(batches) == 2
    crops, y = batches[0]
    assert crops["global_crops"].shape == (4, 2, 24, 24, 3)
    assert crops["local_crops"].shape == (4, 2, 12, 12, 3)
    assert list(y.numpy()) == [0, 1, 2, 3]
    assert 0.0 <= crops["local_crops"].numpy().min() and crops["global_crops"].numpy().max() <= 255.0


def test_sharding_covers_every_image_once():
    images, labels = _images(16), np.arange(16, dtype=np.int32)
    seen = []
    for shard in range(2):
        ds = multicrop_views(tf.data.Dataset.from_tensor_slices((images, labels)), 16, 8, 1,
                             batch_size=4, labels=True, seed=0, num_shards=2, shard_index=shard)
        seen.append(np.concatenate([y.numpy() for _, y in ds]))
    assert len(seen[0]) == len(seen[1]) == 8
    assert sorted(np.concatenate(seen)) == list(range(16))
    with pytest.raises(ValueError, match=r"shard_index must be in \[0, 2\)"):
        multicrop_views(images, 16, 8, 1, batch_size=4, num_shards=2, shard_index=2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="local_crop_scale"):
        multicrop_views(_images(), 16, 8, 1, local_crop_scale=(0.5, 0.2), batch_size=4)
    with pytest.raises(ValueError, match="num_local_crops"):
        multicrop_views(_images(), 16, 8, -1, batch_size=4)
    with pytest.raises(ValueError, match="batch_size 32 is larger than the 16 images"):
        multicrop_views(_images(), 16, 8, 1, batch_size=32)


def test_views_points_dino_to_multicrop_views():
    with pytest.raises(ValueError, match="use mvmr_keras.data.multicrop_views"):
        views(_images(), "dino", batch_size=4)


def test_bicubic_crop_matches_pil():
    from PIL import Image

    from mvmr_keras.data import augment_ops as ops

    image = np.random.default_rng(3).uniform(0, 255, (1, 40, 30, 3)).astype("float32")
    square = image[:, :30]
    full = ops.resized_crop_bicubic(tf.constant(square), tf.constant([[0.0, 0.0, 1.0, 1.0]]), 30)
    np.testing.assert_allclose(full.numpy(), square, atol=1e-3)  # the whole image at its size
    # A downscaled (antialiased) box and an upscaled one.
    for top, left, bottom, right, size in [(0.1, 0.2, 0.9, 0.8, 12), (0.3, 0.25, 0.55, 0.6, 20)]:
        got = ops.resized_crop_bicubic(tf.constant(image), tf.constant([[top, left, bottom, right]]), size)[0]
        box = (left * 30, top * 40, right * 30, bottom * 40)
        want = np.stack([
            np.asarray(Image.fromarray(image[0, :, :, c], "F").resize((size, size), Image.BICUBIC, box=box))
            for c in range(3)], axis=-1)
        np.testing.assert_allclose(got.numpy(), want, atol=0.05)
    # Left > right mirrors.
    mirrored = ops.resized_crop_bicubic(tf.constant(image), tf.constant([[0.0, 1.0, 1.0, 0.0]]), 30)
    straight = ops.resized_crop_bicubic(tf.constant(image), tf.constant([[0.0, 0.0, 1.0, 1.0]]), 30)
    np.testing.assert_allclose(mirrored.numpy()[:, :, ::-1], straight.numpy(), atol=1e-3)


def test_solarize():
    from mvmr_keras.data import augment_ops as ops

    x = tf.constant([[[[0.0, 127.0, 128.0]], [[200.0, 255.0, 64.0]]]])
    np.testing.assert_array_equal(ops.solarize(x).numpy(), [[[[0.0, 127.0, 127.0]], [[55.0, 0.0, 64.0]]]])


def test_augmentation_rates_switch_each_op_off_and_default_to_dino():
    from mvmr_keras.data.multicrop import DINO_AUGMENTATION, augmentation_rates

    assert MultiCrop(32, 16, 1).rates == DINO_AUGMENTATION
    assert augmentation_rates({"solarize_rate": 0})["solarize_rate"] == 0.0
    with pytest.raises(ValueError, match="unknown multi-crop augmentation 'blur'"):
        augmentation_rates({"blur": 0.5})
    with pytest.raises(ValueError, match="global_blur_rates must be two rates"):
        augmentation_rates({"global_blur_rates": (1.0,)})
    with pytest.raises(ValueError, match="flip_rate must be a rate in"):
        augmentation_rates({"flip_rate": 1.5})
    # All off: the colour, blur and solarisation stage leaves crops as they are.
    off = dict(color_jitter_rate=0, grayscale_rate=0, global_blur_rates=(0, 0),
               local_blur_rate=0, solarize_rate=0)
    noise = tf.constant(np.random.default_rng(3).uniform(0, 255, (8, 2, 32, 32, 3)), tf.float32)
    local = noise[:, :1, :16, :16]
    g, l = MultiCrop(32, 16, 1, augmentation=off).rest(noise, local, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(g.numpy(), noise.numpy())
    np.testing.assert_array_equal(l.numpy(), local.numpy())
    # DINO's rates change them (global 1 is always blurred).
    g, _ = MultiCrop(32, 16, 1).rest(noise, local, tf.constant([1, 2], tf.int64))
    assert np.abs(g.numpy()[:, 0] - noise.numpy()[:, 0]).mean() > 10.0
    # flip_rate 0 never mirrors a left-to-right ramp, 1 always does.
    ramp = np.broadcast_to(np.linspace(0, 255, 32)[None, None, :, None], (16, 32, 32, 3))
    ramp = tf.constant(ramp, tf.float32)
    for rate, increasing in ((0.0, True), (1.0, False)):
        crop = MultiCrop(32, 16, 2, global_crop_scale=(0.5, 1.0), augmentation={"flip_rate": rate})
        g, l = crop.crop(ramp, tf.constant([4, 5], tf.int64))
        for x in (g.numpy()[:, :, 16], l.numpy()[:, :, 8]):
            slope = x[..., -3, 0] - x[..., 2, 0]
            assert np.all(slope > 0) if increasing else np.all(slope < 0), slope
