"""Training throughput of `data_parallel` at 1 and N devices.

    python bench/scaling.py [--devices=1,2] [--backends=jax,tensorflow]
        [--batch_size=64] [--steps=10] [--image_size=32] [--width=64]

Each (backend, device count) runs in a fresh process: the digits config's
MV-MR (ResNet18, the reference representation set unless
`--representations`) under `config.distribution = "data_parallel"` over
that many devices, on random images fed from NumPy (no dataset needed), one
warm-up epoch and then `--steps` timed steps at the same global batch.
Prints images/s and the speed-up over 1 device.

On a machine without accelerators the devices are virtual CPU devices
(`--xla_force_host_platform_device_count`, TensorFlow logical devices):
they share the same cores, so the numbers say nothing about speed; run it
on a machine with N GPUs for figures that do.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
n = args["devices"]
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    if not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * n)
import keras
import numpy as np
from mvmr_keras import distribution, methods
from mvmr_keras.configs import digits

config = digits.get_config()
config.image_size = args["image_size"]
config.backbone_width = args["width"]
config.batch_size = args["batch_size"]
config.representations = args["representations"]
config.distribution = "data_parallel" if n > 1 else ""
config.num_devices = n if n > 1 else 0
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
shape = (args["batch_size"] * args["steps"], args["image_size"], args["image_size"], 3)
x = rng.uniform(0, 255, shape).astype("float32")
y = rng.uniform(0, 255, shape).astype("float32")
try:
    distribution.validate(config)
except distribution.DistributionError as e:
    print("RESULT " + json.dumps({"error": str(e)}))
    sys.exit(0)
method = methods.create(config, log=lambda *a: None)
with distribution.Placement(config) as placement:
    with placement.building():
        model = method.build_model(args["steps"])
        model.compile(optimizer=method.build_optimizer(args["steps"]))
    with placement.fitting(model):
        b = args["batch_size"]
        model.fit(x[:2 * b], y[:2 * b], batch_size=b, epochs=1, verbose=0, shuffle=False)
        start = time.perf_counter()
        model.fit(x, y, batch_size=b, epochs=1, verbose=0, shuffle=False)
        seconds = time.perf_counter() - start
devices = distribution.local_devices()[:n]
print("RESULT " + json.dumps({"seconds": seconds, "images": len(x),
                              "device": str(devices[0]) if devices else "?"}))
"""


def run(backend, devices, args):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    if backend == "jax":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                            + f" --xla_force_host_platform_device_count={devices}")
    child_args = dict(devices=devices, image_size=args.image_size, width=args.width,
                      batch_size=args.batch_size, steps=args.steps,
                      representations=args.representations)
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(child_args)], env=env,
                            capture_output=True, text=True, cwd=REPO_ROOT)
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        return None, tail[0][:200]
    found = json.loads(lines[-1][len("RESULT "):])
    return (None, found["error"]) if "error" in found else (found, None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2")
    parser.add_argument("--backends", default="jax,tensorflow")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--representations",
                        default="pixels,scattering,augmented_pixels,hog,local_std")
    args = parser.parse_args()
    counts = [int(d) for d in args.devices.split(",")]
    rows = []
    for backend in args.backends.split(","):
        base = None
        for n in counts:
            found, error = run(backend, n, args)
            if found is None:
                rows.append((backend, n, None, None, None, error))
                print(f"{backend} x{n}: failed: {error}", flush=True)
                continue
            rate = found["images"] / found["seconds"]
            base = base or (rate if n == counts[0] else None)
            rows.append((backend, n, rate, rate / base if base else None, found["device"], ""))
            print(f"{backend} x{n}: {rate:.1f} images/s on {found['device']}", flush=True)
    print(f"\nMV-MR train step, data_parallel, global batch {args.batch_size}, "
          f"{args.image_size} px, ResNet18 width {args.width}, {args.steps} timed steps\n")
    print("| backend | devices | images/s | speed-up | device |")
    print("|---|---|---|---|---|")
    for backend, n, rate, speedup, device, error in rows:
        if rate is None:
            print(f"| {backend} | {n} | failed: {error} | | |")
        else:
            print(f"| {backend} | {n} | {rate:.1f} | {speedup:.2f}x | {device} |")
    if any(r[4] and "cpu" in r[4].lower() for r in rows):
        print("\nThese devices are virtual CPU devices sharing the same cores: the figures say "
              "nothing about speed on N accelerators.")


if __name__ == "__main__":
    main()
