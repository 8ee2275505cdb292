"""Median time of one MV-MR training step, per Keras backend and in plain PyTorch.

What is measured
----------------
One optimisation step of the MV-MR model on a batch of (original, augmented)
views: two forward passes through encoder + projector (original view, then
augmented view, BatchNorm in training mode), the MV-MR loss (MSE + variance
hinge, 1 - dCor(z, z~), 1 - dCor(pixels of the normalised original, z~)),
the backward pass and an Adam step with decoupled weight decay.

Implementations ("--backends"):

- `tensorflow`, `jax`, `torch`: the library's own model,
  `training.build_model(config)`, compiled with
  `training.build_optimizer(config, steps_per_epoch=100)` and the default
  `jit_compile="auto"`, stepped with `model.train_on_batch(original,
  augmented)` on the backend named by KERAS_BACKEND. "auto" means a
  `tf.function` graph without XLA on a CPU-only TensorFlow, XLA on JAX, and
  eager execution on PyTorch.
- `tensorflow-xla`, `torch-jit`: the same with `jit_compile=True` (XLA on
  TensorFlow, `torch.compile` on PyTorch).
- `pytorch`: the same step written here in plain PyTorch eager code, without
  Keras: a torchvision-style ResNet18 with our stem, widths and zero-init
  residual, the projector, the normalisation, the MV-MR loss and
  `torch.optim.AdamW` (Keras's `Adam(weight_decay=...)` decays weights the
  decoupled way, which is AdamW). Before it is timed, its loss function is
  checked against `mvmr_keras.losses.mvmr_loss` on the same tensors.

How
---
Views are random float32 images in [0, 255] from numpy, made once. Each
implementation runs in its own subprocess (KERAS_BACKEND set, thread counts
left at the libraries' defaults). The driver (the default mode) starts them
one after the other; each builds its model and runs `--warmup` untimed steps
(tracing and compilation happen there). Then come `--steps` rounds; in each
round every implementation times one step, in turn, so only one process
computes at any moment, and the order rotates from round to round. On a
machine shared with other work this spreads the changes in load over all
implementations instead of penalising whichever ran while the load was high.
A step's time is the wall time of the call including converting its loss to
a Python float, which waits for the result. The figure reported is the
median; min and max are shown too. The driver prints one markdown table.

Usage:

    python bench/train_step.py                       # everything
    python bench/train_step.py --configs digits --backends jax,pytorch --steps 5
"""

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time

from gpu import gpu_name, torch_device

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Implementation key -> (KERAS_BACKEND for its subprocess, label in the table).
IMPLEMENTATIONS = {
    "tensorflow": ("tensorflow", "keras-tensorflow"),
    "tensorflow-xla": ("tensorflow", "keras-tensorflow (jit_compile=True, XLA)"),
    "jax": ("jax", "keras-jax"),
    "torch": ("torch", "keras-torch"),
    "torch-jit": ("torch", "keras-torch (jit_compile=True, torch.compile)"),
    # Plain PyTorch; KERAS_BACKEND=torch only for the loss check against ours.
    "pytorch": ("torch", "plain-pytorch"),
}
REFERENCE_IMPLEMENTATION = "pytorch"
CONFIG_NAMES = ("digits", "resnet18_96")
# Defaults sized for about 10 minutes on 2 shared CPU cores: a resnet18_96
# step takes 10-35 s there, so that config gets fewer steps and leaves out the
# jit_compile=True variants (torch.compile's first step alone takes minutes).
# tensorflow-xla is opt-in: XLA made the digits step slower (docs/benchmarks.md).
DEFAULT_STEPS = {"digits": 5, "resnet18_96": 2}
DEFAULT_WARMUP = {"digits": 2, "resnet18_96": 1}
DEFAULT_BACKENDS = {
    "digits": ["tensorflow", "jax", "torch", "torch-jit", "pytorch"],
    "resnet18_96": ["tensorflow", "jax", "torch", "pytorch"],
}
READY_PREFIX = "BENCH_READY "
STEP_PREFIX = "BENCH_STEP "
PAUSE_BETWEEN_STEPS_S = 0.5
LOSS_CHECK_TOLERANCE = 1e-4


# ----------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------


def benchmark_config(name, resnet18_96_projector="8192-8192-8192", batch_size=None):
    """The two benchmarked configs, as ml_collections ConfigDicts;
    `batch_size` replaces the config's own when given."""
    sys.path.insert(0, REPO_ROOT)
    from mvmr_keras.configs import digits

    config = digits.get_config()
    if name == "resnet18_96":
        config.image_size = 96
        config.small_kernel_stem = True
        config.backbone_width = 64
        config.batch_size = 64
        config.projector = resnet18_96_projector
        config.representations = "pixels"
    if name in CONFIG_NAMES:
        if batch_size:
            config.batch_size = batch_size
        return config
    raise ValueError(f"Unknown config {name!r}; expected one of {CONFIG_NAMES}.")


def random_views(config, seed=0):
    """A batch of (original, augmented) float32 images in [0, 255], NHWC."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (config.batch_size, config.image_size, config.image_size, 3)
    original = rng.uniform(0.0, 255.0, shape).astype("float32")
    augmented = rng.uniform(0.0, 255.0, shape).astype("float32")
    return original, augmented


# ----------------------------------------------------------------------------
# The library's model, on the current Keras backend
# ----------------------------------------------------------------------------


def keras_step_function(config, jit_compile):
    from mvmr_keras import training

    model = training.build_model(config)
    model.compile(
        optimizer=training.build_optimizer(config, steps_per_epoch=100),
        jit_compile=jit_compile,
    )
    original, augmented = random_views(config)

    def step():
        logs = model.train_on_batch(original, augmented, return_dict=True)
        return float(logs["loss"])

    details = {"resolved_jit_compile": str(model.jit_compile)}
    return step, details


# ----------------------------------------------------------------------------
# The same step in plain PyTorch
# ----------------------------------------------------------------------------


def build_plain_pytorch(config):
    """ResNet + projector + MV-MR loss + AdamW in torch only; returns step()."""
    import torch
    from torch import nn

    from mvmr_keras.models.encoder import NORMALIZATION_STATS

    def conv_bn(in_channels, out_channels, kernel_size, stride, zero_init=False):
        conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride,
            padding=(kernel_size - 1) // 2, bias=False,
        )
        nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
        bn = nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.1)
        if zero_init:
            nn.init.zeros_(bn.weight)
        return nn.Sequential(conv, bn)

    class BasicBlock(nn.Module):
        def __init__(self, in_channels, channels, stride, zero_init_residual):
            super().__init__()
            self.conv_bn1 = conv_bn(in_channels, channels, 3, stride)
            self.conv_bn2 = conv_bn(channels, channels, 3, 1, zero_init_residual)
            self.shortcut = nn.Identity()
            if stride != 1 or in_channels != channels:
                self.shortcut = conv_bn(in_channels, channels, 1, stride)

        def forward(self, x):
            out = torch.relu(self.conv_bn1(x))
            return torch.relu(self.shortcut(x) + self.conv_bn2(out))

    class ResNet18(nn.Module):
        def __init__(self, width, small_kernel_stem, zero_init_residual):
            super().__init__()
            if small_kernel_stem:
                self.stem = conv_bn(3, width, 3, 1)
            else:
                self.stem = conv_bn(3, width, 7, 2)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
            blocks, in_channels = [], width
            for stage in range(4):
                channels = width * 2**stage
                for block in range(2):
                    stride = 2 if (stage > 0 and block == 0) else 1
                    blocks.append(
                        BasicBlock(in_channels, channels, stride, zero_init_residual)
                    )
                    in_channels = channels
            self.blocks = nn.Sequential(*blocks)
            self.output_dim = in_channels

        def forward(self, x):
            x = self.pool(torch.relu(self.stem(x)))
            return self.blocks(x).mean(dim=(2, 3))

    def projector(input_dim, sizes):
        layers, dim = [], input_dim
        for size in sizes[:-1]:
            linear = nn.Linear(dim, size, bias=False)
            nn.init.xavier_uniform_(linear.weight)  # Keras Dense's default
            # Keras BatchNormalization's defaults: momentum 0.99, epsilon 1e-3.
            layers += [linear, nn.BatchNorm1d(size, eps=1e-3, momentum=0.01), nn.ReLU()]
            dim = size
        output = nn.Linear(dim, sizes[-1], bias=False)
        nn.init.xavier_uniform_(output.weight)
        return nn.Sequential(*layers, output)

    if config.backbone != "resnet18" or tuple(config.backbone_depths):
        raise ValueError("The plain PyTorch step implements ResNet18 only.")
    torch.manual_seed(config.seed)
    backbone = ResNet18(
        config.backbone_width, config.small_kernel_stem, config.zero_init_residual
    )
    projector_sizes = [int(s) for s in config.projector.split("-")]
    device = torch_device()  # on the GPU when there is one, as Keras's torch backend
    model = nn.Sequential(backbone, projector(backbone.output_dim, projector_sizes))
    model.to(device).train()

    mean, std = NORMALIZATION_STATS[config.normalization]
    pixel_mean = torch.tensor([255.0 * m for m in mean], device=device).view(1, 3, 1, 1)
    pixel_std = torch.tensor([255.0 * s for s in std], device=device).view(1, 3, 1, 1)

    def normalize(images_nhwc):
        # From host memory every step, as Keras's train_on_batch takes numpy.
        images = torch.from_numpy(images_nhwc).to(device).permute(0, 3, 1, 2)
        return (images - pixel_mean) / pixel_std

    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(0.9, 0.999),
        eps=1e-7,  # Keras's default
        weight_decay=config.weight_decay,
    )
    original, augmented = random_views(config)

    def step():
        normalized_original = normalize(original)
        z = model(normalized_original)
        z_aug = model(normalize(augmented))
        terms = torch_mvmr_loss(
            z, z_aug, normalized_original, config.variance_margin
        )
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        return terms["loss"].item()

    return step


def torch_distance_correlation(x, y):
    """dCor as in mvmr_keras.losses: standardise, Gram-matrix distances."""
    import torch

    tiny = 1e-12

    def safe_sqrt(v):
        positive = v > tiny
        return torch.where(
            positive, torch.sqrt(torch.where(positive, v, torch.ones_like(v))), 0.0
        )

    def centered_distances(features):
        features = features.reshape(features.shape[0], -1).float()
        features = features - features.mean(dim=0, keepdim=True)
        rms = features.square().mean().sqrt()
        features = features / torch.clamp(rms, min=tiny)
        squared_norms = features.square().sum(dim=1)
        squared_distances = (
            squared_norms[:, None] - 2.0 * features @ features.T + squared_norms[None, :]
        )
        distances = safe_sqrt(squared_distances)
        return (
            distances
            - distances.mean(dim=0, keepdim=True)
            - distances.mean(dim=1, keepdim=True)
            + distances.mean()
        )

    finite = torch.isfinite(x.sum()) & torch.isfinite(y.sum())
    a, b = centered_distances(x), centered_distances(y)
    dcov2 = (a * b).mean()
    denominator = (a * a).mean().sqrt() * (b * b).mean().sqrt()
    defined = denominator > tiny
    dcor2 = torch.where(
        defined, dcov2 / torch.where(defined, denominator, torch.ones_like(denominator)), 0.0
    )
    dcor = safe_sqrt(dcor2.clamp(0.0, 1.0))
    return torch.where(finite, dcor, torch.full_like(dcor, float("nan")))


def torch_mvmr_loss(z, z_aug, pixels, variance_margin=1.0, variance_epsilon=1e-4):
    """MSE + variance hinge + (1 - dCor(z, z~)) + (1 - dCor(pixels, z~))."""
    import torch

    def variance_hinge(e):
        std = torch.sqrt(e.var(dim=0, unbiased=True) + variance_epsilon)
        return torch.relu(variance_margin - std).mean()

    terms = {
        "mse": (z - z_aug).square().mean(),
        "std": variance_hinge(z_aug) + variance_hinge(z),
        "dcor_zz": torch_distance_correlation(z, z_aug),
        "dcor_pixels": torch_distance_correlation(pixels, z_aug),
    }
    terms["loss"] = (
        terms["mse"] + terms["std"] + (1.0 - terms["dcor_zz"]) + (1.0 - terms["dcor_pixels"])
    )
    return terms


def check_torch_loss_matches_library():
    """Max |difference| between `torch_mvmr_loss` and the library's
    `mvmr_loss` on the same fixed tensors (on the torch backend); raises if
    any term differs by more than LOSS_CHECK_TOLERANCE."""
    import keras
    import numpy as np
    import torch

    from mvmr_keras import losses

    if keras.backend.backend() != "torch":
        raise RuntimeError("The loss check runs on KERAS_BACKEND=torch.")
    rng = np.random.default_rng(1)
    z = rng.normal(size=(32, 64)).astype("float32")
    z[:, :8] *= 0.1  # some dimensions under the variance margin
    z_aug = (z + 0.5 * rng.normal(size=z.shape)).astype("float32")
    pixels = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    ours = losses.mvmr_loss(
        torch.from_numpy(z), torch.from_numpy(z_aug), {"pixels": torch.from_numpy(pixels)}
    )
    plain = torch_mvmr_loss(
        torch.from_numpy(z),
        torch.from_numpy(z_aug),
        torch.from_numpy(pixels).permute(0, 3, 1, 2),  # NCHW, as the plain step has it
    )
    difference = max(abs(float(ours[k]) - float(plain[k])) for k in plain)
    if not difference <= LOSS_CHECK_TOLERANCE:
        raise AssertionError(
            f"plain PyTorch loss differs from mvmr_keras.losses.mvmr_loss by "
            f"{difference:.2e}: ours {({k: float(v) for k, v in ours.items()})}, "
            f"plain {({k: float(v) for k, v in plain.items()})}"
        )
    return difference


# ----------------------------------------------------------------------------
# Worker: one (config, implementation) in this process
# ----------------------------------------------------------------------------


def run_worker(args):
    """Builds one implementation, warms it up, then times one step per
    "step" line read from stdin until "quit" (the protocol the driver uses).

    Replies are single lines on stdout: READY <json> after the warm-up,
    STEP <seconds> after each timed step.
    """
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    expected_backend = IMPLEMENTATIONS[args.implementation][0]
    if backend != expected_backend:
        raise RuntimeError(
            f"{args.implementation} needs KERAS_BACKEND={expected_backend}; "
            f"got {backend}."
        )
    config = benchmark_config(args.config, args.resnet18_96_projector, args.batch_size)
    details = {"projector": config.projector}
    if args.implementation == "pytorch":
        details["loss_check_max_abs_difference"] = check_torch_loss_matches_library()
        step = build_plain_pytorch(config)
    else:
        jit_compile = True if args.implementation.endswith(("-xla", "-jit")) else "auto"
        step, keras_details = keras_step_function(config, jit_compile)
        details.update(keras_details)
    start = time.perf_counter()
    details["first_loss"] = step()
    for _ in range(args.warmup - 1):
        step()
    details["warmup_s"] = time.perf_counter() - start
    print(f"{READY_PREFIX}{json.dumps(details)}", flush=True)
    for command in sys.stdin:
        if command.strip() != "step":
            break
        start = time.perf_counter()
        step()  # returns the loss as a Python float: the step has finished
        print(f"{STEP_PREFIX}{time.perf_counter() - start}", flush=True)


class WorkerProcess:
    """One implementation of one config, alive in its own subprocess."""

    def __init__(self, config_name, implementation, args):
        self.config_name = config_name
        self.implementation = implementation
        self.step_seconds = []
        self.details = {}
        self.error = None
        env = dict(
            os.environ,
            KERAS_BACKEND=IMPLEMENTATIONS[implementation][0],
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [
                sys.executable, os.path.abspath(__file__), "--worker",
                "--config", config_name,
                "--implementation", implementation,
                "--warmup", str(args.warmup or DEFAULT_WARMUP[config_name]),
                "--resnet18_96_projector", args.resnet18_96_projector,
                "--batch_size", str(args.batch_size or 0),
            ],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, bufsize=1,
        )

    def _read_reply(self, prefix, timeout):
        """The payload of the next stdout line starting with `prefix`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(remaining, 0))
            if not ready:
                raise TimeoutError(f"no reply within {timeout} s")
            line = self.process.stdout.readline()
            if not line:
                self.process.wait()
                self.stderr.seek(0)
                lines = self.stderr.read().strip().splitlines() or ["no output"]
                raise RuntimeError(f"exit {self.process.returncode}: {lines[-1]}")
            if line.startswith(prefix):
                return line[len(prefix):]

    def wait_until_ready(self, timeout):
        try:
            self.details = json.loads(self._read_reply(READY_PREFIX, timeout))
        except (TimeoutError, RuntimeError) as e:
            self.fail(e)

    def time_one_step(self, timeout):
        if self.error:
            return
        self.process.stdin.write("step\n")
        try:
            self.step_seconds.append(float(self._read_reply(STEP_PREFIX, timeout)))
        except (TimeoutError, RuntimeError) as e:
            self.fail(e)

    def fail(self, error):
        self.error = str(error)
        self.close()

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.stderr.close()

    def result(self):
        result = {"config": self.config_name, "implementation": self.implementation}
        if self.error or not self.step_seconds:
            result["error"] = self.error or "no step timed"
            return result
        result.update(self.details)
        result.update(
            median_s=statistics.median(self.step_seconds),
            min_s=min(self.step_seconds),
            max_s=max(self.step_seconds),
            step_seconds=self.step_seconds,
        )
        return result


def measure_config(config_name, implementations, args):
    """Starts and warms up every implementation one after the other, then
    times them in interleaved rounds: one step of each per round, the order
    rotating every round, only ever one process computing. On a machine
    shared with other work, interleaving spreads changes in load over all
    implementations instead of penalising whichever ran while it was high."""
    steps = args.steps or DEFAULT_STEPS[config_name]
    workers = []
    for implementation in implementations:
        log(f"{config_name} / {implementation}: building and warming up ...")
        worker = WorkerProcess(config_name, implementation, args)
        worker.wait_until_ready(args.timeout)
        log(f"  {'failed: ' + worker.error if worker.error else 'ready'}")
        workers.append(worker)
    loads = []
    for round_index in range(steps):
        loads.append(os.getloadavg()[0])
        shift = round_index % len(workers)
        for worker in workers[shift:] + workers[:shift]:
            time.sleep(PAUSE_BETWEEN_STEPS_S)  # let the last one's threads go idle
            worker.time_one_step(args.timeout)
        log(f"  round {round_index + 1}/{steps} done (1-min load average {loads[-1]:.2f})")
    for worker in workers:
        if not worker.error:
            worker.close()
    results = [worker.result() for worker in workers]
    for result in results:
        result["load_average_during"] = statistics.mean(loads)
    return results


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def log(message):
    print(f"# {message}", file=sys.stderr, flush=True)


def markdown_table(results):
    lines = [
        "| config | implementation | median ms/step | steps/s | ratio to plain PyTorch "
        "| min-max ms | ratio of minima | warm-up s | loss at step 1 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    references = {
        r["config"]: r
        for r in results
        if r["implementation"] == REFERENCE_IMPLEMENTATION and "error" not in r
    }
    for r in results:
        label = IMPLEMENTATIONS[r["implementation"]][1]
        if "error" in r:
            lines.append(f"| {r['config']} | {label} | failed: {r['error']} | | | | | | |")
            continue
        reference = references.get(r["config"])
        ratio = f"{r['median_s'] / reference['median_s']:.2f}x" if reference else "n/a"
        min_ratio = f"{r['min_s'] / reference['min_s']:.2f}x" if reference else "n/a"
        lines.append(
            f"| {r['config']} | {label} | {1000 * r['median_s']:.0f} "
            f"| {1 / r['median_s']:.2f} | {ratio} "
            f"| {1000 * r['min_s']:.0f}-{1000 * r['max_s']:.0f} | {min_ratio} "
            f"| {r['warmup_s']:.0f} | {r['first_loss']:.3f} |"
        )
    return "\n".join(lines)


def run_driver(args):
    config_names = [c for c in args.configs.split(",") if c]
    for name in config_names:
        if name not in CONFIG_NAMES:
            sys.exit(f"error: unknown config {name!r}; expected some of {CONFIG_NAMES}")
    chosen = [b for b in args.backends.split(",") if b] if args.backends else None
    for name in chosen or []:
        if name not in IMPLEMENTATIONS:
            sys.exit(f"error: unknown backend {name!r}; expected some of "
                     f"{list(IMPLEMENTATIONS)}")
    started = time.time()
    results, notes = [], []
    for config_name in config_names:
        implementations = chosen or DEFAULT_BACKENDS[config_name]
        config_results = measure_config(config_name, implementations, args)
        results += config_results
        config = benchmark_config(config_name, args.resnet18_96_projector, args.batch_size)
        notes.append(
            f"{config_name}: ResNet18 width {config.backbone_width}, "
            f"{'3x3 stride-1' if config.small_kernel_stem else '7x7 stride-2'} stem, "
            f"{config.image_size} px, batch {config.batch_size}, projector "
            f"{config.projector}, representations {config.representations}; "
            f"{args.warmup or DEFAULT_WARMUP[config_name]} warm-up + "
            f"{args.steps or DEFAULT_STEPS[config_name]} timed steps, mean 1-min load average during the timed rounds "
            f"{config_results[0]['load_average_during']:.2f}."
        )
    print(markdown_table(results))
    print()
    for note in notes:
        print(f"- {note}")
    for r in results:
        if "loss_check_max_abs_difference" in r:
            print(f"- Loss check ({r['config']}): plain PyTorch loss vs "
                  f"mvmr_keras.losses.mvmr_loss on the same tensors, max |difference| "
                  f"{r['loss_check_max_abs_difference']:.1e} "
                  f"(tolerance {LOSS_CHECK_TOLERANCE:g}).")
    print(f"- Total wall time {time.time() - started:.0f} s, {os.cpu_count()} CPUs, "
          f"CPU model {cpu_model()}{', GPU ' + gpu_name() if gpu_name() else ''}.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--configs", default=",".join(CONFIG_NAMES),
                        help="comma-separated configs (default: all)")
    parser.add_argument("--backends", default="",
                        help=f"comma-separated implementations from {list(IMPLEMENTATIONS)} "
                             f"(default per config: {DEFAULT_BACKENDS})")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per measurement (default {DEFAULT_STEPS})")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed steps first, compilation included (>= 1; "
                             f"default {DEFAULT_WARMUP})")
    parser.add_argument("--resnet18_96_projector", default="8192-8192-8192",
                        help="projector sizes of the resnet18_96 config")
    parser.add_argument("--batch_size", type=int, default=0,
                        help="replaces every config's batch size (0: keep the config's)")
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds allowed to one reply of a worker (its warm-up, or a step)")
    parser.add_argument("--json", default="", help="also write all results to this file")
    # Internal: run one measurement in this process.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--implementation", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup is not None and args.warmup < 1:
        parser.error("--warmup must be >= 1")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        run_worker(arguments)
    else:
        run_driver(arguments)
