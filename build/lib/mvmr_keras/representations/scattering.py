"""`scattering`: the 2-D scattering transform of each channel (spec section 4).

The same transform as kymatio's `Scattering2D` (Morlet wavelets, order 2,
reflect padding, Fourier-domain convolution and subsampling), written in
`keras.ops` so that it runs inside the compiled train step of every backend.
Only kymatio's filter bank (plain NumPy) is reused, built once per layer.
"""

import functools

import keras
import numpy as np
from keras import ops

from mvmr_keras.representations.base import Representation
from mvmr_keras.representations.registry import register

# Single-channel images per chunk on PyTorch; see `Scattering2D.call`.
_TORCH_IMAGES_PER_CHUNK = 16


def num_scattering_paths(J, L):
    """K, the number of maps per channel: 1 + J*L + L*L*J*(J-1)/2."""
    return 1 + J * L + L * L * J * (J - 1) // 2


def padded_size(size, J):
    """kymatio's padded size: a multiple of 2**J at least 2**J beyond `size`."""
    return ((size + 2**J) // 2**J + 1) * 2**J


def reflect_indices(size, padded):
    """Source index of every padded position, as NumPy's `pad(mode="reflect")`.

    Padding by gathering works for any amount, also for pads larger than
    the image, where `ops.pad(mode="reflect")` is not defined on every
    backend.
    """
    before = (padded - size) // 2
    after = padded - size - before
    return np.pad(np.arange(size), (before, after), mode="reflect").astype("int32")


@functools.lru_cache(maxsize=8)
def morlet_filter_bank(padded_height, padded_width, J, L):
    """Fourier-domain filters, float32: `(phi, psi)`.

    `phi[res]` is the low-pass filter at resolution `res` (the image
    subsampled by 2**res), shape `(Mp / 2**res, Np / 2**res)`. `psi[j][res]`
    stacks the L wavelets of scale j at resolution res, shape `(L, ...)`,
    angles in kymatio's order.
    """
    # Imported here, not at module level: kymatio is only needed to build
    # the layer. (This module imports with SciPy 1.17; kymatio.numpy and
    # kymatio.torch do not, for want of scipy.special.sph_harm.)
    from kymatio.scattering2d.filter_bank import filter_bank

    bank = filter_bank(padded_height, padded_width, J, L)
    phi = [np.asarray(level, "float32") for level in bank["phi"]["levels"]]
    psi = []
    for j in range(J):
        wavelets = [w for w in bank["psi"] if w["j"] == j]
        wavelets.sort(key=lambda w: w["theta"])
        levels = len(wavelets[0]["levels"])
        psi.append(
            [
                np.stack([w["levels"][res] for w in wavelets]).astype("float32")
                for res in range(levels)
            ]
        )
    return phi, psi


def _filter_and_periodize(z, filters, k):
    """Spectra of `signal * filter`, subsampled by k in space, every pair.

    Args:
        z: a spectrum `(re, im)`, each `(N, P, m, n)`.
        filters: NumPy, `F` real Fourier-domain filters `(F, m, n)`.
        k: the subsampling factor, dividing m and n.

    Returns:
        `(re, im)`, each `(N, P * F, m / k, n / k)`, P-major: pair (p, f) at
        index `p * F + f`.

    Subsampling by k in space is the mean of the k x k aliased blocks of the
    spectrum (kymatio's `subsample_fourier`), so each output frequency is a
    k*k-term dot product of signal and filter over the blocks. Summing block
    by block never stores the full-resolution product: XLA fuses it into
    one loop, several times faster than a reshape to `(k, m/k, k, n/k)` and
    a mean, and eager PyTorch, run on small chunks (see `call`), does as
    well with it as with an einsum.
    """
    num_filters, m, n = filters.shape
    bm, bn = m // k, n // k
    scale = 1.0 / (k * k)
    parts = []
    for x in z:
        x = x[:, :, None]
        total = None
        for a in range(k):
            for b in range(k):
                rows, cols = slice(a * bm, (a + 1) * bm), slice(b * bn, (b + 1) * bn)
                block_filter = ops.convert_to_tensor(filters[:, rows, cols] * scale)
                term = ops.multiply(x[..., rows, cols], block_filter)
                total = term if total is None else ops.add(total, term)
        parts.append(ops.reshape(total, (-1, total.shape[1] * num_filters, bm, bn)))
    return tuple(parts)


def _modulus(z):
    real, imag = z
    return ops.sqrt(real * real + imag * imag)


def _fft2_of_real(x):
    return ops.fft2((x, ops.zeros_like(x)))


@register("scattering")
@keras.saving.register_keras_serializable(package="mvmr_keras")
class Scattering2D(Representation):
    """2-D scattering transform, order 2, applied to each channel.

    Args:
        J: number of scales; the output is subsampled by 2**J.
        L: number of angles.
        shape: optional `(H, W)` the layer is for; when given, images of
            another size are rejected. By default the size is taken from
            the first input.

    Input `(B, H, W, C)` float images; output `(B, H // 2**J, W // 2**J,
    C * K)` float32 with `K = 1 + J*L + L*L*J*(J-1)/2`; channel c's k-th path
    is at channel index `c * K + k`, the paths in kymatio's order (order 0,
    then order 1 by (j1, theta1), then order 2 by (j1, theta1, j2, theta2)).

    Example:

    >>> layer = Scattering2D(J=2, L=8)
    >>> layer(np.random.rand(2, 32, 32, 3)).shape
    (2, 8, 8, 243)
    """

    def __init__(self, J=2, L=8, shape=None, **kwargs):
        super().__init__(**kwargs)
        self.J = int(J)
        self.L = int(L)
        if self.J < 1 or self.L < 1:
            raise ValueError(
                f"Representation {self.description} needs J >= 1 and L >= 1; "
                f"got J={J}, L={L}."
            )
        self.image_size = None if shape is None else tuple(int(s) for s in shape)
        self.paths = num_scattering_paths(self.J, self.L)

    def check_image_shape(self, height, width, channels):
        if self.image_size is not None and (height, width) != self.image_size:
            raise ValueError(
                f"Representation {self.description} was made for "
                f"{self.image_size[0]}x{self.image_size[1]} images, shape "
                f"(B, {self.image_size[0]}, {self.image_size[1]}, C); got images of "
                f"{height}x{width}."
            )
        if min(height, width) < 2**self.J:
            raise ValueError(
                f"Representation {self.description} with J={self.J} needs "
                f"images of at least {2**self.J}x{2**self.J} pixels, shape "
                f"(B, >={2**self.J}, >={2**self.J}, C); got {height}x{width}."
            )

    def build(self, input_shape):
        super().build(input_shape)
        height, width = input_shape[1], input_shape[2]
        self._height, self._width = height, width
        padded_height = padded_size(height, self.J)
        padded_width = padded_size(width, self.J)
        self._row_indices = reflect_indices(height, padded_height)
        self._col_indices = reflect_indices(width, padded_width)
        self._phi, self._psi = morlet_filter_bank(
            padded_height, padded_width, self.J, self.L
        )

    def _lowpass(self, z, res):
        """S = unpad(real(ifft2(periodize(z * phi)))), at resolution 2**J.

        `z` is the spectrum `(re, im)` of signals at resolution `res`.
        """
        z = _filter_and_periodize(z, self._phi[res][None], 2 ** (self.J - res))
        real, _ = ops.ifft2(z)
        return real[:, :, 1:-1, 1:-1]

    def _lowpass_of_real(self, u, res):
        """`_lowpass` of real signals `u` `(N, P, m, n)`, given in space.

        phi is real and even, so a real signal stays real through it: with
        the two halves of the paths as the real and imaginary parts of one
        complex signal, one FFT, product and inverse FFT give both halves'
        outputs, as the real and imaginary parts. Half the FFTs, and no
        zero imaginary part to build.
        """
        paths = u.shape[1]
        if paths % 2:
            return self._lowpass(_fft2_of_real(u), res)
        half = paths // 2
        z = ops.fft2((u[:, :half], u[:, half:]))
        z = _filter_and_periodize(z, self._phi[res][None], 2 ** (self.J - res))
        real, imag = ops.ifft2(z)
        return ops.concatenate([real, imag], axis=1)[:, :, 1:-1, 1:-1]

    def _scatter(self, x):
        """x `(N, Mp, Np)` padded images -> `(N, K, H / 2**J, W / 2**J)`."""
        J, L = self.J, self.L
        x_hat = _fft2_of_real(x[:, None])
        order0 = [self._lowpass(x_hat, 0)]
        order1, order2 = [], []
        for j1 in range(J):
            # |x * psi_j1|, computed at resolution j1 for all L angles.
            u1 = _modulus(
                ops.ifft2(_filter_and_periodize(x_hat, self._psi[j1][0], 2**j1))
            )
            if j1 == J - 1:
                # No second order from the last scale: only the low pass.
                order1.append(self._lowpass_of_real(u1, j1))
                continue
            u1_hat = _fft2_of_real(u1)
            order1.append(self._lowpass(u1_hat, j1))
            per_j2 = []
            for j2 in range(j1 + 1, J):
                # Every (theta1, theta2) pair: (N, L, 1) x (L, ...) -> (N, L*L).
                pairs = _filter_and_periodize(
                    u1_hat, self._psi[j2][j1], 2 ** (j2 - j1)
                )
                u2 = _modulus(ops.ifft2(pairs))
                s2 = self._lowpass_of_real(u2, j2)
                per_j2.append(ops.reshape(s2, (-1, L, L) + tuple(s2.shape[2:])))
            # kymatio's order: theta1 outermost, then j2, then theta2.
            s2 = ops.concatenate(per_j2, axis=2)
            order2.append(
                ops.reshape(s2, (-1, s2.shape[1] * s2.shape[2]) + tuple(s2.shape[3:]))
            )
        return ops.concatenate(order0 + order1 + order2, axis=1)

    def call(self, images):
        images = ops.cast(images, "float32")
        channels = images.shape[-1]
        # Every channel is an independent image: (B, H, W, C) -> (B*C, H, W).
        x = ops.reshape(
            ops.transpose(images, (0, 3, 1, 2)), (-1, self._height, self._width)
        )
        x = ops.take(x, self._row_indices, axis=1)
        x = ops.take(x, self._col_indices, axis=2)
        on_cpu = str(getattr(x, "device", "cpu")).startswith("cpu")
        if keras.backend.backend() == "torch" and on_cpu:
            # Eager PyTorch makes one pass over memory per op; on a few
            # images at a time the intermediates stay in cache, about twice
            # as fast on CPU as the whole batch at once. (XLA schedules
            # the whole batch well by itself, under tf.function the batch
            # size is not known, and a GPU wants the whole batch.)
            count = x.shape[0]
            s = ops.concatenate(
                [
                    self._scatter(x[start:start + _TORCH_IMAGES_PER_CHUNK])
                    for start in range(0, count, _TORCH_IMAGES_PER_CHUNK)
                ],
                axis=0,
            )
        else:
            s = self._scatter(x)
        out_h, out_w = s.shape[2], s.shape[3]
        # (B*C, K, h, w) -> (B, h, w, C*K), channel c's path k at c*K + k.
        s = ops.reshape(s, (-1, channels, self.paths, out_h, out_w))
        s = ops.transpose(s, (0, 3, 4, 1, 2))
        return ops.reshape(s, (-1, out_h, out_w, channels * self.paths))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (
            batch,
            height // 2**self.J,
            width // 2**self.J,
            channels * self.paths,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"J": self.J, "L": self.L, "shape": self.image_size})
        return config
