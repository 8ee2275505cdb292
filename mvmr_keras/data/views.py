"""Views: a `tf.data` pipeline of `(original_view, augmented_view)` batches.

The original view is the image itself (resized to `image_size` if needed);
the augmented view is a random augmentation of it by KerasCV layers. Both
are float32 with pixel values in [0, 255]: normalisation happens inside
the encoder. The augmentations run inside `tf.data` on every Keras backend
because they are wrapped in `keras.layers.Pipeline` (a `keras.Sequential`
would run them as backend ops, which `tf.data` cannot trace on JAX or
PyTorch).

Example:

>>> images, _ = load_digits("train")
>>> ds = views(images, "custom", image_size=32, batch_size=16, seed=0)
>>> original, augmented = next(iter(ds))
>>> original.shape, augmented.shape
(TensorShape([16, 32, 32, 3]), TensorShape([16, 32, 32, 3]))
"""

POLICIES = ("custom",)


def augmentation(policy, image_size, crop_scale=(0.08, 1.0), seed=None):
    """The augmentation of a policy of spec section 5, as a Pipeline.

    `custom`: random resized crop (scale `crop_scale`, ratio 3/4-4/3),
    horizontal flip, colour jitter with p = 0.8, grayscale with p = 0.2,
    Gaussian blur (kernel `2 * int(0.05 * size) + 1`, sigma 0.1-2).

    KerasCV's colour factors are not torchvision's (brightness is an
    additive shift there, a multiplicative one in the reference), so the
    jitter strengths here are chosen to look alike, not copied.
    """
    import keras
    import keras_cv

    if policy not in POLICIES:
        raise ValueError(f"Unknown augmentation policy {policy!r}; available: {list(POLICIES)}.")
    value_range = (0, 255)
    blur_kernel = 2 * int(0.05 * image_size) + 1
    steps = [
        keras_cv.layers.RandomCropAndResize(
            (image_size, image_size),
            crop_area_factor=tuple(crop_scale),
            aspect_ratio_factor=(3 / 4, 4 / 3),
            seed=seed,
        ),
        keras_cv.layers.RandomFlip("horizontal", seed=seed),
        keras_cv.layers.RandomApply(
            keras_cv.layers.RandomColorJitter(
                value_range=value_range,
                brightness_factor=0.4,
                contrast_factor=0.4,
                saturation_factor=(0.1, 0.9),
                hue_factor=0.2,
                seed=seed,
            ),
            rate=0.8,
            seed=seed,
        ),
        keras_cv.layers.RandomApply(
            keras_cv.layers.Grayscale(output_channels=3), rate=0.2, seed=seed
        ),
    ]
    if blur_kernel > 1:
        steps.append(
            keras_cv.layers.RandomGaussianBlur(
                kernel_size=blur_kernel, factor=(0.1, 2.0), seed=seed
            )
        )
    return keras.layers.Pipeline(steps)


def views(
    images,
    policy="custom",
    image_size=None,
    batch_size=256,
    seed=None,
    shuffle=True,
    crop_scale=(0.08, 1.0),
):
    """Batches of `(original_view, augmented_view)` from uint8 images.

    Args:
        images: uint8 array `(N, H, W, 3)` (or a `tf.data.Dataset` of
            single images).
        policy: augmentation policy name (`POLICIES`).
        image_size: side of both views; default: the images' own.
        batch_size: images per batch; the last partial batch is dropped
            (distance correlation needs >= 2 samples, and fixed shapes keep
            the compiled step from retracing).
        seed: seeds the shuffle and the augmentations.
        shuffle: reshuffle the images every epoch.
    """
    import tensorflow as tf

    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for distance correlation; got {batch_size}.")
    if isinstance(images, tf.data.Dataset):
        ds = images
        num_images = None
    else:
        num_images = len(images)
        if num_images < batch_size:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {num_images} "
                "images available; lower it."
            )
        ds = tf.data.Dataset.from_tensor_slices(images)
        if image_size is None:
            image_size = images.shape[1]
    if image_size is None:
        raise ValueError("image_size is required for a tf.data.Dataset input.")
    augment = augmentation(policy, image_size, crop_scale=crop_scale, seed=seed)

    def make_views(batch):
        original = tf.cast(batch, tf.float32)
        if original.shape[1] != image_size or original.shape[2] != image_size:
            original = tf.image.resize(original, (image_size, image_size))
        return original, augment(original)

    if shuffle:
        ds = ds.shuffle(num_images or 10_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(make_views, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
