"""`augmented_pixels`: a fresh random augmentation of the original view.

The augmentation runs inside the train step, on the normalised original
view, with `keras.random` and a `SeedGenerator` owned by the layer. Keras
threads the generator's state through the compiled step of every backend
(it is one of the layer's non-trainable variables), so each step draws anew
and the input pipeline keeps yielding plain `(original, augmented)` pairs.

As in the reference, which applies torchvision transforms to a whole batch
tensor, one random draw serves the whole batch.
"""

import math

import keras
import numpy as np
from keras import ops

from mvmr_keras.representations.base import Representation
from mvmr_keras.representations.registry import register

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)


def _hue_rotation_parts():
    """`(A, B, C)` with `A + cos(t) B + sin(t) C` = hue rotation by t in RGB.

    A hue shift is a rotation of the (I, Q) chroma plane of YIQ:
    RGB -> YIQ, rotate, back to RGB.
    """
    rgb_to_yiq = np.array(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
    )
    yiq_to_rgb = np.linalg.inv(rgb_to_yiq)
    keep_luma = np.diag([1.0, 0.0, 0.0])
    cos_part = np.diag([0.0, 1.0, 1.0])
    sin_part = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    return tuple(
        (yiq_to_rgb @ part @ rgb_to_yiq).astype("float32")
        for part in (keep_luma, cos_part, sin_part)
    )


_HUE_ROTATION_PARTS = _hue_rotation_parts()


def _grayscale(images):
    """Luma `(B, H, W, 1)` of RGB images."""
    weights = ops.convert_to_tensor(_LUMA, dtype="float32")
    return ops.sum(images * weights, axis=-1, keepdims=True)


def _resampling_matrix(start, length, size):
    """Bilinear resampling `(size, size)` of the span [start, start+length).

    Row i holds the weights of output pixel i over the input pixels, with
    half-pixel centres (`align_corners=False`). The span lies inside the
    image, so this only ever upsamples and needs no antialiasing.
    """
    positions = ops.arange(size, dtype="float32")
    source = start + (positions + 0.5) * (length / size) - 0.5
    source = ops.clip(source, 0.0, size - 1.0)
    return ops.relu(1.0 - ops.abs(source[:, None] - positions[None, :]))


@register("augmented_pixels")
@keras.saving.register_keras_serializable(package="mvmr_keras")
class AugmentedPixels(Representation):
    """A random augmentation of RGB images, one draw per batch.

    Approximates the reference's custom policy (spec section 5), applied to
    the normalised original view:

    1. random resized crop (area fraction `crop_scale`, aspect ratio
       `crop_ratio`, log-uniform) back to the input size, bilinear; a crop
       that would not fit is clipped to the image instead of redrawn;
    2. horizontal flip with probability `flip_probability`;
    3. with probability `jitter_probability`: brightness, contrast and
       saturation factors uniform in `[1 - s, 1 + s]` for the strengths
       in `jitter[:3]`, and a hue shift uniform in `[-h, h]` turns,
       `h = jitter[3]`, done as a rotation of the YIQ chroma plane (HSV is
       meaningless on normalised values); applied in that fixed order,
       without torchvision's clamp to [0, 1], which the reference applies
       to normalised values by accident;
    4. grayscale with probability `grayscale_probability`;
    5. Gaussian blur, kernel `2 * int(0.05 * min(H, W)) + 1`, sigma uniform
       in `blur_sigma`, reflect padding.

    Args:
        seed: seed of the layer's `SeedGenerator` (None: random).

    Input `(B, H, W, 3)`; output `(B, H, W, 3)` float32.

    Example:

    >>> AugmentedPixels(seed=0)(np.random.rand(2, 32, 32, 3)).shape
    (2, 32, 32, 3)
    """

    def __init__(
        self,
        crop_scale=(0.08, 1.0),
        crop_ratio=(3.0 / 4.0, 4.0 / 3.0),
        flip_probability=0.5,
        jitter=(0.8, 0.8, 0.8, 0.2),
        jitter_probability=0.8,
        grayscale_probability=0.2,
        blur_sigma=(0.1, 2.0),
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.crop_scale = tuple(float(v) for v in crop_scale)
        self.crop_ratio = tuple(float(v) for v in crop_ratio)
        self.flip_probability = float(flip_probability)
        self.jitter = tuple(float(v) for v in jitter)
        self.jitter_probability = float(jitter_probability)
        self.grayscale_probability = float(grayscale_probability)
        self.blur_sigma = tuple(float(v) for v in blur_sigma)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def check_image_shape(self, height, width, channels):
        if channels != 3:
            raise ValueError(
                f"Representation {self.description} needs RGB images, shape "
                f"(B, H, W, 3); got {channels} channels."
            )

    def _crop_flip(self, images, draw):
        height, width = images.shape[1], images.shape[2]
        low, high = self.crop_scale
        area = (low + (high - low) * draw[0]) * (height * width)
        log_low, log_high = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        ratio = ops.exp(log_low + (log_high - log_low) * draw[1])
        crop_w = ops.clip(ops.sqrt(area * ratio), 1.0, float(width))
        crop_h = ops.clip(ops.sqrt(area / ratio), 1.0, float(height))
        rows = _resampling_matrix(draw[3] * (height - crop_h), crop_h, height)
        cols = _resampling_matrix(draw[2] * (width - crop_w), crop_w, width)
        cols = ops.where(draw[4] < self.flip_probability, ops.flip(cols, axis=0), cols)
        images = ops.einsum("is,bsjc->bijc", rows, images)
        return ops.einsum("jt,bitc->bijc", cols, images)

    def _color(self, images, draw):
        # Factors of 1 and a zero hue shift when jitter is not applied, so
        # that the graph has no data-dependent branch.
        apply = draw[5] < self.jitter_probability

        def factor(strength, u):
            return ops.where(apply, 1.0 + strength * (2.0 * u - 1.0), 1.0)

        brightness, contrast, saturation, hue = self.jitter
        images = images * factor(brightness, draw[6])
        gray_mean = ops.mean(_grayscale(images), axis=(1, 2, 3), keepdims=True)
        c = factor(contrast, draw[7])
        images = c * images + (1.0 - c) * gray_mean
        s = factor(saturation, draw[8])
        images = s * images + (1.0 - s) * _grayscale(images)
        angle = ops.where(apply, 2.0 * math.pi * hue * (2.0 * draw[9] - 1.0), 0.0)
        images = self._rotate_hue(images, angle)
        gray = ops.where(draw[10] < self.grayscale_probability, 1.0, 0.0)
        return gray * _grayscale(images) + (1.0 - gray) * images

    def _rotate_hue(self, images, angle):
        keep, cos_part, sin_part = (
            ops.convert_to_tensor(part) for part in _HUE_ROTATION_PARTS
        )
        transform = keep + ops.cos(angle) * cos_part + ops.sin(angle) * sin_part
        return ops.einsum("bhwc,dc->bhwd", images, transform)

    def _blur(self, images, draw):
        height, width = images.shape[1], images.shape[2]
        radius = int(0.05 * min(height, width))
        if radius == 0:
            return images
        low, high = self.blur_sigma
        sigma = low + (high - low) * draw[11]
        offsets = ops.arange(-radius, radius + 1, dtype="float32")
        kernel = ops.exp(-(offsets * offsets) / (2.0 * sigma * sigma))
        kernel = kernel / ops.sum(kernel)
        padded = ops.pad(
            images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect"
        )
        size = 2 * radius + 1
        rows = sum(kernel[i] * padded[:, i:i + height] for i in range(size))
        return sum(kernel[j] * rows[:, :, j:j + width] for j in range(size))

    def call(self, images):
        images = ops.cast(images, "float32")
        draw = keras.random.uniform((12,), seed=self.seed_generator)
        images = self._crop_flip(images, draw)
        images = self._color(images, draw)
        return self._blur(images, draw)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "crop_scale": list(self.crop_scale),
                "crop_ratio": list(self.crop_ratio),
                "flip_probability": self.flip_probability,
                "jitter": list(self.jitter),
                "jitter_probability": self.jitter_probability,
                "grayscale_probability": self.grayscale_probability,
                "blur_sigma": list(self.blur_sigma),
                "seed": self.seed,
            }
        )
        return config
