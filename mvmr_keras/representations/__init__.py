"""Hand-crafted representations r_k of the original view (spec section 4)."""

from mvmr_keras.representations.pixels import Pixels
from mvmr_keras.representations.registry import available, get, parse, register
