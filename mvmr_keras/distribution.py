"""Training on several devices and hosts: `config.distribution`.

`distribution = ""` trains on one device; `"data_parallel"` splits every
global batch (`config.batch_size`) evenly over `config.num_devices` local
devices (0 = all of them) with the engine's own machinery:

- JAX: `keras.distribution.DataParallel`. The train step is one SPMD
  program over the global batch, so every distance correlation and every
  BatchNorm statistic is computed over the global batch by construction.
- TensorFlow: `tf.distribute.MirroredStrategy`. Each replica holds 1/N of
  the batch, so `gather_replicas` all-gathers what the loss needs before
  the terms are computed, `replicas_in_sync` says by how much to divide the
  loss (the all-gather's gradient sums the replicas' upstream gradients,
  and the optimiser sums the replicas' gradients), and BatchNorm is
  switched to `synchronized=True` during `fit` (`Placement`).
- PyTorch: Keras has no torch distribution; `validate` refuses.

DINO and MOKD on TensorFlow gather their head outputs the same way (their
loss terms and centres are over the global batch; each replica then moves
its copy of the EMA teachers and centres identically), and their
optimisers sum the replicas' gradients before clipping (`all_reduce_sum`).

Several hosts (JAX only): every process runs the same program after
`initialize_processes` (the coordinator's address, the number of processes,
this process's id; `keras.distribution.initialize`). `DataParallel` then
spans the devices of all processes, Keras gives each process its own slice
of every global batch, and everything else (evaluation included) runs in
lockstep on every process; only process 0 writes the workdir (`is_chief`).
TensorFlow's multi-worker strategy does not run under Keras 3
(keras-team/keras#20585), so several TensorFlow workers are refused.

Every TensorFlow call is imported inside the function that needs it, so
importing this module (as `models.mvmr` does) never imports TensorFlow.

Example:

>>> with distribution.Placement(config) as placement:  # distribution="data_parallel"
...     with placement.building():
...         model = method.build_model()
...         model.compile(optimizer="sgd")
...     with placement.fitting(model):
...         model.fit(dataset, epochs=1)
"""

import contextlib
import functools
import json
import os

import keras

DISTRIBUTIONS = ("", "data_parallel")


class DistributionError(ValueError):
    """A distribution the config asks for cannot run here (one line)."""


def is_data_parallel(config):
    get = getattr(config, "get", None)
    return bool(get and get("distribution", "") == "data_parallel")


def local_devices():
    """The devices data parallelism spreads over: the accelerators when the
    engine has some, else its (possibly virtual) CPU devices."""
    backend = keras.backend.backend()
    if backend == "jax":
        return keras.distribution.list_devices()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in (tf.config.list_logical_devices("GPU")
                                 or tf.config.list_logical_devices("CPU"))]
    return []


PROCESS_ENVIRONMENT = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                       "KERAS_DISTRIBUTION_PROCESS_ID")


def initialize_processes(coordinator_address=None, num_processes=None, process_id=None):
    """Joins a job of several processes (one per host, or several on one
    host) before anything else runs; arguments left `None` come from
    Keras's environment variables (`PROCESS_ENVIRONMENT`). Returns the
    number of processes (1: nothing to join). Raises `DistributionError`
    (one line) where it cannot run."""
    env = os.environ
    if coordinator_address is None:
        coordinator_address = env.get(PROCESS_ENVIRONMENT[0]) or None
    if num_processes is None:
        num_processes = int(env.get(PROCESS_ENVIRONMENT[1]) or 1)
    if process_id is None and env.get(PROCESS_ENVIRONMENT[2]):
        process_id = int(env[PROCESS_ENVIRONMENT[2]])
    backend = keras.backend.backend()
    if backend == "tensorflow":
        num_processes = max(num_processes, _tf_config_workers())
    if num_processes <= 1:
        return 1
    if backend != "jax":
        raise DistributionError(
            f"several processes are not available on the {backend} backend (Keras 3 does not "
            "run TensorFlow's MultiWorkerMirroredStrategy, keras-team/keras#20585); "
            "use KERAS_BACKEND=jax")
    if not coordinator_address or process_id is None or not 0 <= process_id < num_processes:
        raise DistributionError(
            f"{num_processes} processes need the coordinator's HOST:PORT and this process's "
            f"id in [0, {num_processes}); got {coordinator_address!r} and {process_id!r}")
    keras.distribution.initialize(coordinator_address, num_processes, process_id)
    return num_processes


def _tf_config_workers():
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    except ValueError:
        return 0
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def process_count():
    """Processes in this job (1 unless `initialize_processes` joined more)."""
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def process_index():
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def is_chief():
    """Whether this process writes the workdir (process 0)."""
    return process_index() == 0


def validate(config):
    """Raises `DistributionError` with one line for a distribution that
    cannot run; returns the number of replicas (1 without distribution)."""
    get = config.get
    distribution = get("distribution", "") or ""
    num_devices = get("num_devices", 0) or 0
    if distribution not in DISTRIBUTIONS:
        raise DistributionError(
            f"unknown distribution {distribution!r}; available: 'data_parallel' "
            "or empty for one device"
        )
    if num_devices < 0:
        raise DistributionError(
            f"num_devices must be >= 0 (0 = all local devices); got {num_devices}")
    if not distribution:
        if process_count() > 1:
            raise DistributionError(
                f"this job has {process_count()} processes: set "
                "--config.distribution=data_parallel (else each would train alone)")
        return 1
    backend = keras.backend.backend()
    if backend not in ("jax", "tensorflow"):
        raise DistributionError(
            f"distribution 'data_parallel' is not available on the {backend} backend "
            "(Keras has no torch distribution); use KERAS_BACKEND=jax or "
            "KERAS_BACKEND=tensorflow"
        )
    if backend == "tensorflow" and (get("gradient_accumulation_steps", 1) or 1) > 1:
        # Keras's accumulation puts the replicas' all-reduce inside a
        # tf.cond, which MirroredStrategy cannot trace (keras-team/keras#20582).
        raise DistributionError(
            "gradient_accumulation_steps > 1 with data_parallel does not run on TensorFlow "
            "(keras-team/keras#20582); use KERAS_BACKEND=jax or a larger batch_size")
    available = len(local_devices())
    if num_devices > available:
        raise DistributionError(
            f"num_devices {num_devices} is more than the {available} local devices"
        )
    replicas = num_devices or available
    if get("batch_size") % replicas:
        raise DistributionError(
            f"batch_size {get('batch_size')} is not divisible by the {replicas} replicas"
        )
    return replicas


class Placement:
    """Where one run trains: one device, or `data_parallel` over several.

    Enter it around everything from building the model to the end of
    `fit`; it is undone on exit, so nothing leaks into later models of the
    same process. Inside, build and compile under `building()`, evaluate
    (batches of any size) under `paused()`, and fit under `fitting(model)`.
    """

    def __init__(self, config):
        self.data_parallel = is_data_parallel(config)
        self.backend = keras.backend.backend()
        self.devices = (local_devices()[: config.get("num_devices", 0) or None]
                        if self.data_parallel else [])
        self.strategy = None
        self._previous = None

    def __enter__(self):
        if self.data_parallel and self.backend == "jax":
            # Variables are laid out when created: set before building.
            self._previous = keras.distribution.distribution()
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=self.devices))
        elif self.data_parallel:
            self.strategy = _mirrored_strategy(tuple(self.devices))
        return self

    def __exit__(self, *exc):
        if self.data_parallel and self.backend == "jax":
            keras.distribution.set_distribution(self._previous)

    @contextlib.contextmanager
    def building(self):
        """Build and compile inside: TensorFlow's models made here keep the
        strategy (and `fit` runs every step on all replicas). `fit` itself
        runs outside it, so the models callbacks make are plain ones."""
        if self.strategy is None:
            yield
            return
        with self.strategy.scope():
            yield

    @contextlib.contextmanager
    def paused(self):
        """One device again while inside (JAX): evaluation predicts batches
        of any size, which a batch-sharded layout cannot split. The
        variables stay replicated, so the models keep working."""
        if not (self.data_parallel and self.backend == "jax"):
            yield
            return
        current = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(current)

    @contextlib.contextmanager
    def fitting(self, model):
        """TensorFlow: BatchNorm statistics over all replicas while inside
        (JAX's are global already), reset on exit since a saved
        `synchronized=True` does not load on other backends. The models
        inside `model` (its encoder) stop carrying the strategy: callbacks
        and evaluation call them on batches `*_on_batch` would otherwise run
        whole on every replica."""
        if self.strategy is None:
            yield
            return
        inner = list(model._flatten_layers(include_self=False, recursive=True))
        for layer in inner:
            if isinstance(layer, keras.Model):
                layer._distribute_strategy = None
        norms = [layer for layer in inner if isinstance(layer, keras.layers.BatchNormalization)]
        for layer in norms:
            layer.synchronized = True
        try:
            yield
        finally:
            for layer in norms:
                layer.synchronized = False

    def callback(self, callback):
        """`callback` with its hooks run under `paused()`."""
        if not (self.data_parallel and self.backend == "jax"):
            return callback
        return _PausedCallback(callback, self)


@functools.lru_cache(maxsize=None)
def _mirrored_strategy(devices):
    """One strategy per set of devices and process: a second one's
    collective ops clash with the first's (a resumed run, tests)."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))


class _PausedCallback(keras.callbacks.Callback):
    """Runs another callback's hooks under `Placement.paused()`: the online
    probe and kNN monitor evaluate on batches of any size during `fit`."""

    def __init__(self, callback, placement):
        super().__init__()
        self.callback = callback
        self.placement = placement

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)


def _paused_hook(name):
    def hook(self, *args, **kwargs):
        with self.placement.paused():
            return getattr(self.callback, name)(*args, **kwargs)

    hook.__name__ = name
    return hook


for _name in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end"):
    setattr(_PausedCallback, _name, _paused_hook(_name))


def replicas_in_sync():
    """How many TensorFlow replicas run this step in sync (1 outside a
    strategy's replica context and on the other backends)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


def gather_replicas(values, axis=0):
    """A nest of tensors whose `axis` is the replica's slice of the batch
    (`(B_local, ...)` for axis 0) -> the same with the global batch, the
    replicas' slices in replica order (unchanged with one replica).

    Its gradient (TensorFlow's own) sums the replicas' upstream gradients
    and hands each replica its slice, so a loss computed on the gathered
    batch must be divided by `replicas_in_sync()`."""
    if replicas_in_sync() == 1:
        return values
    import tensorflow as tf

    # One all_gather per tensor: the gradient of a nest of them packs the
    # upstream gradients into one tensor, which fails for mixed ranks.
    context = tf.distribute.get_replica_context()

    def gather(x):
        gathered = context.all_gather(x, axis=axis)
        # all_gather drops the static shape; the loss code reads it.
        shape = x.shape.as_list()
        if shape[axis] is not None:
            shape[axis] *= context.num_replicas_in_sync
        gathered.set_shape(shape)
        return gathered

    return tf.nest.map_structure(gather, values)


def all_reduce_sum(grads):
    """The replicas' gradients summed (`None`s kept), on every replica; as is
    with one replica. Distillation optimisers sum before they clip each
    tensor and add coupled weight decay, which TensorFlow's own step would do
    after (clipping each replica's part, and decaying once per replica)."""
    if replicas_in_sync() == 1:
        return grads
    import tensorflow as tf

    present = [g for g in grads if g is not None]
    reduced = iter(tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, present) if present else [])
    return [None if g is None else next(reduced) for g in grads]
