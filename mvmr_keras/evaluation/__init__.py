"""Evaluation protocols for trained encoders."""

from mvmr_keras.evaluation.linear_probe import (
    encoder_linear_probe_top1,
    extract_features,
    linear_probe_top1,
)
