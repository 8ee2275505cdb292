"""Views: a `tf.data` pipeline of `(original_view, augmented_view)` batches.

The original view is the image itself, resized to `image_size` (images of
varying sizes, such as ImageNet's, are resized so that their shorter side
is `image_size * 256 / 224` and centre-cropped, as the reference's
validation transform); the augmented view is a random augmentation of the
full image by a policy of spec section 5. Both are float32 with pixel
values in [0, 255]: normalisation happens inside the encoder, with the
dataset's statistics (`NORMALIZATION_BY_DATASET`).

The `digits` policy is for grey glyphs (digits, letters): a random resized
crop without flip, brightness and contrast jitter, a light blur.

The pipeline is `tf.data` on every Keras backend. The `custom`, `cifar`,
`cifar20` and `digits` policies are batched stateless TensorFlow ops
(`augment_ops`): fast, and with a seed the batches are the same on every
run whatever the parallelism. `randaugment` and `autoaugment` are built
here around KerasCV's operations (KerasCV's RandAugment set; AutoAugment's
ImageNet policy, which no library ships for Keras): the choice of
operations is a stateless draw, but the operations' own generators are
stateful, so with a seed their map runs on one thread, one image at a
time, and the draws come in a fixed order.

Example:

>>> images, _ = load_digits("train")
>>> ds = views(images, "custom", image_size=32, batch_size=16, seed=0)
>>> original, augmented = next(iter(ds))
>>> original.shape, augmented.shape
(TensorShape([16, 32, 32, 3]), TensorShape([16, 32, 32, 3]))
"""

POLICIES = ("custom", "randaugment", "autoaugment", "cifar", "cifar20", "digits")

# Normalisation statistics (names in models.encoder.NORMALIZATION_STATS)
# per dataset, spec section 5.
NORMALIZATION_BY_DATASET = {
    "digits": "imagenet",
    "stl10": "imagenet",
    "imagenet2012": "imagenet",
    "imagenet2012_subset": "imagenet",
    "imagenet50": "imagenet",
    "imagenet100": "imagenet",
    "imagenet200": "imagenet",
    "voc2007": "imagenet",
    "cifar10": "cifar",
    "cifar20": "cifar",
    "cifar100": "cifar",
    "fashion_mnist": "fashion_mnist",
}

# Cache decoded images in memory up to this many bytes (`cache="auto"`).
DEFAULT_CACHE_BYTES = 4 << 30

# AutoAugment's ImageNet policy (Cubuk et al., 2019): 25 sub-policies of
# two (operation, probability, magnitude) steps, magnitudes already turned
# into values on torchvision's 10-bin scales (rotate: degrees; posterize:
# bits kept; solarize: threshold in [0, 255]; colour, contrast, sharpness:
# enhancement strength; shear: fraction).
AUTOAUGMENT_IMAGENET = (
    (("posterize", 0.4, 4), ("rotate", 0.6, 30.0)),
    (("solarize", 0.6, 113.3), ("autocontrast", 0.6, None)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
    (("posterize", 0.6, 5), ("posterize", 0.6, 5)),
    (("equalize", 0.4, None), ("solarize", 0.2, 141.7)),
    (("equalize", 0.4, None), ("rotate", 0.8, 26.7)),
    (("solarize", 0.6, 170.0), ("equalize", 0.6, None)),
    (("posterize", 0.8, 6), ("equalize", 1.0, None)),
    (("rotate", 0.2, 10.0), ("solarize", 0.6, 28.3)),
    (("equalize", 0.6, None), ("posterize", 0.4, 5)),
    (("rotate", 0.8, 26.7), ("color", 0.4, 0.0)),
    (("rotate", 0.4, 30.0), ("equalize", 0.6, None)),
    (("equalize", 0.0, None), ("equalize", 0.8, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 0.4), ("contrast", 1.0, 0.8)),
    (("rotate", 0.8, 26.7), ("color", 1.0, 0.2)),
    (("color", 0.8, 0.8), ("solarize", 0.8, 56.7)),
    (("sharpness", 0.4, 0.7), ("invert", 0.6, None)),
    (("shear_x", 0.6, 0.167), ("equalize", 1.0, None)),
    (("color", 0.4, 0.0), ("equalize", 0.6, None)),
    (("equalize", 0.4, None), ("solarize", 0.2, 141.7)),
    (("solarize", 0.6, 113.3), ("autocontrast", 0.6, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 0.4), ("contrast", 1.0, 0.8)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
)


def normalization_for(dataset):
    """The `config.normalization` name for a dataset (`imagenet` for
    image folders and anything unlisted)."""
    return NORMALIZATION_BY_DATASET.get(dataset, "imagenet")


def _autoaugment_operation(name, magnitude, seed):
    import keras_cv

    value_range = (0, 255)
    if name == "posterize":
        return keras_cv.layers.Posterization(value_range, bits=magnitude)
    if name == "rotate":  # uniform in [-m, m] degrees (AutoAugment: +-m)
        return keras_cv.layers.RandomRotation(magnitude / 360.0, fill_mode="constant", seed=seed)
    if name == "solarize":
        return keras_cv.layers.Solarization(value_range, threshold_factor=(magnitude, magnitude), seed=seed)
    if name == "invert":  # every pixel is above a threshold of 0
        return keras_cv.layers.Solarization(value_range, threshold_factor=(0.0, 0.0), seed=seed)
    if name == "autocontrast":
        return keras_cv.layers.AutoContrast(value_range)
    if name == "equalize":
        return keras_cv.layers.Equalization(value_range)
    if name == "color":  # blend towards grey by up to m
        return keras_cv.layers.RandomColorDegeneration((0.0, max(magnitude, 1e-3)), seed=seed)
    if name == "contrast":
        return keras_cv.layers.RandomContrast(value_range, (magnitude, magnitude), seed=seed)
    if name == "sharpness":
        return keras_cv.layers.RandomSharpness((magnitude, magnitude), value_range, seed=seed)
    if name == "shear_x":  # KerasCV inverts the sign at random
        return keras_cv.layers.RandomShear(x_factor=(magnitude, magnitude), fill_mode="constant", seed=seed)
    raise ValueError(f"Unknown AutoAugment operation {name!r}.")


def _map_images(one, elems, sequential):
    """`tf.map_fn` of `one` over the images of a batch. KerasCV's layers
    draw from stateful generators, so under a seed the images go one at a
    time (`sequential`): parallel iterations would take the draws in a
    varying order."""
    import tensorflow as tf

    return tf.map_fn(
        one, elems, fn_output_signature=tf.float32,
        parallel_iterations=1 if sequential else None,
    )


class AutoAugment:
    """AutoAugment's ImageNet policy with KerasCV operations: per image, one
    of the 25 sub-policies, each of its two steps applied with its
    probability (the choice and the coin flips are stateless draws).

    KerasCV and Keras have no AutoAugment, and KerasCV's `RandomApply`
    cannot sit inside its `RandomChoice` in a graph, so the selection is
    built here around KerasCV's operations. Differences from the paper:
    rotation is uniform in [-m, m] rather than exactly +-m, and colour
    degeneration is uniform in [0, m].

    Example:

    >>> AutoAugment(seed=0)(tf.zeros((2, 32, 32, 3)), tf.constant([0, 1])).shape
    TensorShape([2, 32, 32, 3])
    """

    def __init__(self, seed=None):
        counter = [0]

        def next_seed():
            counter[0] += 1
            return None if seed is None else seed * 1000 + counter[0]

        self.sequential = seed is not None
        self.sub_policies = [
            [(probability, _autoaugment_operation(name, magnitude, next_seed()))
             for name, probability, magnitude in steps]
            for steps in AUTOAUGMENT_IMAGENET
        ]

    def __call__(self, images, seed):
        import tensorflow as tf

        from mvmr_keras.data import augment_ops as ops

        batch = tf.shape(images)[0]
        choice_seed, coin_seed = ops.split_seed(seed, 2)
        choices = tf.random.stateless_uniform(
            (batch,), choice_seed, minval=0, maxval=len(self.sub_policies), dtype=tf.int32
        )
        coins = tf.random.stateless_uniform((batch, 2), coin_seed)

        def sub_policy(steps, image, coin):
            def run():
                x = image[None]
                for k, (probability, layer) in enumerate(steps):
                    x = tf.cond(
                        coin[k] < probability,
                        lambda x=x, layer=layer: tf.cast(layer(x), tf.float32),
                        lambda x=x: x,
                    )
                return x[0]
            return run

        def one(args):
            image, choice, coin = args
            return tf.switch_case(
                choice, [sub_policy(steps, image, coin) for steps in self.sub_policies]
            )

        out = _map_images(one, (images, choices, coins), self.sequential)
        return tf.ensure_shape(out, images.shape)


class RandAugment:
    """RandAugment (Cubuk et al., 2020) with KerasCV's operations: per
    image, `num_ops` operations drawn uniformly (with replacement, as
    torchvision does) from KerasCV's standard RandAugment set at a fixed
    `magnitude`, applied in turn.

    KerasCV's own `RandAugment` layer picks the operations with a stateful
    generator inside a parallel loop, so a seed cannot fix its output.
    Here the picks are stateless draws from the pipeline's seed and the
    images go one at a time under a seed, which makes the views repeat.

    Example:

    >>> RandAugment(seed=0)(tf.zeros((2, 32, 32, 3)), tf.constant([0, 1])).shape
    TensorShape([2, 32, 32, 3])
    """

    def __init__(self, num_ops=4, magnitude=10 / 30, seed=None):
        import keras_cv

        self.num_ops = int(num_ops)
        self.sequential = seed is not None
        self.operations = keras_cv.layers.RandAugment.get_standard_policy(
            (0, 255), magnitude, 0.0, seed=seed
        )

    def __call__(self, images, seed):
        import tensorflow as tf

        batch = tf.shape(images)[0]
        picks = tf.random.stateless_uniform(
            (batch, self.num_ops), seed, minval=0, maxval=len(self.operations), dtype=tf.int32
        )

        def one(args):
            image, image_picks = args
            x = image[None]
            for k in range(self.num_ops):
                x = tf.switch_case(image_picks[k], [
                    lambda x=x, layer=layer: tf.cast(layer(x), tf.float32)
                    for layer in self.operations
                ])
            return x[0]

        out = _map_images(one, (images, picks), self.sequential)
        return tf.ensure_shape(out, images.shape)


class Policy:
    """An augmentation policy of spec section 5, in two stages.

    `crop(images, seed)` takes a batch of any size (or a single image's
    batch of one) to `image_size`; `rest(images, seed)` does the remaining
    steps on a batch of `image_size` images. `seed` is a stateless seed,
    an int tensor of shape `(2,)`. `stateful` says that `rest` draws from
    KerasCV's stateful generators instead of the seed.

    Example:

    >>> policy = Policy("custom", 32)
    >>> policy(tf.zeros((2, 48, 48, 3)), tf.constant([0, 1])).shape
    TensorShape([2, 32, 32, 3])
    """

    def __init__(self, name, image_size, crop_scale=None, seed=None):
        if name not in POLICIES:
            raise ValueError(f"Unknown augmentation policy {name!r}; available: {list(POLICIES)}.")
        self.name = name
        self.image_size = int(image_size)
        if crop_scale is None:
            crop_scale = (0.2, 1.0) if name == "cifar20" else (0.08, 1.0)
        self.crop_scale = tuple(float(s) for s in crop_scale)
        self.stateful = name in ("randaugment", "autoaugment")
        self._layer = None
        if name == "randaugment":
            # torchvision's RandAugment(num_ops=4, magnitude=10) on its
            # 31-bin scale: 10/30 of the strongest setting, every op applied.
            self._layer = RandAugment(num_ops=4, magnitude=10 / 30, seed=seed)
        elif name == "autoaugment":
            self._layer = AutoAugment(seed)

    def crop(self, images, seed):
        from mvmr_keras.data import augment_ops as ops

        size = self.image_size
        if self.name == "cifar":
            import tensorflow as tf

            if images.shape[1] != size or images.shape[2] != size:
                images = tf.image.resize(images, (size, size))
            return ops.random_crop_with_padding(images, size, 4, seed)
        # cifar20 asks for bicubic; crop_and_resize has bilinear only. The
        # custom and cifar20 flips are folded into the crop.
        flip_rate = 0.5 if self.name in ("custom", "cifar20") else 0.0
        return ops.random_resized_crop(
            images, size, self.crop_scale, (3 / 4, 4 / 3), seed, flip_rate=flip_rate
        )

    def rest(self, images, seed):
        from mvmr_keras.data import augment_ops as ops

        flip_seed, jitter_seed, gray_seed, blur_seed = ops.split_seed(seed, 4)
        if self.name == "digits":
            # Grey glyphs: a mirrored 2 is no longer a 2 and hue means
            # nothing, so brightness and contrast only, and a light blur
            # (thin strokes vanish under the custom policy's sigma 2).
            x = ops.fused_color(images, jitter_seed, 0.8, 0.4, 0.4, 0.0, 0.0, 0.0)
            return ops.random_apply(
                lambda y, s: ops.gaussian_blur(y, 3, (0.1, 1.0), s), x, blur_seed, 0.5
            )
        if self.name == "custom":
            x = ops.fused_color(images, jitter_seed, 0.8, 0.8, 0.8, 0.8, 0.2, 0.2)
            return ops.gaussian_blur(x, 2 * int(0.05 * self.image_size) + 1, (0.1, 2.0), blur_seed)
        if self.name == "cifar":
            return ops.random_flip_left_right(images, flip_seed)
        if self.name == "cifar20":
            # The reference jitters and greys before the crop; these are
            # per-pixel ops except contrast (image mean), so the order
            # matters little.
            return ops.fused_color(images, jitter_seed, 0.8, 0.4, 0.4, 0.4, 0.1, 0.1)
        import tensorflow as tf

        return tf.clip_by_value(self._layer(images, seed), 0.0, 255.0)

    def __call__(self, images, seed):
        from mvmr_keras.data import augment_ops as ops

        import tensorflow as tf

        crop_seed, rest_seed = ops.split_seed(seed, 2)
        augmented = self.rest(self.crop(images, crop_seed), rest_seed)
        return tf.clip_by_value(augmented, 0.0, 255.0)


def augmentation(policy, image_size, crop_scale=None, seed=None):
    """The `Policy` called `policy` (kept for callers of the first API)."""
    return Policy(policy, image_size, crop_scale=crop_scale, seed=seed)


def original_view(image, image_size):
    """The deterministic view of one image or a batch of same-size images:
    resized when its size differs; a non-square image is resized so that
    its shorter side is `image_size * 256 / 224` and centre-cropped."""
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    height, width = image.shape[-3], image.shape[-2]
    if height == width and height is not None:
        if height == image_size:
            return image
        return tf.image.resize(image, (image_size, image_size))
    short = round(image_size * 256 / 224)
    shape = tf.cast(tf.shape(image)[-3:-1], tf.float32)
    scale = short / tf.reduce_min(shape)
    new_shape = tf.cast(tf.round(shape * scale), tf.int32)
    resized = tf.image.resize(image, new_shape)
    return tf.image.resize_with_crop_or_pad(resized, image_size, image_size)


def _seeds(seed):
    """An endless dataset of stateless seeds `(2,)`, new ones every epoch
    (fixed by `seed` when given)."""
    import tensorflow as tf

    ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return ds.batch(2, drop_remainder=True)


def _cardinality(ds):
    import tensorflow as tf

    n = int(ds.cardinality())
    return n if n >= 0 else None


def _source(
    images, batch_size, seed, shuffle, labels, cache, num_shards, shard_index,
    shuffle_buffer, caller, max_arity=3,
):
    """The shared head of the view pipelines: a `tf.data.Dataset` of
    `(image, *rest)` tuples from an array or a dataset, sharded, cached
    (see `views`) and shuffled; and whether its images all have one known
    size (then the caller batches first and augments whole batches)."""
    import tensorflow as tf

    if isinstance(images, tf.data.Dataset):
        ds = images
    else:
        if len(images) < batch_size:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {len(images)} "
                "images available; lower it."
            )
        ds = tf.data.Dataset.from_tensor_slices(images)
        cache = False  # already in memory
    structure = ds.element_spec
    arity = len(structure) if isinstance(structure, tuple) else 1
    if arity not in range(1, max_arity + 1):
        allowed = ["`image`", "`(image, label)`", "`(image, label, extra)`"][:max_arity]
        allowed = ", ".join(allowed[:-1]) + " or " + allowed[-1]
        raise ValueError(f"{caller} takes elements {allowed}; got a tuple of {arity}.")
    if labels and arity == 1:
        raise ValueError("labels=True needs a dataset of (image, label) elements.")
    if arity == 1:
        ds = ds.map(lambda image: (image,))
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}); got {shard_index}.")
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)

    image_spec = (structure[0] if isinstance(structure, tuple) else structure)
    num_images = _cardinality(ds)
    fixed_size = image_spec.shape.rank == 3 and image_spec.shape.is_fully_defined()
    if cache == "auto":
        cache = (
            fixed_size and num_images is not None
            and num_images * image_spec.shape.num_elements() <= DEFAULT_CACHE_BYTES
        )
    if isinstance(cache, str):
        ds = ds.cache(cache)
    elif cache:
        ds = ds.cache()
    if num_images is not None and num_images < batch_size:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {num_images} images "
            "available; lower it."
        )
    if shuffle:
        buffer = num_images if num_images is not None and num_images <= 200_000 else shuffle_buffer
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return ds, fixed_size


def views(
    images,
    policy="custom",
    image_size=None,
    batch_size=256,
    seed=None,
    shuffle=True,
    crop_scale=None,
    labels=False,
    cache="auto",
    num_shards=1,
    shard_index=0,
    input_context=None,
    shuffle_buffer=10_000,
    num_parallel_calls=None,
):
    """Batches of `(original_view, augmented_view)` from uint8 images.

    Args:
        images: uint8 array `(N, H, W, 3)`, or a `tf.data.Dataset` whose
            elements are `image`, `(image, label)` (what `load` gives) or
            `(image, label, extra)`, one image each; images may differ in
            size.
        policy: augmentation policy name (`POLICIES`).
        image_size: side of both views; default: the images' own.
        batch_size: images per batch (per worker when sharded); the last
            partial batch is dropped (distance correlation needs >= 2
            samples, and fixed shapes keep the step from retracing).
        seed: fixes the shuffle and the augmentations: two pipelines with
            the same seed give the same batches (epoch by epoch).
        shuffle: reshuffle the images every epoch.
        crop_scale: area range of the random resized crop (default: the
            policy's, 0.08-1, or 0.2-1 for `cifar20`).
        labels: also yield the batch's labels (the dataset must have them).
        cache: `"auto"` keeps the decoded images in memory when their
            size is known and below `DEFAULT_CACHE_BYTES`; `True` always;
            `False` never; a string is a cache file path.
        num_shards, shard_index: data-parallel workers: this pipeline
            reads every `num_shards`-th image from `shard_index`.
        input_context: a `tf.distribute.InputContext`, instead of the two
            above (its per-replica batch size is not applied: pass it as
            `batch_size`).
        shuffle_buffer: shuffle buffer for datasets of unknown or larger
            size (in-memory arrays are shuffled whole).
        num_parallel_calls: map parallelism (default `AUTOTUNE`).

    Returns:
        A `tf.data.Dataset` of `(original, augmented)`, then `labels` if
        asked for, then the batched `extra` if the elements carry one: a
        per-image payload (such as a cached teacher embedding) that travels
        with its image through the shuffle.
    """
    import tensorflow as tf

    if policy == "dino":
        raise ValueError(
            "the dino policy makes 2 global and N local crops: use "
            "mvmr_keras.data.multicrop_views, not views."
        )
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for distance correlation; got {batch_size}.")
    if not isinstance(images, tf.data.Dataset) and image_size is None:
        image_size = images.shape[1]
    if isinstance(images, tf.data.Dataset) and image_size is None:
        raise ValueError("image_size is required for a tf.data.Dataset input.")
    if seed is not None and policy in ("randaugment", "autoaugment"):
        # KerasCV's operations draw from stateful generators and from
        # `tf.random.uniform` op seeds, which TensorFlow derives from the
        # global seed when the map is traced, and from the global generator
        # for layers built without a seed: fix both so that they repeat.
        tf.random.set_seed(seed)
        tf.random.set_global_generator(tf.random.Generator.from_seed(seed))
    augment = Policy(policy, image_size, crop_scale=crop_scale, seed=seed)
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    if input_context is not None:
        num_shards = input_context.num_input_pipelines
        shard_index = input_context.input_pipeline_id
    ds, fixed_size = _source(
        images, batch_size, seed=seed, shuffle=shuffle, labels=labels, cache=cache,
        num_shards=num_shards, shard_index=shard_index, shuffle_buffer=shuffle_buffer,
        caller="views()",
    )

    def finish(original, augmented, rest):
        out = (original, augmented)
        if labels:
            out += (rest[0],)
        if len(rest) == 2:
            out += (rest[1],)
        return out

    if fixed_size:
        # Same-size images: batch first, then everything runs batched.
        ds = ds.batch(batch_size, drop_remainder=True)

        def make_views(element, batch_seed):
            original = tf.cast(element[0], tf.float32)
            augmented = augment(original, batch_seed)
            return finish(original_view(original, image_size), augmented, element[1:])

        ds = tf.data.Dataset.zip((ds, _seeds(seed)))
        ds = ds.map(make_views, num_parallel_calls=1 if augment.stateful and seed is not None else parallel)
    else:
        # Images of different sizes: crop each to image_size, then batch.
        def crop_one(element, image_seed):
            image = tf.cast(element[0], tf.float32)
            crop_seed, rest_seed = tf.unstack(tf.random.experimental.stateless_split(image_seed, 2))
            cropped = augment.crop(image[None], crop_seed)[0]
            return (original_view(image, image_size), cropped, rest_seed) + tuple(element[1:])

        ds = tf.data.Dataset.zip((ds, _seeds(seed)))
        ds = ds.map(crop_one, num_parallel_calls=parallel)
        ds = ds.batch(batch_size, drop_remainder=True)

        def make_views(original, cropped, rest_seeds, *rest):
            augmented = tf.clip_by_value(augment.rest(cropped, rest_seeds[0]), 0.0, 255.0)
            return finish(original, augmented, rest)

        ds = ds.map(make_views, num_parallel_calls=1 if augment.stateful and seed is not None else parallel)
    options = tf.data.Options()
    options.deterministic = seed is not None
    ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)
