"""Evaluation protocols for trained encoders (spec section 8).

- `linear_probe`: scikit-learn logistic regression on frozen features (the
  independent yardstick the trainer reports);
- `baselines`: the raw-pixel and random-init scores every result sits beside;
- `features`, `linear`, `knn`, `finetune`, `metrics`: the pieces of the
  protocols; `protocols.evaluate` runs one end to end (`evaluate.py`).

Nothing here imports TensorFlow at import time.
"""

from mvmr_keras.evaluation.baselines import (
    frozen_scores,
    pixel_encoder,
    pixel_scores,
)
from mvmr_keras.evaluation.encoders import EvaluationError, check_image_size, load_encoder
from mvmr_keras.evaluation.knn import knn_accuracy, knn_scores
from mvmr_keras.evaluation.linear_probe import (
    encoder_linear_probe_top1,
    extract_features,
    linear_probe_top1,
)
from mvmr_keras.evaluation.metrics import (
    average_precision,
    mean_average_precision,
    top_k_accuracy,
)
from mvmr_keras.evaluation.protocols import MODES, evaluate
