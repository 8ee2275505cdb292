"""Hand-crafted representations r_k of the original view (spec section 4).

Every layer here maps normalised NHWC images to an NHWC float32 map, each
channel on its own (channel c's k-th map at channel index c*K + k). Get one
by name with `get(name, **kwargs)`; the names are `pixels`,
`augmented_pixels`, `scattering`, `hog`, `hog_interpolated`, `local_std`,
`dct` and `patch_scattering`.
"""

from mvmr_keras.representations.augmented_pixels import AugmentedPixels
from mvmr_keras.representations.base import Representation
from mvmr_keras.representations.dct import DCT2D
from mvmr_keras.representations.hog import HOG, InterpolatedHOG
from mvmr_keras.representations.local_std import LocalStd
from mvmr_keras.representations.patch_scattering import PatchScattering2D
from mvmr_keras.representations.pixels import Pixels
from mvmr_keras.representations.registry import available, get, parse, register
from mvmr_keras.representations.scattering import Scattering2D

# The set the reference trains with (spec section 4).
DEFAULT_REPRESENTATIONS = (
    "pixels",
    "scattering",
    "augmented_pixels",
    "hog",
    "local_std",
)
