"""Evaluates a trained encoder: `python evaluate.py --mode=linear --encoder=W/encoder.keras`.

Modes (spec section 8; details in mvmr_keras/evaluation/protocols.py):

    linear    frozen encoder, linear classifier (Adam, cosine), top-1/top-5
    knn       weighted k-nearest neighbours on normalised frozen features
    finetune  encoder + linear head fine-tuned on a fraction of the labels
    voc07     linear multi-label classifier on frozen features, mAP
    embedding embedding.png (t-SNE, or UMAP if installed, of the test
              features coloured by label) and TensorBoard projector files

Linear, kNN and VOC07 report, beside the encoder's score, the same protocol
on the raw pixels and on the config's untrained model (`--baselines`).

The data and the protocol settings come from `--config` (the config's
`evaluation` block; override any field: `--config.evaluation.epochs=20`).
The encoder may have been trained on any backend. Results go to
`--workdir` (default: the encoder's folder) as `results_<mode>.json`.
Existing results there (such as those a training run wrote after training,
quoted by its results.json) are never replaced without `--overwrite`: the
command stops with one line saying so.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

try:
    from mvmr_keras import cli  # noqa: E402  (imports Keras)
except ValueError as e:  # Keras refuses an unknown KERAS_BACKEND at import
    sys.exit(f"error: {e}; KERAS_BACKEND must be tensorflow, jax or torch")

MODES = ("linear", "knn", "finetune", "voc07", "embedding")


_CONFIG = cli.define_config_flag()
_MODE = flags.DEFINE_enum("mode", "linear", list(MODES), "Evaluation protocol.")
_ENCODER = flags.DEFINE_string("encoder", None, "Path to an encoder.keras.", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default: the encoder's).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace existing results_<mode>.json and head files in the output folder.")
_BASELINES = flags.DEFINE_list(
    "baselines", ["pixels", "random_init"],
    "Baselines scored under the same protocol (linear, knn, voc07); empty for none.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bars, only the results.")


def main(argv):
    config = cli.config_value(_CONFIG, argv)
    from mvmr_keras import evaluation

    try:
        evaluation.evaluate(_MODE.value, _ENCODER.value, config, _WORKDIR.value,
                            verbose=0 if _QUIET.value else 1, overwrite=_OVERWRITE.value,
                            baselines=_BASELINES.value)
    except evaluation.EvaluationError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
