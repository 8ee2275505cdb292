"""`mvmr-evaluate` (or `python evaluate.py` in a checkout): scores a
trained encoder.

    mvmr-evaluate --mode=linear --encoder=W/encoder.keras [--config=digits]

Modes (spec section 8; details in mvmr_keras/evaluation/protocols.py):

    linear    frozen encoder, linear classifier (Adam, cosine), top-1/top-5
    knn       weighted k-nearest neighbours on normalised frozen features
    finetune  encoder + linear head fine-tuned on a fraction of the labels
    voc07     linear multi-label classifier on frozen features, mAP
    embedding embedding.png (t-SNE, or UMAP if installed, of the test
              features coloured by label) and TensorBoard projector files

Linear, kNN and VOC07 report, beside the encoder's score, the same protocol
on the raw pixels and on the config's untrained model (`--baselines`).

The data and the protocol settings come from `--config` (a file or a
shipped config's name; its `evaluation` block; override any field:
`--config.evaluation.epochs=20`). The encoder may have been trained on any
backend. Results go to `--workdir` (default: the encoder's folder) as
`results_<mode>.json`. Existing results there (such as those a training
run wrote after training, quoted by its results.json) are never replaced
without `--overwrite`: the command stops with one line saying so.
"""

import os
import sys

MODES = ("linear", "knn", "finetune", "voc07", "embedding")


def main(argv=None):
    """The console entry point; `argv` defaults to `sys.argv`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import app, flags

    from mvmr_keras import cli

    argv = sys.argv if argv is None else argv
    cli.use_shipped_config_names(argv)
    config_flag = cli.define_config_flag()
    mode_flag = flags.DEFINE_enum("mode", "linear", list(MODES), "Evaluation protocol.")
    encoder_flag = flags.DEFINE_string("encoder", None, "Path to an encoder.keras.",
                                       required=True)
    workdir_flag = flags.DEFINE_string("workdir", None,
                                       "Output folder (default: the encoder's).")
    overwrite_flag = flags.DEFINE_bool(
        "overwrite", False,
        "Replace existing results_<mode>.json and head files in the output folder.")
    baselines_flag = flags.DEFINE_list(
        "baselines", ["pixels", "random_init"],
        "Baselines scored under the same protocol (linear, knn, voc07); empty for none.")
    quiet_flag = flags.DEFINE_bool("quiet", False, "No progress bars, only the results.")

    def run(args):
        config = cli.config_value(config_flag, args)
        from mvmr_keras import evaluation

        try:
            evaluation.evaluate(mode_flag.value, encoder_flag.value, config,
                                workdir_flag.value, verbose=0 if quiet_flag.value else 1,
                                overwrite=overwrite_flag.value, baselines=baselines_flag.value)
        except evaluation.EvaluationError as e:
            sys.exit(f"error: {e}")

    app.run(run, argv=argv, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    main()
