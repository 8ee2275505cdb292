"""mvmr-keras: MV-MR self-supervised learning in Keras 3.

Runs on TensorFlow, JAX and PyTorch (`KERAS_BACKEND`). Nothing here imports
TensorFlow at import time; only the input pipeline (`mvmr_keras.data`)
needs it, when it is used.
"""

from mvmr_keras import losses, models, representations
from mvmr_keras.losses import distance_correlation, mvmr_loss
from mvmr_keras.models import MVMR, ImageEncoder, Projector, ResNetBackbone

__version__ = "0.1.0"
