"""One step of a tiny DINO and a tiny MOKD on 1 or N (virtual CPU) devices,
in a child process of tests/test_multicrop_data_parallel.py, which compares
the runs.

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python tests/multicrop_data_parallel_step.py 2 batch.npz WEIGHTS_DIR out.npz

The first run (1 device) writes each model's initial weights into
WEIGHTS_DIR; the others load them. The output holds, per method (`dino_`,
`mokd_` prefixes), the step's logs (`log_<name>`) and every variable before
and after the step (`initial_<i>`, `weight_<i>`): students, EMA teachers,
centres, step counters and BatchNorm's moving statistics. Clipping is set
tight enough to act on every tensor (DINO: AdamW), and MOKD's models use
SGD with coupled weight decay, so a step that clipped or decayed each replica's part of the
gradient would land elsewhere.
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

from mvmr_keras import distribution, methods  # noqa: E402
from mvmr_keras.configs import dino_digits, mokd_digits  # noqa: E402

CLIP = 1e-3  # per-tensor: every gradient of these tiny models is larger


def tiny_configs(num_devices):
    parallel = dict(distribution="data_parallel" if num_devices > 1 else "",
                    num_devices=num_devices if num_devices > 1 else 0)
    dino = dino_digits.get_config()
    dino.update(backbone_width=4, num_local_crops=2, epochs=2, steps_per_epoch=1,
                batch_size=8, warmup_epochs=0, learning_rate=1e-2, **parallel)
    # No BatchNorm in the heads: it leaves the Linear biases before it a
    # gradient of float noise, which Adam blows up to +-lr either way.
    dino.dino.update(out_dim=32, hidden_dim=16, bottleneck_dim=8, clip_grad=CLIP,
                     freeze_last_layer_epochs=0, use_bn_in_head=False)
    mokd = mokd_digits.get_config()
    mokd.update(backbone_width=4, epochs=2, steps_per_epoch=1, batch_size=8, warmup_epochs=0,
                optimizer="sgd", learning_rate=0.1, weight_decay=0.5, **parallel)
    mokd.mokd.update(thead_heads=2, out_dim=32, hidden_dim=16, bottleneck_dim=8,
                     freeze_last_layer_epochs=0, use_bn_in_head=False)
    # SGD for the ViT too: its attention's key biases have a gradient of
    # float noise (softmax ignores them), which Adam would blow up.
    # No drop-path: TensorFlow's replicas draw their own masks.
    mokd.mokd.second.update(backbone_width=12, warmup_epochs=0, learning_rate=0.1,
                            optimizer="sgd", clip_grad=CLIP, drop_path_rate=0.0)
    mokd.mokd.first.update(clip_grad=CLIP)
    return {"dino": dino, "mokd": mokd}


def one_step(placement, config, batch, weights_path):
    """The step's logs, the variables before and after it."""
    method = methods.create(config, log=lambda *a: None)
    with placement.building():
        model = method.build_model(steps_per_epoch=1)
        if os.path.exists(weights_path):
            model.load_weights(weights_path)
        else:
            model.save_weights(weights_path)
        model.compile(optimizer=method.build_optimizer(steps_per_epoch=1))
    initial = [np.array(keras.ops.convert_to_numpy(w)) for w in model.weights]
    with placement.fitting(model):
        history = model.fit(batch, batch_size=len(batch["global_crops"]), epochs=1,
                            shuffle=False, verbose=0)
    logs = {k: v[-1] for k, v in history.history.items()}
    after = [np.array(keras.ops.convert_to_numpy(w)) for w in model.weights]
    return logs, initial, after, [w.path for w in model.weights]


def main(num_devices, batch_path, weights_dir, out_path):
    data = dict(np.load(batch_path))
    batch = {"global_crops": data["global_crops"], "local_crops": data["local_crops"]}
    out = {}
    for name, config in tiny_configs(num_devices).items():
        keras.utils.set_random_seed(0)
        with distribution.Placement(config) as placement:
            logs, initial, after, paths = one_step(
                placement, config, batch, os.path.join(weights_dir, f"{name}.weights.h5"))
        out.update({f"{name}_log_{k}": np.asarray(v) for k, v in logs.items()})
        out.update({f"{name}_initial_{i}": w for i, w in enumerate(initial)})
        out.update({f"{name}_weight_{i}": w for i, w in enumerate(after)})
        out[f"{name}_paths"] = np.array(paths)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(num_devices, *sys.argv[2:5])
