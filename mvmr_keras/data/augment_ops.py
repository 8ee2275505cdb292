"""Batched, stateless image augmentations for `tf.data` (TensorFlow ops).

Every function takes a float32 batch `(B, H, W, 3)` with values in
[0, 255] and a stateless seed (an int tensor of shape `(2,)`), draws an
independent random parameter per image, and returns a batch of the same
dtype and range. The same seed gives the same output, whatever the number
of parallel `tf.data` calls, which the stateful generators inside KerasCV
and Keras preprocessing layers cannot promise.

Why not the KerasCV layers themselves: KerasCV's `RandomCropAndResize`,
`RandomApply` and `RandomGaussianBlur` loop over the images of a batch
(a `while_loop`, measured at about 250 view pairs/s at 96 px on two loaded
cores), and their `tf.random.Generator` state is shared by parallel map
calls, so a seed does not fix the output. Keras core's `RandomGaussianBlur`
draws one sigma per batch, not per image. The ops here follow the
torchvision definitions the reference uses (spec section 5).

Example:

>>> import tensorflow as tf
>>> images = tf.random.uniform((4, 32, 32, 3), 0, 255)
>>> seed = tf.constant([1, 2], tf.int64)
>>> random_resized_crop(images, 24, (0.08, 1.0), (3 / 4, 4 / 3), seed).shape
TensorShape([4, 24, 24, 3])
"""

import math

import tensorflow as tf

# ITU-R 601 luma weights, as torchvision's and tf.image's grayscale.
_LUMA = (0.299, 0.587, 0.114)


def split_seed(seed, n):
    """`n` independent stateless seeds from one, as a list."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def _uniform(seed, batch, low, high):
    return tf.random.stateless_uniform((batch,), seed, minval=low, maxval=high)


def _where(mask, a, b):
    return tf.where(mask[:, None, None, None], a, b)


def grayscale(images):
    """Luma, repeated on three channels."""
    gray = tf.reduce_sum(images * tf.constant(_LUMA, images.dtype), axis=-1, keepdims=True)
    return tf.broadcast_to(gray, tf.shape(images))


def random_crop_boxes(images, scale, ratio, seed, flip_rate=0.0):
    """Random boxes `(B, 4)` as `[top, left, bottom, right]` fractions of
    each image's height and width: area fraction in `scale`, aspect ratio
    in `ratio` (log-uniform). A random `flip_rate` of them have left and
    right swapped, which mirrors the crop.

    Where the drawn box does not fit (a wide box in a tall image), its
    sides are clipped to the image, where torchvision draws again up to ten
    times and then falls back to a centre crop.
    """
    batch = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    area_seed, ratio_seed, y_seed, x_seed = split_seed(seed, 4)
    area = _uniform(area_seed, batch, scale[0], scale[1])
    log_ratio = _uniform(ratio_seed, batch, math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    # Box sides as fractions of the image's height and width.
    box_width = tf.minimum(tf.sqrt(area * aspect * height / width), 1.0)
    box_height = tf.minimum(tf.sqrt(area / aspect * width / height), 1.0)
    top = _uniform(y_seed, batch, 0.0, 1.0) * (1.0 - box_height)
    left = _uniform(x_seed, batch, 0.0, 1.0) * (1.0 - box_width)
    right = left + box_width
    if flip_rate:
        flip_seed = tf.random.experimental.stateless_fold_in(seed, 7)
        flip = _uniform(flip_seed, batch, 0.0, 1.0) < flip_rate
        left, right = tf.where(flip, right, left), tf.where(flip, left, right)
    return tf.stack([top, left, top + box_height, right], axis=1)


def random_resized_crop(images, size, scale, ratio, seed, method="bilinear", flip_rate=0.0):
    """Crops a random box of area fraction in `scale` and aspect ratio in
    `ratio` (log-uniform) from each image and resizes it to `size` x `size`;
    a random `flip_rate` of the crops are mirrored left-right at no extra
    cost (the box's left and right edges swapped). See `random_crop_boxes`.

    `method`: `"bilinear"` or `"nearest"` (`tf.image.crop_and_resize`), or
    `"bicubic"` (`resized_crop_bicubic`: PIL's antialiased bicubic, what
    torchvision's `RandomResizedCrop` does to PIL images).
    """
    boxes = random_crop_boxes(images, scale, ratio, seed, flip_rate=flip_rate)
    if method == "bicubic":
        return resized_crop_bicubic(images, boxes, size)
    return tf.image.crop_and_resize(
        images, boxes, tf.range(tf.shape(images)[0]), (size, size), method=method
    )


def _keys_cubic(x, a=-0.5):
    x = tf.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return tf.where(x < 1.0, near, tf.where(x < 2.0, far, tf.zeros_like(x)))


def _crop_resize_weights(start, end, length, size):
    """`(B, size, length)` weights that resample `[start, end]` (fractions
    of `length` pixels; `end < start` mirrors) to `size` samples: PIL's
    bicubic, its kernel stretched by the downscaling factor (antialias),
    pixels outside the image left out and each row normalised to 1."""
    length_f = tf.cast(length, tf.float32)
    extent = (end - start) * length_f
    stretch = tf.maximum(tf.abs(extent) / size, 1.0)
    steps = (tf.range(size, dtype=tf.float32) + 0.5) / size
    centres = start[:, None] * length_f + steps[None, :] * extent[:, None]
    pixels = tf.range(length_f) + 0.5
    weights = _keys_cubic((pixels[None, None, :] - centres[:, :, None]) / stretch[:, None, None])
    return weights / tf.reduce_sum(weights, axis=2, keepdims=True)


def resized_crop_bicubic(images, boxes, size):
    """Crops each image to its box (`[top, left, bottom, right]` fractions
    of its height and width, continuous, left > right mirrors) and resizes
    it to `size` x `size` with PIL's antialiased bicubic (a = -0.5), as two
    batched matrix products. Values may overshoot the input range slightly,
    as bicubic does."""
    rows = _crop_resize_weights(boxes[:, 0], boxes[:, 2], tf.shape(images)[1], size)
    cols = _crop_resize_weights(boxes[:, 1], boxes[:, 3], tf.shape(images)[2], size)
    x = tf.einsum("bsh,bhwc->bswc", rows, images)
    return tf.einsum("btw,bswc->bstc", cols, x)


def random_crop_with_padding(images, size, padding, seed):
    """Zero-pads each side by `padding` and crops a random `size` x `size`
    window at an integer offset (torchvision `RandomCrop(size, padding)`)."""
    batch = tf.shape(images)[0]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    padded_height = tf.shape(padded)[1]
    padded_width = tf.shape(padded)[2]
    y_seed, x_seed = split_seed(seed, 2)
    top = tf.random.stateless_uniform(
        (batch,), y_seed, minval=0, maxval=padded_height - size + 1, dtype=tf.int32
    )
    left = tf.random.stateless_uniform(
        (batch,), x_seed, minval=0, maxval=padded_width - size + 1, dtype=tf.int32
    )
    # Normalised box corners on pixel centres: crop_and_resize then samples
    # exactly the integer pixels of the window.
    h = tf.cast(padded_height - 1, tf.float32)
    w = tf.cast(padded_width - 1, tf.float32)
    top, left = tf.cast(top, tf.float32), tf.cast(left, tf.float32)
    boxes = tf.stack(
        [top / h, left / w, (top + size - 1) / h, (left + size - 1) / w], axis=1
    )
    return tf.image.crop_and_resize(padded, boxes, tf.range(batch), (size, size))


def random_flip_left_right(images, seed, rate=0.5):
    flip = _uniform(seed, tf.shape(images)[0], 0.0, 1.0) < rate
    return _where(flip, tf.reverse(images, axis=[2]), images)


def random_apply(transform, images, seed, rate):
    """`transform(images, seed)` on a random `rate` of the images."""
    apply_seed, transform_seed = split_seed(seed, 2)
    apply = _uniform(apply_seed, tf.shape(images)[0], 0.0, 1.0) < rate
    return _where(apply, transform(images, transform_seed), images)


def color_jitter(images, seed, brightness, contrast, saturation, hue):
    """torchvision `ColorJitter(brightness, contrast, saturation, hue)`.

    Brightness, contrast and saturation factors are drawn per image from
    `[max(0, 1 - s), 1 + s]`, the hue shift from `[-hue, hue]` (in turns of
    the colour wheel); they are applied in that fixed order (torchvision
    shuffles the order per call).
    """
    batch = tf.shape(images)[0]
    b_seed, c_seed, s_seed, h_seed = split_seed(seed, 4)

    def factor(s, strength):
        return _uniform(s, batch, max(0.0, 1.0 - strength), 1.0 + strength)[:, None, None, None]

    x = images
    if brightness:
        x = tf.clip_by_value(x * factor(b_seed, brightness), 0.0, 255.0)
    if contrast:
        mean = tf.reduce_mean(grayscale(x)[..., :1], axis=[1, 2, 3], keepdims=True)
        c = factor(c_seed, contrast)
        x = tf.clip_by_value(c * x + (1.0 - c) * mean, 0.0, 255.0)
    if saturation:
        s = factor(s_seed, saturation)
        x = tf.clip_by_value(s * x + (1.0 - s) * grayscale(x), 0.0, 255.0)
    if hue:
        shift = _uniform(h_seed, batch, -hue, hue)[:, None, None]
        hsv = tf.image.rgb_to_hsv(x / 255.0)
        h = tf.math.floormod(hsv[..., 0] + shift, 1.0)
        x = tf.image.hsv_to_rgb(tf.stack([h, hsv[..., 1], hsv[..., 2]], axis=-1)) * 255.0
        x = tf.clip_by_value(x, 0.0, 255.0)
    return x


_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.596, -0.274, -0.322),
    (0.211, -0.523, 0.312),
)


def fused_color(images, seed, jitter_rate, brightness, contrast, saturation, hue, gray_rate):
    """Colour jitter applied with probability `jitter_rate`, then grayscale
    with probability `gray_rate`, as ONE per-image affine colour map.

    Brightness, saturation, hue and grayscale are linear in RGB and
    contrast is affine (the blend with the image's mean grey), so their
    composition is `A x + v` per image: one pass over the pixels instead of
    one per step. Two differences from torchvision, for speed: the hue
    shift is a rotation in YIQ space (torchvision shifts H in HSV; alike
    for small shifts), and values are clipped to [0, 255] once at the end
    rather than after every step.
    """
    batch = tf.shape(images)[0]
    seeds = split_seed(seed, 6)

    def factor(s, strength):
        return _uniform(s, batch, max(0.0, 1.0 - strength), 1.0 + strength)

    eye = tf.eye(3, batch_shape=[batch])
    luma = tf.broadcast_to(tf.constant([_LUMA] * 3, tf.float32), tf.shape(eye))
    b = factor(seeds[0], brightness)[:, None, None]
    c = factor(seeds[1], contrast)[:, None, None]
    sat = factor(seeds[2], saturation)[:, None, None]
    saturate = sat * eye + (1.0 - sat) * luma
    angle = _uniform(seeds[3], batch, -hue, hue) * 2.0 * math.pi
    cos, sin = tf.cos(angle), tf.sin(angle)
    zero, one = tf.zeros_like(cos), tf.ones_like(cos)
    rotate = tf.stack([tf.stack([one, zero, zero], -1),
                       tf.stack([zero, cos, -sin], -1),
                       tf.stack([zero, sin, cos], -1)], axis=1)
    yiq = tf.constant(_RGB_TO_YIQ, tf.float32)
    hue_map = tf.linalg.inv(yiq)[None] @ rotate @ yiq[None]
    # x -> hue(sat(c * b x + (1 - c) * b * mean_grey(x))).
    colour = hue_map @ saturate
    jitter_matrix = b * c * colour
    mean_grey = tf.reduce_mean(tf.tensordot(images, tf.constant(_LUMA), 1), axis=[1, 2])
    jitter_offset = ((1.0 - c) * b)[:, 0] * mean_grey[:, None] * tf.reduce_sum(colour, axis=2)
    jittered = _uniform(seeds[4], batch, 0.0, 1.0) < jitter_rate
    matrix = tf.where(jittered[:, None, None], jitter_matrix, eye)
    offset = tf.where(jittered[:, None], jitter_offset, tf.zeros_like(jitter_offset))
    greyed = _uniform(seeds[5], batch, 0.0, 1.0) < gray_rate
    matrix = tf.where(greyed[:, None, None], luma @ matrix, matrix)
    offset = tf.where(greyed[:, None], tf.linalg.matvec(luma, offset), offset)
    out = tf.einsum("bhwc,bdc->bhwd", images, matrix) + offset[:, None, None, :]
    return tf.clip_by_value(out, 0.0, 255.0)


def solarize(images, threshold=128.0):
    """PIL's `ImageOps.solarize`: values at or above `threshold` become
    `255 - value`."""
    return tf.where(images >= threshold, 255.0 - images, images)


def random_solarize(images, seed, rate, threshold=128.0):
    return random_apply(lambda x, _: solarize(x, threshold), images, seed, rate)


def random_grayscale(images, seed, rate):
    return random_apply(lambda x, _: grayscale(x), images, seed, rate)


def gaussian_blur(images, kernel_size, sigma_range, seed):
    """Separable Gaussian blur with a sigma drawn per image, reflect
    padding (torchvision `GaussianBlur(kernel_size, sigma_range)`)."""
    if kernel_size < 2:
        return images
    radius = kernel_size // 2
    sigma = _uniform(seed, tf.shape(images)[0], sigma_range[0], sigma_range[1])
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-0.5 * tf.square(offsets[None, :] / sigma[:, None]))
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)  # (B, k)
    # The batch's images and channels become the channels of one image, so
    # that a depthwise convolution gives each image its own kernel.
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    stacked = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, height, width, batch * 3])
    stacked = tf.pad(stacked, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    per_channel = tf.reshape(tf.repeat(weights, 3, axis=0), [batch * 3, kernel_size])
    kernel = tf.transpose(per_channel)  # (k, B * 3)
    out = tf.nn.depthwise_conv2d(stacked, kernel[:, None, :, None], [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, kernel[None, :, :, None], [1, 1, 1, 1], "VALID")
    out = tf.reshape(out, [height, width, batch, 3])
    return tf.transpose(out, [2, 0, 1, 3])
