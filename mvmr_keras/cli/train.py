"""`mvmr-train` (or `python train.py` in a checkout): trains MV-MR.

    mvmr-train --config=digits --workdir=runs/digits [--config.epochs=2]

`--config` is a config file or the name of a shipped one (default:
`digits`); any field can be overridden. The backend is Keras's:
`KERAS_BACKEND=jax mvmr-train ...`. Re-running the same command after an
interruption resumes from the last completed epoch. A job of several
processes (hosts) runs this command once per process with
`--coordinator_address`, `--num_processes` and `--process_id`. Errors are one line on
stderr and a non-zero exit (130 after Ctrl-C, 143 after SIGTERM: both
stop at the next step).
"""

import os
import sys


def main(argv=None):
    """The console entry point; `argv` defaults to `sys.argv`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ chatter
    from absl import app, flags

    from mvmr_keras import cli

    argv = sys.argv if argv is None else argv
    cli.use_shipped_config_names(argv)
    config_flag = cli.define_config_flag()
    workdir_flag = flags.DEFINE_string("workdir", None, "Directory for all outputs.",
                                       required=True)
    # A job of several processes (JAX; README, "Several devices"): every
    # process runs the same command with its own --process_id.
    coordinator_flag = flags.DEFINE_string(
        "coordinator_address", None,
        "HOST:PORT of process 0 of a multi-process job (default: "
        "$KERAS_DISTRIBUTION_JOB_ADDRESSES).")
    processes_flag = flags.DEFINE_integer(
        "num_processes", None,
        "Processes in the job (default: $KERAS_DISTRIBUTION_NUM_PROCESSES, else 1).")
    process_id_flag = flags.DEFINE_integer(
        "process_id", None,
        "This process's id in [0, num_processes) (default: $KERAS_DISTRIBUTION_PROCESS_ID).")

    def run(args):
        config = cli.config_value(config_flag, args)
        from mvmr_keras import distribution, training

        try:
            distribution.initialize_processes(
                coordinator_flag.value, processes_flag.value, process_id_flag.value)
        except distribution.DistributionError as e:
            sys.exit(f"error: {e}")
        try:
            training.train(config, workdir_flag.value)
        except (training.ConfigError, training.TrainingDiverged) as e:
            sys.exit(f"error: {e}")
        except training.TrainingInterrupted as e:
            print(str(e), file=sys.stderr)
            sys.exit(128 + e.signal_number)  # the shell's code: 130 for Ctrl-C

    app.run(run, argv=argv, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    main()
