"""One SGD step of a tiny MV-MR on 1 or N (virtual CPU) devices, in a child
process of tests/test_data_parallel.py, which compares the runs.

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python tests/data_parallel_step.py 2 batch.npz init.weights.h5 out.npz

The first run (1 device, `distribution=""`) writes the initial weights; the
others load them. The output holds the step's logs (`log_<name>`), every
variable before and after the step (`initial_<i>`, `weight_<i>`, BatchNorm
moving statistics included, `moving` says which), and controls that show a per-replica loss
differs: `halves_loss` (1 device: the mean of the loss on each half of the
batch, beside `whole_loss` on the same weights) and, on TensorFlow with N
devices, `ungathered_log_loss` (the step with the all-gather switched off).
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from virtual_devices import split_cpu

    num_devices = int(sys.argv[1])
    split_cpu(num_devices)  # before anything initialises the engine's devices

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mvmr_keras import MVMR, distribution, losses, representations  # noqa: E402
from mvmr_keras.methods.base import config_encoder  # noqa: E402


def one_step(placement, config, batch, weights_path, run_eagerly=False):
    """The step's logs and the variables after it (and the model)."""
    with placement.building():
        model = MVMR(config_encoder(config, "encoder"), projector=config.projector,
                     representations=[representations.get("pixels")], teacher_weight=1.0)
        model.build((None, config.image_size, config.image_size, 3))
        if os.path.exists(weights_path):
            model.load_weights(weights_path)
        else:
            model.save_weights(weights_path)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), run_eagerly=run_eagerly)
    initial = [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]
    with placement.fitting(model):
        history = model.fit(batch["original"], batch["augmented"],
                            sample_weight=batch["teacher"],  # MVMR: the teacher embedding
                            batch_size=len(batch["original"]), epochs=1, shuffle=False,
                            verbose=0)
    logs = {k: v[-1] for k, v in history.history.items()}
    after = [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]
    return logs, initial, after, model


def main(num_devices, batch_path, weights_path, out_path):
    from tiny_training_config import tiny_config

    config = tiny_config(distribution="data_parallel" if num_devices > 1 else "",
                         num_devices=num_devices if num_devices > 1 else 0)
    batch = dict(np.load(batch_path))
    out = {}
    keras.utils.set_random_seed(0)
    # One placement for both steps: a second MirroredStrategy in the same
    # process clashes with the first's collective ops.
    with distribution.Placement(config) as placement:
        logs, initial, weights, model = one_step(placement, config, batch, weights_path)
        if num_devices > 1 and keras.backend.backend() == "tensorflow":
            # The control: the same step with each replica's dCor on its own
            # half (run eagerly: tracing a second step costs 20 s).
            distribution.gather_replicas = lambda values: values
            out["ungathered_log_loss"] = one_step(
                placement, config, batch, weights_path, run_eagerly=True)[0]["loss"]
    out.update({f"log_{k}": v for k, v in logs.items()})
    out.update({f"weight_{i}": w for i, w in enumerate(weights)})
    out.update({f"initial_{i}": w for i, w in enumerate(initial)})
    out["moving"] = np.array(["moving_" in w.path for w in model.weights])
    if num_devices == 1:
        # Inference-mode embeddings after the step, one jitted call each.
        z = model.predict_on_batch(batch["original"])
        z_aug = model.predict_on_batch(batch["augmented"])
        pixels = keras.ops.convert_to_numpy(
            model.representations[0](model.encoder.normalize(batch["original"])))

        def loss(part):
            terms = losses.mvmr_loss(z[part], z_aug[part], {"pixels": pixels[part]},
                                     teacher=batch["teacher"][part])
            return float(keras.ops.convert_to_numpy(terms["loss"]))

        half = len(z) // 2
        out["whole_loss"] = loss(slice(None))
        out["halves_loss"] = (loss(slice(0, half)) + loss(slice(half, None))) / 2
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(num_devices, *sys.argv[2:5])
