"""Milliseconds per representation at STL10 shape, per Keras backend.

Times every representation layer on a batch of normalised-like images
(default: 64 x 96 x 96 x 3) the way the train step runs it (`jax.jit` with
`stateless_call`, an XLA-compiled `tf.function`, eager PyTorch), the whole
default set as one compiled function, kymatio's own PyTorch frontend of the
scattering transform on the same batch shape (in a PyTorch-only process
started right after ours), and one ResNet18 MV-MR train step
(`model.train_on_batch`), so that "default set / train step" can be read
off. Each number is the median over `--repeats` calls after `--warmup`.

    python bench/representations.py                      # all backends
    python bench/representations.py --backends jax --skip-train-step

Without `--worker`, it runs itself once per backend in a subprocess (a
backend is fixed per process) and prints one combined Markdown table.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from gpu import gpu_name, synchronize_torch, torch_device

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_SET = ("pixels", "scattering", "augmented_pixels", "hog", "local_std")
EXTRA = ("dct", "patch_scattering", "hog_interpolated")


def median_ms(run, warmup, repeats):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def compiled_runner(layers, images):
    """A no-argument callable computing `[layer(images) for layer in layers]`
    as the backend's compiled train step would, blocking until done."""
    import keras

    backend = keras.backend.backend()
    for layer in layers:
        if not layer.built:
            layer.build(images.shape)
    if backend == "jax":
        import jax

        # stateless_call threads the seed state of augmented_pixels, as
        # Keras's JAX train step does.
        def apply(states, x):
            outs, new_states = [], []
            for layer, state in zip(layers, states):
                out, state = layer.stateless_call([], state, x)
                outs.append(out)
                new_states.append(state)
            return outs, new_states

        apply = jax.jit(apply)
        x = jax.numpy.asarray(images)
        states = [[v.value for v in layer.non_trainable_variables] for layer in layers]

        def run():
            nonlocal states
            outs, states = apply(states, x)
            jax.block_until_ready(outs)

        return run
    if backend == "tensorflow":
        import tensorflow as tf

        apply = tf.function(lambda x: [layer(x) for layer in layers], jit_compile=True)
        x = tf.constant(images)
        return lambda: [out.numpy() for out in apply(x)]
    import torch

    x = torch.from_numpy(images).to(torch_device())

    def run():
        with torch.no_grad():
            outs = [layer(x) for layer in layers]
        synchronize_torch()
        return outs

    return run


def kymatio_torch_ms(args):
    """kymatio's PyTorch frontend (J=2, L=8) on the same batch shape, timed
    in a fresh process that has only PyTorch: next to a JAX or TensorFlow
    runtime, whose idle threads keep spinning, PyTorch's threads measured
    up to ten times slower here."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--kymatio-worker",
        f"--batch={args.batch}",
        f"--size={args.size}",
        f"--warmup={args.warmup}",
        f"--repeats={args.repeats}",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError("kymatio run failed:\n" + done.stderr[-3000:])
    return json.loads(lines[-1][len("RESULT "):])["ms"]


def kymatio_worker(args):
    import numpy as np
    import torch

    # `from kymatio.torch import Scattering2D` fails with SciPy >= 1.15
    # (kymatio 0.3.0 imports the removed scipy.special.sph_harm for 3-D);
    # the 2-D frontend module imports fine.
    from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

    images = np.random.default_rng(0).normal(
        size=(args.batch, 3, args.size, args.size)
    ).astype("float32")
    device = torch_device()
    scattering = ScatteringTorch2D(J=2, shape=(args.size, args.size), L=8).to(device)
    x = torch.from_numpy(images).to(device)

    def run():
        with torch.no_grad():
            out = scattering(x)
        synchronize_torch()
        return out

    ms = median_ms(run, args.warmup, args.repeats)
    print("RESULT " + json.dumps({"ms": ms}), flush=True)


def train_step_ms(images, projector, warmup, repeats):
    import keras
    import numpy as np

    from mvmr_keras import MVMR, ImageEncoder, ResNetBackbone, representations

    _, height, width, _ = images.shape
    backbone = ResNetBackbone.from_name("resnet18", image_shape=(height, width, 3))
    model = MVMR(
        ImageEncoder(backbone),
        projector=projector,
        representations=[representations.get("pixels")],
    )
    model.compile(optimizer="adam")
    rng = np.random.default_rng(1)
    original = rng.uniform(0, 255, images.shape).astype("float32")
    augmented = rng.uniform(0, 255, images.shape).astype("float32")
    return median_ms(
        lambda: model.train_on_batch(original, augmented), warmup, repeats
    )


def worker(args):
    import keras
    import numpy as np

    from mvmr_keras import representations

    images = np.random.default_rng(0).normal(
        size=(args.batch, args.size, args.size, 3)
    ).astype("float32")
    results = {"backend": keras.backend.backend(), "ms": {}}
    names = [n for n in DEFAULT_SET + EXTRA if not args.only or n in args.only]
    for name in names:
        run = compiled_runner([representations.get(name)], images)
        results["ms"][name] = median_ms(run, args.warmup, args.repeats)
        if name == "scattering" and not args.skip_kymatio:
            # Right after ours, so that both see about the same load.
            results["ms"]["kymatio_torch_scattering"] = kymatio_torch_ms(args)
    if not args.only:
        run = compiled_runner([representations.get(n) for n in DEFAULT_SET], images)
        results["ms"]["default_set"] = median_ms(run, args.warmup, args.repeats)
    if not args.skip_train_step:
        results["ms"]["train_step"] = train_step_ms(
            images, args.projector, args.warmup, max(3, args.repeats // 2)
        )
    print("RESULT " + json.dumps(results), flush=True)


def table(results, args):
    rows = [n for n in DEFAULT_SET + EXTRA]
    rows += ["default_set", "kymatio_torch_scattering", "train_step"]
    labels = {
        "default_set": "whole default set, one compiled function",
        "kymatio_torch_scattering": "kymatio 0.3.0 PyTorch frontend, scattering J=2 L=8",
        "train_step": f"ResNet18 MV-MR train step (projector {args.projector}, representations=[pixels])",
    }
    backends = [r["backend"] for r in results]
    lines = [
        "| ms per batch of %d x %dx%dx3 | %s |"
        % (args.batch, args.size, args.size, " | ".join(backends)),
        "|---|" + "---:|" * len(backends),
    ]
    for row in rows:
        cells = []
        for r in results:
            value = r["ms"].get(row)
            cells.append("-" if value is None else f"{value:.0f}")
        if all(c == "-" for c in cells):
            continue
        lines.append(f"| {labels.get(row, row)} | " + " | ".join(cells) + " |")
    ratio_cells, speed_cells = [], []
    for r in results:
        ms = r["ms"]
        if "default_set" in ms and "train_step" in ms:
            ratio_cells.append(f"{100 * ms['default_set'] / ms['train_step']:.0f}%")
        else:
            ratio_cells.append("-")
        if "scattering" in ms and "kymatio_torch_scattering" in ms:
            speed_cells.append(
                f"{ms['kymatio_torch_scattering'] / ms['scattering']:.2f}x"
            )
        else:
            speed_cells.append("-")
    lines.append("| default set / train step | " + " | ".join(ratio_cells) + " |")
    lines.append(
        "| scattering speed vs kymatio torch (>1: ours faster) | "
        + " | ".join(speed_cells)
        + " |"
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--projector", default="8192-8192-8192")
    parser.add_argument("--only", default="", help="comma-separated names")
    parser.add_argument("--skip-train-step", action="store_true")
    parser.add_argument("--skip-kymatio", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kymatio-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.only = [n for n in args.only.split(",") if n]
    if args.kymatio_worker:
        kymatio_worker(args)
        return
    if args.worker:
        sys.path.insert(0, REPO_ROOT)
        worker(args)
        return
    results = []
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, os.path.abspath(__file__), "--worker"] + [
            a for a in sys.argv[1:] if a != "--worker"
        ]
        print(f"running {backend} ...", file=sys.stderr, flush=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"the {backend} run failed")
        results.append(json.loads(lines[-1][len("RESULT "):]))
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    print(
        f"machine: {gpu_name() + ', ' if gpu_name() else ''}{platform.machine()}, "
        f"{os.cpu_count()} CPUs, "
        f"{platform.platform()}, Python {platform.python_version()}; "
        f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(table(results, args))


if __name__ == "__main__":
    main()
