"""Median time of one MV-MR (DINO, MOKD) training step, per Keras backend and in plain PyTorch.

What is measured
----------------
One optimisation step of the MV-MR model on a batch of (original, augmented)
views: two forward passes through encoder + projector (original view, then
augmented view, BatchNorm in training mode), the MV-MR loss (MSE + variance
hinge, 1 - dCor(z, z~), 1 - dCor(pixels of the normalised original, z~)),
the backward pass and an Adam step with decoupled weight decay.

Every row does the same work: the `pixels` representation only
(`BENCHMARKED_REPRESENTATIONS`, named in the notes under the table), since
the plain-PyTorch step computes no other. Before it is timed, each row's
loss at step 1 is checked term by term (mse, std, dcor_zz, dcor_pixels,
loss) against `mvmr_keras.losses.mvmr_loss` on that step's own tensors
(`tests/bench/test_train_step.py` runs the same check for every config).

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
  residual, the projector (BatchNorm as ours), the normalisation, the MV-MR
  loss and `torch.optim.AdamW` (Keras's `Adam(weight_decay=...)` decays
  weights the decoupled way, which is AdamW).

DINO rows (`--configs dino_digits`): one step of the DINO model of
configs/dino_digits.py (ResNet18 width 16, one block per stage, its head
with BatchNorm) on DINO's multi-crop workload rather than that config's own
(2 global crops of 32 px and 6 local ones of 16 px, batch 64, K = 1024;
the digits config trains with no local crops at batch 32): the student
on both crop sizes, the teacher on the global crops, the DINO loss and
centre, the AdamW step with its scheduled weight decay and per-tensor
clipping, and the EMA teacher update, all inside Keras's compiled step.
There is no plain-PyTorch DINO step, so these rows divide by keras-jax.
Their loss at step 1 is checked against `mvmr_keras.dino_loss.dino_loss`
on that step's own outputs. `dino_digits_vit` is the same with the
config's ViT (4 blocks of width 96, patch 4).

MOKD rows (`--configs mokd_digits`): one step of configs/mokd_digits.py's
MOKD (that ResNet and that ViT, their DINO heads and T-Heads, CAFS, the
grouped optimiser, both EMAs) on the same multi-crop workload, K = 1024;
its loss at step 1 is checked against `mokd_loss.model_loss` summed over
both models' `loss_terms` on the step's own outputs. With both DINO
configs measured as well, a second table divides each backend's MOKD step
by the sum of its two DINO steps: what training the pair together costs
against training each alone. The ViTs' drop-path is off in these rows, so
that the check's forward pass is the step's.

How
---
Views are random float32 images in [0, 255] from numpy, made once. Each
implementation runs in its own subprocess (KERAS_BACKEND set) with its
thread pools pinned to the cores available (`--threads`; TensorFlow's
intra/inter-op pools, torch's threads and OpenMP; XLA's CPU pool has no
supported setting and takes one thread per core). The driver starts them
one after the other; each builds its model and runs `--warmup` untimed
steps (the first is the loss check; tracing and compilation happen there).
Then come `--steps` rounds; in each round every implementation times one
step, in turn, so only one process computes at any moment, and the order
rotates from round to round. The whole comparison is repeated `--repeats`
times with fresh processes. A step's time is the wall time of the call
including converting its loss to a Python float, which waits for the
result.

Each row reports the median of its per-round ratios to the reference
(`--reference`, plain PyTorch by default): a ratio divides a step by the
reference's step of the same round, so both ran under the same load. The
interquartile range of those ratios is the spread; a row is called faster
or slower only when that range lies wholly below or above 1, and "within
noise" otherwise. The 1-minute load average during the rounds is printed.

Usage:

    python bench/train_step.py                       # everything, 3 repetitions
    python bench/train_step.py --configs digits --backends jax,pytorch --steps 5 --repeats 3
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
CONFIG_NAMES = ("digits", "resnet18_96")  # MV-MR
DINO_CONFIG_NAMES = ("dino_digits", "dino_digits_vit", "mokd_digits")
# The DINO rows' reference when --reference is plain PyTorch (which has no DINO step).
DINO_REFERENCE = "jax"
# Defaults sized for about 10 minutes on 2 shared CPU cores: a resnet18_96
# step takes 10-35 s there, so that config gets fewer steps and leaves out the
# jit_compile=True variants (torch.compile's first step alone takes minutes).
# tensorflow-xla is opt-in: XLA made the digits step slower (docs/benchmarks.md).
DEFAULT_STEPS = {"digits": 5, "resnet18_96": 2, "dino_digits": 5, "dino_digits_vit": 5,
                 "mokd_digits": 5}
DEFAULT_WARMUP = {"digits": 2, "resnet18_96": 1, "dino_digits": 2, "dino_digits_vit": 2,
                  "mokd_digits": 2}
DEFAULT_BACKENDS = {
    "dino_digits": ["tensorflow", "jax", "torch"],
    "dino_digits_vit": ["tensorflow", "jax", "torch"],
    "mokd_digits": ["tensorflow", "jax", "torch"],
    "digits": ["tensorflow", "jax", "torch", "torch-jit", "pytorch"],
    "resnet18_96": ["tensorflow", "jax", "torch", "pytorch"],
}
READY_PREFIX = "BENCH_READY "
STEP_PREFIX = "BENCH_STEP "
PAUSE_BETWEEN_STEPS_S = 0.5
LOSS_CHECK_TOLERANCE = 1e-4
BENCHMARKED_REPRESENTATIONS = "pixels"
REFERENCE_LOSS_TERMS = ("mse", "std", "dcor_zz", "dcor_pixels", "loss")
# A ratio is a win or a loss only when its interquartile range over all timed
# rounds lies wholly below or above 1; otherwise it is "within noise".


# ----------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------


def benchmark_config(name, resnet18_96_projector="8192-8192-8192", batch_size=None):
    """The two benchmarked configs, as ml_collections ConfigDicts;
    `batch_size` replaces the config's own when given."""
    sys.path.insert(0, REPO_ROOT)
    from mvmr_keras.configs import digits, dino_digits, mokd_digits

    if name in DINO_CONFIG_NAMES:
        if name == "mokd_digits":
            config = mokd_digits.get_config()
            config.mokd.out_dim = 1024
            config.mokd.second.drop_path_rate = 0.0
        else:
            config = dino_digits.get_config("vit" if name == "dino_digits_vit" else "resnet")
            config.dino.out_dim = 1024
            config.drop_path_rate = 0.0
        # DINO's multi-crop workload, which the rows have always timed; the
        # digits config itself trains without local crops at batch 32.
        config.num_local_crops, config.local_crop_size = 6, 16
        config.batch_size = 64
        if batch_size:
            config.batch_size = batch_size
        return config
    config = digits.get_config()
    # Every row computes the same loss: the plain-PyTorch step has the pixels
    # representation only, so the Keras rows use only it too (the digits
    # config's other four would be work the reference row does not do).
    config.representations = BENCHMARKED_REPRESENTATIONS
    if name == "resnet18_96":
        config.image_size = 96
        config.small_kernel_stem = True
        config.backbone_width = 64
        config.batch_size = 64
        config.projector = resnet18_96_projector
    if name in CONFIG_NAMES:
        if batch_size:
            config.batch_size = batch_size
        return config
    raise ValueError(
        f"Unknown config {name!r}; expected one of {CONFIG_NAMES + DINO_CONFIG_NAMES}.")


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


def random_multicrop_batch(config, seed=0):
    """One multi-crop batch of float32 images in [0, 255] (DINO rows)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    b, g, l = config.batch_size, config.image_size, config.local_crop_size
    return {
        "global_crops": rng.uniform(0.0, 255.0, (b, 2, g, g, 3)).astype("float32"),
        "local_crops": rng.uniform(0.0, 255.0, (b, config.num_local_crops, l, l, 3)
                                   ).astype("float32"),
    }


def multicrop_step_function(config, jit_compile, reference_loss):
    """The library's step of a multi-crop method (DINO, MOKD), and the check
    of its loss at step 1 against `reference_loss(model, outputs)` on the
    same step's outputs (BatchNorm in training mode uses batch statistics and
    these rows have no drop-path, so the forward is the step's; centres and
    the step counter move only in the step)."""
    from mvmr_keras import training

    model = training.build_model(config, steps_per_epoch=100)
    model.compile(optimizer=training.build_optimizer(config, steps_per_epoch=100),
                  jit_compile=jit_compile)
    batch = random_multicrop_batch(config)
    first_step = {}

    def step():
        logs = model.train_on_batch(batch, return_dict=True)
        if not first_step:
            first_step.update({k: float(v) for k, v in logs.items()})
        return float(logs["loss"])

    def first_step_check():
        reference = reference_loss(model, model(batch, training=True))
        step()
        return compare_terms(first_step, {"loss": reference}, terms=("loss",)), \
            first_step["loss"]

    return step, first_step_check, {"resolved_jit_compile": str(model.jit_compile)}


def dino_reference_loss(model, outputs):
    """`dino_loss` of a DINO step's outputs."""
    import keras

    from mvmr_keras import dino_loss

    return float(keras.ops.convert_to_numpy(dino_loss.dino_loss(
        outputs["student"], outputs["teacher"], model.centre, model.student_temperature,
        model.current_teacher_temperature())))


def mokd_reference_loss(model, outputs):
    """Both models' `mokd_loss.model_loss` of a MOKD step's outputs."""
    import keras

    from mvmr_keras import mokd_loss

    return sum(float(keras.ops.convert_to_numpy(mokd_loss.model_loss(terms, weight)))
               for terms, weight in zip(model.loss_terms(outputs), model.cross_weights))


def keras_step_function(config, jit_compile):
    """The library's step on the current backend, and the check of its loss
    at step 1 against `mvmr_loss` on the same tensors (`first_step_check`)."""
    from mvmr_keras import training

    if config.get("method") == "dino":
        return multicrop_step_function(config, jit_compile, dino_reference_loss)
    if config.get("method") == "mokd":
        return multicrop_step_function(config, jit_compile, mokd_reference_loss)

    model = training.build_model(config)
    model.compile(
        optimizer=training.build_optimizer(config, steps_per_epoch=100),
        jit_compile=jit_compile,
    )
    original, augmented = random_views(config)
    first_step = {}

    def step():
        logs = model.train_on_batch(original, augmented, return_dict=True)
        if not first_step:
            first_step.update({k: float(v) for k, v in logs.items()})
        return float(logs["loss"])

    def first_step_check():
        """Max |difference|, over every term, between the first step's logs
        and `mvmr_loss` on the embeddings of the same batch (BatchNorm in
        training mode uses batch statistics, so the forward is the step's)."""
        import keras

        z = keras.ops.convert_to_numpy(model(original, training=True))
        z_aug = keras.ops.convert_to_numpy(model(augmented, training=True))
        pixels = keras.ops.convert_to_numpy(model.encoder.normalize(original))
        reference = library_loss_terms(z, z_aug, pixels, config)
        step()
        return compare_terms(first_step, reference), first_step["loss"]

    details = {"resolved_jit_compile": str(model.jit_compile)}
    return step, first_step_check, details


def library_loss_terms(z, z_aug, pixels_nhwc, config):
    """`mvmr_keras.losses.mvmr_loss` on NumPy tensors, as floats per term."""
    import keras

    from mvmr_keras import losses

    terms = losses.mvmr_loss(
        z, z_aug, {"pixels": pixels_nhwc},
        objective=config.representation_objective,
        variance_margin=config.variance_margin,
    )
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in terms.items()}


def compare_terms(found, reference, terms=REFERENCE_LOSS_TERMS):
    """Max |difference| over `terms`; raises beyond the tolerance."""
    missing = [k for k in terms if k not in found or k not in reference]
    if missing:
        raise AssertionError(f"loss terms {missing} missing: found {sorted(found)}, "
                             f"reference {sorted(reference)}")
    differences = {k: abs(found[k] - reference[k]) for k in terms}
    worst = max(differences.values())
    if not worst <= LOSS_CHECK_TOLERANCE:
        raise AssertionError(
            f"loss at step 1 differs from the library's loss on the same "
            f"tensors by {worst:.2e}: {({k: round(v, 6) for k, v in differences.items()})}; "
            f"found {({k: found[k] for k in terms})}, "
            f"reference {({k: reference[k] for k in terms})}"
        )
    return worst


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
            # The library's projector BatchNorm (PyTorch's defaults).
            layers += [linear, nn.BatchNorm1d(size, eps=1e-5, momentum=0.1), nn.ReLU()]
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
    first_step = {}

    def step():
        normalized_original = normalize(original)
        z = model(normalized_original)
        z_aug = model(normalize(augmented))
        terms = torch_mvmr_loss(
            z, z_aug, normalized_original, config.variance_margin
        )
        if not first_step:  # the tensors of step 1, for the loss check
            first_step["terms"] = {k: float(v.detach()) for k, v in terms.items()}
            first_step["tensors"] = (
                z.detach().cpu().numpy(), z_aug.detach().cpu().numpy(),
                normalized_original.detach().permute(0, 2, 3, 1).cpu().numpy(),
            )
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        return terms["loss"].item()

    def first_step_check():
        """Max |difference|, over every term, between step 1's loss and
        `mvmr_loss` (Keras, any backend) on step 1's own tensors."""
        step()
        terms = first_step["terms"]
        return compare_terms(terms, library_loss_terms(*first_step["tensors"], config)), terms["loss"]

    return step, first_step_check


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


# ----------------------------------------------------------------------------
# Worker: one (config, implementation) in this process
# ----------------------------------------------------------------------------


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def pin_threads(implementation, threads):
    """Sets the engine's thread pools to `threads` before it runs anything;
    returns a description of what was set, for the table's notes."""
    backend = IMPLEMENTATIONS[implementation][0]
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        return f"TF intra-op {threads}, inter-op {threads}"
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
        return f"torch intra-op {torch.get_num_threads()}, inter-op {threads}"
    # XLA's CPU client makes one thread per core it may use; it has no
    # supported setting for fewer (JAX issues 743, 1539), so the worker's
    # CPU affinity is what pins it.
    return f"XLA CPU pool: one per core, affinity {threads}"


def run_worker(args):
    """Builds one implementation, checks its loss at step 1 against
    `mvmr_loss` on the same tensors (that check is the first warm-up step),
    warms it up, then times one step per "step" line read from stdin until
    "quit" (the protocol the driver uses).

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
    threads = args.threads or available_cores()
    if threads < available_cores() and expected_backend == "jax":
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    details = {"threads": pin_threads(args.implementation, threads)}
    config = benchmark_config(args.config, args.resnet18_96_projector, args.batch_size)
    details["projector"] = config.get("projector", "")
    if args.implementation == "pytorch":
        step, first_step_check = build_plain_pytorch(config)
    else:
        jit_compile = True if args.implementation.endswith(("-xla", "-jit")) else "auto"
        step, first_step_check, keras_details = keras_step_function(config, jit_compile)
        details.update(keras_details)
    start = time.perf_counter()
    # Step 1 is checked against mvmr_loss on its own tensors, then warms up.
    details["loss_check_max_abs_difference"], details["first_loss"] = first_step_check()
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
        threads = str(args.threads or available_cores())
        env = dict(
            os.environ,
            KERAS_BACKEND=IMPLEMENTATIONS[implementation][0],
            TF_CPP_MIN_LOG_LEVEL="2",
            OMP_NUM_THREADS=threads,  # torch's and oneDNN's OpenMP pools
            MKL_NUM_THREADS=threads,
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
                "--threads", str(args.threads or available_cores()),
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
        result["load_averages"] = loads
    return results


def config_reference(config_name, reference):
    """The implementation a config's rows divide by: `reference`, except
    plain PyTorch for a DINO config (it has none), where keras-jax."""
    if config_name in DINO_CONFIG_NAMES and reference == "pytorch":
        return DINO_REFERENCE
    return reference


def quantile(values, q):
    """The q-quantile of `values` by linear interpolation (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(repetitions, reference):
    """One row per (config, implementation) over all repetitions.

    `repetitions` is a list (one per repetition of the whole comparison) of
    `measure_config` results. A per-round ratio divides an implementation's
    step by the reference's step of the same round, so both ran under the
    same load; the row reports their median and interquartile range, and
    the median of each repetition. The verdict is "faster"/"slower" only
    when the whole interquartile range is below/above 1.
    """
    rows = {}
    for results in repetitions:
        by_implementation = {r["implementation"]: r for r in results}
        ref = by_implementation.get(reference)
        for r in results:
            row = rows.setdefault(r["implementation"], {
                "config": r["config"], "implementation": r["implementation"],
                "step_seconds": [], "ratios": [], "repetition_ratios": [], "loads": [],
                "errors": [], "first_losses": [], "loss_checks": [], "warmup_s": [],
            })
            row["loads"] += r.get("load_averages", [])
            if "error" in r:
                row["errors"].append(r["error"])
                continue
            row["step_seconds"] += r["step_seconds"]
            row["first_losses"].append(r["first_loss"])
            row["loss_checks"].append(r["loss_check_max_abs_difference"])
            row["warmup_s"].append(r["warmup_s"])
            row["threads"] = r.get("threads", "")
            if ref is not None and "error" not in ref:
                ratios = [a / b for a, b in zip(r["step_seconds"], ref["step_seconds"])]
                row["ratios"] += ratios
                row["repetition_ratios"].append(statistics.median(ratios))
    for row in rows.values():
        if row["ratios"]:
            low, high = quantile(row["ratios"], 0.25), quantile(row["ratios"], 0.75)
            row["ratio_median"] = statistics.median(row["ratios"])
            row["ratio_iqr"] = (low, high)
            if row["implementation"] == reference:
                row["verdict"] = "reference"
            elif high < 1.0:
                row["verdict"] = f"faster ({1 / row['ratio_median']:.2f}x)"
            elif low > 1.0:
                row["verdict"] = f"slower ({row['ratio_median']:.2f}x)"
            else:
                row["verdict"] = "within noise"
    return list(rows.values())


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


def markdown_table(rows, reference):
    label_of = IMPLEMENTATIONS[reference][1]
    lines = [
        f"| config | implementation | median ms/step | ratio to {label_of} (median of "
        "per-round ratios) | IQR of per-round ratios | median per repetition | verdict "
        "| warm-up s | loss at step 1 | loss check max abs diff |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        label = IMPLEMENTATIONS[r["implementation"]][1]
        if not r["step_seconds"]:
            lines.append(f"| {r['config']} | {label} | failed: {r['errors'][0]} "
                         "| | | | | | | |")
            continue
        if r.get("ratios"):
            ratio = f"{r['ratio_median']:.2f}x"
            iqr = f"{r['ratio_iqr'][0]:.2f}-{r['ratio_iqr'][1]:.2f}"
            per_repetition = ", ".join(f"{x:.2f}" for x in r["repetition_ratios"])
            verdict = r["verdict"]
        else:
            ratio = iqr = per_repetition = verdict = "n/a"
        failed = f" ({len(r['errors'])} repetitions failed)" if r["errors"] else ""
        lines.append(
            f"| {r['config']} | {label}{failed} "
            f"| {1000 * statistics.median(r['step_seconds']):.0f} | {ratio} | {iqr} "
            f"| {per_repetition} | {verdict} | {statistics.median(r['warmup_s']):.0f} "
            f"| {r['first_losses'][0]:.4f} | {max(r['loss_checks']):.1e} |"
        )
    return "\n".join(lines)


def mokd_against_dino_table(rows):
    """Per backend: the MOKD step over the sum of the two DINO steps (its
    ResNet alone, its ViT alone), from the rows' median step times; "" when
    the three configs were not all measured."""
    median = {(r["config"], r["implementation"]): statistics.median(r["step_seconds"])
              for r in rows if r["step_seconds"]}
    lines = []
    for implementation in IMPLEMENTATIONS:
        keys = [(c, implementation) for c in ("mokd_digits", "dino_digits", "dino_digits_vit")]
        if all(k in median for k in keys):
            mokd, resnet, vit = (median[k] for k in keys)
            lines.append(f"| {IMPLEMENTATIONS[implementation][1]} | {1000 * mokd:.0f} "
                         f"| {1000 * resnet:.0f} | {1000 * vit:.0f} "
                         f"| {mokd / (resnet + vit):.2f}x |")
    if not lines:
        return ""
    return "\n".join([
        "| implementation | MOKD ms/step | DINO ResNet ms/step | DINO ViT ms/step "
        "| MOKD / (ResNet + ViT) |", "| --- | ---: | ---: | ---: | ---: |", *lines])


def run_driver(args):
    config_names = [c for c in args.configs.split(",") if c]
    for name in config_names:
        if name not in CONFIG_NAMES + DINO_CONFIG_NAMES:
            sys.exit(f"error: unknown config {name!r}; expected some of "
                     f"{CONFIG_NAMES + DINO_CONFIG_NAMES}")
    chosen = [b for b in args.backends.split(",") if b] if args.backends else None
    for name in chosen or []:
        if name not in IMPLEMENTATIONS:
            sys.exit(f"error: unknown backend {name!r}; expected some of "
                     f"{list(IMPLEMENTATIONS)}")
    if args.reference not in IMPLEMENTATIONS:
        sys.exit(f"error: unknown --reference {args.reference!r}")
    started = time.time()
    rows, notes, raw = [], [], []
    references = {}  # reference -> its rows, one table each
    for config_name in config_names:
        reference = config_reference(config_name, args.reference)
        implementations = chosen or DEFAULT_BACKENDS[config_name]
        if config_name in DINO_CONFIG_NAMES:
            implementations = [i for i in implementations if i != "pytorch"]
        if reference not in implementations:
            implementations = implementations + [reference]
        repetitions = []
        for repetition in range(args.repeats):
            log(f"{config_name}: repetition {repetition + 1}/{args.repeats}")
            repetitions.append(measure_config(config_name, implementations, args))
        raw += repetitions
        config_rows = summarise(repetitions, reference)
        rows += config_rows
        references.setdefault(reference, []).extend(config_rows)
        loads = [x for row in config_rows[:1] for x in row["loads"]]
        config = benchmark_config(config_name, args.resnet18_96_projector, args.batch_size)
        if config_name in DINO_CONFIG_NAMES:
            head = config.get("dino") or config.get("mokd")
            what = ("MOKD, ResNet18 + ViT (T-Heads, CAFS, both EMA teachers)"
                    if config_name == "mokd_digits" else
                    f"DINO, {config.backbone} width {config.backbone_width} depths "
                    f"{tuple(config.backbone_depths)}")
            notes.append(
                f"{config_name}: {what}, 2 x {config.image_size} px + "
                f"{config.num_local_crops} x {config.local_crop_size} px crops, batch "
                f"{config.batch_size}, head {head.hidden_dim}-{head.bottleneck_dim}"
                f"-{head.out_dim}, EMA teacher, ratios to keras-{reference}; "
                f"{args.repeats} repetitions, {args.warmup or DEFAULT_WARMUP[config_name]} "
                f"warm-up + {args.steps or DEFAULT_STEPS[config_name]} timed rounds; 1-min load "
                f"average during the rounds: median {statistics.median(loads):.2f}, "
                f"max {max(loads):.2f}."
            )
            continue
        notes.append(
            f"{config_name}: ResNet18 width {config.backbone_width}, "
            f"{'3x3 stride-1' if config.small_kernel_stem else '7x7 stride-2'} stem, "
            f"{config.image_size} px, batch {config.batch_size}, projector "
            f"{config.projector}, representations `{config.representations}` in every row "
            f"(the same loss terms everywhere); {args.repeats} repetitions, each with fresh "
            f"processes, {args.warmup or DEFAULT_WARMUP[config_name]} warm-up + "
            f"{args.steps or DEFAULT_STEPS[config_name]} timed rounds; 1-min load average "
            f"during the rounds: median {statistics.median(loads):.2f}, "
            f"max {max(loads):.2f}."
        )
    for reference, reference_rows in references.items():
        print(markdown_table(reference_rows, reference))
        print()
    pair_table = mokd_against_dino_table(rows)
    if pair_table:
        print(pair_table)
        print()
    for note in notes:
        print(f"- {note}")
    threads = sorted({r["threads"] for r in rows if r.get("threads")})
    print(f"- Threads: {'; '.join(threads)} ({args.threads or available_cores()} cores "
          "available to each worker).")
    print(f"- Loss check: each row's loss at step 1, term by term "
          f"({', '.join(REFERENCE_LOSS_TERMS)}), against mvmr_keras.losses.mvmr_loss on "
          f"that step's own tensors (tolerance {LOSS_CHECK_TOLERANCE:g}); DINO rows: the "
          "loss against mvmr_keras.dino_loss.dino_loss on that step's own outputs.")
    print("- Verdict: faster/slower only when the interquartile range of the per-round "
          "ratios lies wholly below/above 1; otherwise within noise.")
    print(f"- Total wall time {time.time() - started:.0f} s, {os.cpu_count()} CPUs, "
          f"CPU model {cpu_model()}{', GPU ' + gpu_name() if gpu_name() else ''}.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "repetitions": raw}, f, indent=2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--configs", default=",".join(CONFIG_NAMES + DINO_CONFIG_NAMES),
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
    parser.add_argument("--repeats", type=int, default=3,
                        help="repetitions of the whole comparison, each with fresh processes")
    parser.add_argument("--reference", default=REFERENCE_IMPLEMENTATION,
                        help="the implementation every ratio divides by")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per engine (default: the cores this process may use)")
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
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        run_worker(arguments)
    else:
        run_driver(arguments)
