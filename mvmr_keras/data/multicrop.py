"""DINO's multi-crop views: 2 global and N local crops per image, `tf.data`.

Each image gives two global crops (`global_size`, area fraction in
`global_crop_scale`) and `num_local_crops` local crops (`local_size`,
`local_crop_scale`), with DINO's augmentations (MOKD spec, "Views"):

- random resized crop, aspect ratio 3/4-4/3, bicubic (PIL's antialiased
  bicubic, `augment_ops.resized_crop_bicubic`), mirrored with p 0.5;
- colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1)
  with p 0.8, then grayscale with p 0.2 (`augment_ops.fused_color`: one
  affine colour map per image; hue is a YIQ rotation);
- Gaussian blur, sigma 0.1-2 px: global 1 always, global 2 with p 0.1,
  locals with p 0.5;
- solarisation (threshold 128) on global 2 with p 0.2.

Those rates are DINO's defaults (`DINO_AUGMENTATION`); `augmentation=`
(a dict with any of its keys) changes them, e.g. weaker views for tiny
images: `flip_rate`, `color_jitter_rate` (the jitter's strengths stay
DINO's), `grayscale_rate`, `global_blur_rates` (global 1, global 2),
`local_blur_rate`, `solarize_rate` (global 2). A rate of 0 skips the op.

Crops are float32 in [0, 255]; normalisation happens in the model. The
augmentations are stateless TensorFlow ops driven by one seed per batch
(`views._seeds`), so two pipelines with the same seed give the same
batches whatever the parallelism. Sharding, caching and shuffling are
`views`'s (`views._source`). Same-size images are batched first and cropped
batch-wise; images of different sizes are cropped one by one (the crop is
what brings them to one size), then batched for the rest.

Example:

>>> images, _ = load_digits("train")
>>> ds = multicrop_views(images, 32, 16, num_local_crops=4, batch_size=8, seed=0)
>>> crops = next(iter(ds))
>>> crops["global_crops"].shape, crops["local_crops"].shape
(TensorShape([8, 2, 32, 32, 3]), TensorShape([8, 4, 16, 16, 3]))
"""

import math

from mvmr_keras.data.views import _seeds, _source

# DINO's (torchvision's) aspect-ratio range of the random resized crop.
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
BLUR_SIGMA = (0.1, 2.0)
# DINO's probabilities of each augmentation (MOKD spec, "Views").
DINO_AUGMENTATION = dict(
    flip_rate=0.5,
    color_jitter_rate=0.8,
    grayscale_rate=0.2,
    global_blur_rates=(1.0, 0.1),  # global crop 1, global crop 2
    local_blur_rate=0.5,
    solarize_rate=0.2,  # global crop 2 only
)


def augmentation_rates(augmentation=None):
    """DINO's rates (`DINO_AUGMENTATION`) updated by `augmentation` (a dict
    of some of its keys); raises ValueError on an unknown key or a rate
    outside [0, 1]."""
    rates = dict(DINO_AUGMENTATION)
    for key, value in dict(augmentation or {}).items():
        if key not in rates:
            raise ValueError(f"unknown multi-crop augmentation {key!r}; available: {sorted(rates)}")
        rates[key] = tuple(float(v) for v in value) if key == "global_blur_rates" else float(value)
    for key, value in rates.items():
        values = value if key == "global_blur_rates" else (value,)
        if len(values) != (2 if key == "global_blur_rates" else 1) or not all(
                0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"multi-crop augmentation {key} must be "
                             f"{'two rates' if key == 'global_blur_rates' else 'a rate'} "
                             f"in [0, 1]; got {value}")
    return rates


def _blur_kernel_size(size):
    """Taps for sigma up to 2 px (+-3 sigma), fewer on tiny crops (reflect
    padding needs a radius below the crop's side)."""
    radius = min(math.ceil(3 * BLUR_SIGMA[1]), max(1, (size - 1) // 2))
    return 2 * radius + 1


class MultiCrop:
    """DINO's multi-crop augmentation, in two stages like `views.Policy`.

    `crop(images, seed)`: a batch `(B, H, W, 3)` float32 -> global crops
    `(B, 2, G, G, 3)` and local crops `(B, N, L, L, 3)`. `rest(global_crops,
    local_crops, seed)`: colour, blur and solarisation on those. `seed` is a
    stateless seed, an int tensor of shape `(2,)`.

    Example:

    >>> g, l = MultiCrop(32, 16, 2)(tf.zeros((3, 40, 40, 3)), tf.constant([0, 1]))
    >>> g.shape, l.shape
    (TensorShape([3, 2, 32, 32, 3]), TensorShape([3, 2, 16, 16, 3]))
    """

    def __init__(self, global_size, local_size, num_local_crops,
                 global_crop_scale=(0.25, 1.0), local_crop_scale=(0.05, 0.25), augmentation=None):
        for name, scale in (("global_crop_scale", global_crop_scale),
                            ("local_crop_scale", local_crop_scale)):
            if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high <= 1; got {scale}.")
        if int(global_size) < 1 or int(local_size) < 1:
            raise ValueError(f"crop sizes must be >= 1; got {global_size} and {local_size}.")
        if int(num_local_crops) < 0:
            raise ValueError(f"num_local_crops must be >= 0; got {num_local_crops}.")
        self.global_size = int(global_size)
        self.local_size = int(local_size)
        self.num_local_crops = int(num_local_crops)
        self.global_crop_scale = tuple(float(s) for s in global_crop_scale)
        self.local_crop_scale = tuple(float(s) for s in local_crop_scale)
        self.rates = augmentation_rates(augmentation)

    def crop(self, images, seed):
        import tensorflow as tf

        from mvmr_keras.data import augment_ops as ops

        g1_seed, g2_seed, local_seed = ops.split_seed(seed, 3)

        def resized_crop(x, size, scale, s):
            out = ops.random_resized_crop(x, size, scale, CROP_RATIO, s, method="bicubic",
                                         flip_rate=self.rates["flip_rate"])
            return tf.clip_by_value(out, 0.0, 255.0)  # bicubic overshoots

        global_crops = tf.stack([
            resized_crop(images, self.global_size, self.global_crop_scale, g1_seed),
            resized_crop(images, self.global_size, self.global_crop_scale, g2_seed),
        ], axis=1)
        batch = tf.shape(images)[0]
        size, n = self.local_size, self.num_local_crops
        if n == 0:
            local_crops = tf.zeros((batch, 0, size, size, 3), tf.float32)
        else:
            # Crop n copies of every image in one batched call.
            repeated = tf.repeat(images, n, axis=0)
            local_crops = resized_crop(repeated, size, self.local_crop_scale, local_seed)
            local_crops = tf.reshape(local_crops, (batch, n, size, size, 3))
        return global_crops, local_crops

    def rest(self, global_crops, local_crops, seed):
        import tensorflow as tf

        from mvmr_keras.data import augment_ops as ops

        seeds = ops.split_seed(seed, 8)
        rates = self.rates

        def colour(x, s):
            if not (rates["color_jitter_rate"] or rates["grayscale_rate"]):
                return x
            return ops.fused_color(x, s, jitter_rate=rates["color_jitter_rate"],
                                   gray_rate=rates["grayscale_rate"], **JITTER)

        def blur(x, s, rate, size):
            kernel = _blur_kernel_size(size)
            if rate <= 0.0:
                return x
            if rate >= 1.0:
                return ops.gaussian_blur(x, kernel, BLUR_SIGMA, s)
            return ops.random_apply(lambda y, t: ops.gaussian_blur(y, kernel, BLUR_SIGMA, t), x, s, rate)

        g = self.global_size
        first = blur(colour(global_crops[:, 0], seeds[0]), seeds[1], rates["global_blur_rates"][0], g)
        second = blur(colour(global_crops[:, 1], seeds[2]), seeds[3], rates["global_blur_rates"][1], g)
        if rates["solarize_rate"]:
            second = ops.random_solarize(second, seeds[4], rates["solarize_rate"])
        global_crops = tf.stack([first, second], axis=1)
        if self.num_local_crops:
            size, n = self.local_size, self.num_local_crops
            flat = tf.reshape(local_crops, (-1, size, size, 3))
            flat = blur(colour(flat, seeds[5]), seeds[6], rates["local_blur_rate"], size)
            local_crops = tf.reshape(flat, (-1, n, size, size, 3))
        return tf.clip_by_value(global_crops, 0.0, 255.0), tf.clip_by_value(local_crops, 0.0, 255.0)

    def __call__(self, images, seed):
        from mvmr_keras.data import augment_ops as ops

        crop_seed, rest_seed = ops.split_seed(seed, 2)
        return self.rest(*self.crop(images, crop_seed), rest_seed)


def multicrop_views(
    images,
    global_size,
    local_size,
    num_local_crops,
    global_crop_scale=(0.25, 1.0),
    local_crop_scale=(0.05, 0.25),
    augmentation=None,
    batch_size=256,
    seed=None,
    shuffle=True,
    labels=False,
    num_shards=1,
    shard_index=0,
    shuffle_buffer=10_000,
    num_parallel_calls=None,
    cache="auto",
):
    """Batches of DINO multi-crop views from uint8 images.

    Args:
        images: uint8 array `(N, H, W, 3)`, or a `tf.data.Dataset` of
            `image` or `(image, label)` elements (what `load` gives), one
            image each; images may differ in size.
        global_size, local_size: sides of the global and local crops.
        num_local_crops: local crops per image (0: none).
        global_crop_scale, local_crop_scale: area fraction ranges of the
            random resized crops (DINO README: 0.25-1 and 0.05-0.25; its
            flag defaults 0.4-1 and 0.05-0.4).
        augmentation: a dict changing some of DINO's augmentation rates
            (`DINO_AUGMENTATION`; module docstring); None = DINO's.
        batch_size: images per batch (per worker when sharded); the last
            partial batch is dropped.
        seed: fixes the shuffle and the augmentations (epoch by epoch).
        shuffle: reshuffle the images every epoch.
        labels: also yield the batch's labels.
        num_shards, shard_index: data-parallel workers: this pipeline
            reads every `num_shards`-th image from `shard_index`.
        shuffle_buffer: shuffle buffer for datasets of unknown or larger
            size (in-memory arrays are shuffled whole).
        num_parallel_calls: map parallelism (default `AUTOTUNE`).
        cache: as `views`'s.

    Returns:
        A `tf.data.Dataset` of `{"global_crops": (B, 2, G, G, 3),
        "local_crops": (B, N, L, L, 3)}` float32 in [0, 255], followed by
        `labels` `(B,)` when asked for.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    augment = MultiCrop(global_size, local_size, num_local_crops, global_crop_scale, local_crop_scale,
                        augmentation)
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    ds, fixed_size = _source(
        images, batch_size, seed=seed, shuffle=shuffle, labels=labels, cache=cache,
        num_shards=num_shards, shard_index=shard_index, shuffle_buffer=shuffle_buffer,
        caller="multicrop_views()", max_arity=2,
    )

    def finish(global_crops, local_crops, rest):
        crops = {"global_crops": global_crops, "local_crops": local_crops}
        return (crops, rest[0]) if labels else crops

    if fixed_size:
        ds = ds.batch(batch_size, drop_remainder=True)

        def make_crops(element, batch_seed):
            return finish(*augment(tf.cast(element[0], tf.float32), batch_seed), element[1:])

        ds = tf.data.Dataset.zip((ds, _seeds(seed))).map(make_crops, num_parallel_calls=parallel)
    else:
        def crop_one(element, image_seed):
            from mvmr_keras.data import augment_ops as ops

            crop_seed, rest_seed = ops.split_seed(image_seed, 2)
            image = tf.cast(element[0], tf.float32)[None]
            global_crops, local_crops = augment.crop(image, crop_seed)
            return (global_crops[0], local_crops[0], rest_seed) + tuple(element[1:])

        ds = tf.data.Dataset.zip((ds, _seeds(seed))).map(crop_one, num_parallel_calls=parallel)
        ds = ds.batch(batch_size, drop_remainder=True)

        def make_rest(global_crops, local_crops, rest_seeds, *rest):
            return finish(*augment.rest(global_crops, local_crops, rest_seeds[0]), rest)

        ds = ds.map(make_rest, num_parallel_calls=parallel)
    options = tf.data.Options()
    options.deterministic = seed is not None
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
