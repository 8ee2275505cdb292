"""DINO's optimisers: scheduled weight decay, and a last layer frozen at first.

`DistillationAdamW` and `DistillationSGD` are Keras's AdamW and SGD (SGD
with momentum 0.9) with what DINO's optimisation adds, all computed inside
the optimiser's step from its own `iterations`, so they run in the
compiled train step on every backend:

- weight decay following `CosineSchedule(weight_decay, final_weight_decay,
  decay_steps)` per step (constant when `final_weight_decay` is None), on
  tensors of rank >= 2 only: biases and normalisation scales/offsets
  (rank 1) are not decayed; kernels, the ViT's position embedding and CLS
  token and the weight-normalised layer's gain (stored as `(1, K)`, like
  PyTorch's `(K, 1)`) are, as in DINO's and MOKD's parameter groups.
  AdamW decays decoupled (`w -= lr * wd * w`, as `torch.optim.AdamW`);
  SGD adds `wd * w` to the (clipped) gradient, as `torch.optim.SGD`.
- `freeze_steps`: variables whose name contains `frozen_name` (default
  `last_layer`) get a zero gradient and no decay while `iterations <
  freeze_steps` (DINO cancels its head's last layer during epoch 0); once
  free, AdamW's bias correction counts their steps from there, as
  PyTorch's per-parameter Adam state does.
- per-tensor gradient clipping is Keras's own `clipnorm` (each gradient is
  clipped by its own norm: `BaseOptimizer._clip_gradients`). Under a
  TensorFlow strategy the replicas' gradients are summed first
  (`distribution.all_reduce_sum`), so the global gradient is clipped and
  decayed, as on one device and on JAX.
- `decay_all=True` decays every tensor, biases and norms too (MOKD's CNN
  T-Head parameter group).

`GroupedOptimizer` steps groups of a model's variables with optimisers of
their own (MOKD: the CNN with SGD, its T-Head with SGD on the ViT's
schedules, the ViT with AdamW), in one train step on every backend.

Example:

>>> optimizer = DistillationAdamW(learning_rate=schedule, weight_decay=0.04,
...                               final_weight_decay=0.4, decay_steps=total_steps,
...                               freeze_steps=steps_per_epoch, clipnorm=3.0)
"""

import keras
from keras import ops

from mvmr_keras import distribution
from mvmr_keras.schedules import CosineSchedule


class _DistillationMixin:
    """The shared part of both optimisers (module docstring)."""

    def _init_distillation(self, weight_decay, final_weight_decay, decay_steps, freeze_steps,
                           frozen_name, decay_all=False):
        self.decay_all = bool(decay_all)
        self.weight_decay_start = float(weight_decay)
        self.final_weight_decay = None if final_weight_decay is None else float(final_weight_decay)
        self.decay_steps = int(decay_steps)
        self.freeze_steps = int(freeze_steps)
        self.frozen_name = str(frozen_name)
        self.weight_decay_schedule = CosineSchedule(
            self.weight_decay_start, self.final_weight_decay, self.decay_steps)

    def current_weight_decay(self):
        """The weight decay of the coming step."""
        return self.weight_decay_schedule(self.iterations)

    def decays(self, variable):
        """Rank >= 2 tensors are decayed; biases and norms are not, unless
        `decay_all` (MOKD's CNN T-Head group decays every tensor)."""
        return self.decay_all or len(variable.shape) >= 2

    def is_frozen_at_first(self, variable):
        return bool(self.frozen_name) and self.frozen_name in variable.name

    def _unfrozen(self, dtype):
        """1 once `iterations >= freeze_steps`, else 0."""
        return ops.cast(ops.greater_equal(self.iterations, self.freeze_steps), dtype)

    def apply(self, grads, trainable_variables=None):
        variables = (self._trainable_variables if trainable_variables is None
                     else list(trainable_variables))
        grads = [None if g is None else ops.convert_to_tensor(g) for g in grads]
        # TensorFlow replicas: the global gradient before it is clipped.
        grads = distribution.all_reduce_sum(grads)
        if self.freeze_steps > 0:
            grads = [
                g if g is None or not self.is_frozen_at_first(v) else g * self._unfrozen(g.dtype)
                for g, v in zip(grads, variables)
            ]
        return super().apply(grads, trainable_variables)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # TensorFlow's step sums the replicas' gradients here, after clipping;
        # `apply` has summed them already.
        return grads_and_vars

    def _decay_factor(self, variable):
        """`wd` (times 0 for a variable still frozen) in the variable's dtype."""
        wd = ops.cast(self.current_weight_decay(), variable.dtype)
        if self.freeze_steps > 0 and self.is_frozen_at_first(variable):
            wd = wd * self._unfrozen(variable.dtype)
        return wd

    def _distillation_config(self):
        return {
            "weight_decay": self.weight_decay_start,
            "final_weight_decay": self.final_weight_decay,
            "decay_steps": self.decay_steps,
            "freeze_steps": self.freeze_steps,
            "frozen_name": self.frozen_name,
            "decay_all": self.decay_all,
        }


@keras.saving.register_keras_serializable(package="mvmr_keras")
class DistillationAdamW(_DistillationMixin, keras.optimizers.AdamW):
    """AdamW with DINO's weight-decay schedule and last-layer freeze."""

    def __init__(self, learning_rate=1e-3, weight_decay=0.04, final_weight_decay=None,
                 decay_steps=1, freeze_steps=0, frozen_name="last_layer", decay_all=False,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=float(weight_decay), **kwargs)
        self._init_distillation(weight_decay, final_weight_decay, decay_steps, freeze_steps,
                                frozen_name, decay_all)

    def _apply_weight_decay(self, variables):
        lr = self.learning_rate
        for variable in variables:
            if self.decays(variable):
                factor = self._decay_factor(variable) * ops.cast(lr, variable.dtype)
                variable.assign(variable - variable * factor)

    def update_step(self, gradient, variable, learning_rate):
        if self.freeze_steps > 0 and self.is_frozen_at_first(variable):
            # PyTorch's Adam counts a parameter's bias correction from its
            # first gradient; Keras's from the optimiser's first step, which
            # would give the unfrozen layer up to ~6x larger steps for
            # hundreds of steps. Rescale the rate to the parameter's own count.
            dtype = variable.dtype
            step = ops.cast(self.iterations + 1, dtype)
            own_step = ops.maximum(step - self.freeze_steps, 1.0)
            beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)

            def correction(t):
                return ops.sqrt(1.0 - ops.power(beta_2, t)) / (1.0 - ops.power(beta_1, t))

            learning_rate = ops.cast(learning_rate, dtype) * correction(own_step) / correction(step)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(self._distillation_config())
        return config


@keras.saving.register_keras_serializable(package="mvmr_keras")
class DistillationSGD(_DistillationMixin, keras.optimizers.SGD):
    """SGD (momentum 0.9 by default) with coupled, scheduled weight decay
    and the last-layer freeze."""

    def __init__(self, learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
                 final_weight_decay=None, decay_steps=1, freeze_steps=0,
                 frozen_name="last_layer", decay_all=False, **kwargs):
        kwargs.pop("nesterov", None)
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self._init_distillation(weight_decay, final_weight_decay, decay_steps, freeze_steps,
                                frozen_name, decay_all)

    def _apply_weight_decay(self, variables):
        pass  # coupled: added to the gradient in _backend_update_step

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # After clipping (torch.optim.SGD adds wd * w inside its step).
        grads = [
            g if g is None or not self.decays(v)
            else ops.add(g, ops.cast(self._decay_factor(v), g.dtype) * ops.cast(v, g.dtype))
            for g, v in zip(grads, trainable_variables)
        ]
        return super()._backend_update_step(grads, trainable_variables, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(self._distillation_config())
        return config


@keras.saving.register_keras_serializable(package="mvmr_keras")
class GroupedOptimizer(keras.optimizers.Optimizer):
    """Several optimisers, each stepping its own group of variables.

    One backward pass of a sum of losses gives each variable the gradient
    of the loss that depends on it (MOKD: each model's loss depends on its
    own student only), and each group's optimiser then steps its variables
    with its own rule, schedules, clipping and state. The groups are lists
    of variables given by the model (`set_groups`, which `MOKD.compile`
    calls, also when a saved model is compiled again on loading). Each
    optimiser counts its own steps; `iterations` counts the steps of the
    whole, and `learning_rate` is the first group's.

    Example:

    >>> optimizer = GroupedOptimizer([keras.optimizers.SGD(0.1), keras.optimizers.AdamW(1e-3)])
    >>> optimizer.set_groups([cnn.trainable_variables, vit.trainable_variables])
    >>> optimizer.apply(grads, cnn.trainable_variables + vit.trainable_variables)
    """

    def __init__(self, optimizers, name="grouped_optimizer", **kwargs):
        kwargs.pop("learning_rate", None)
        super().__init__(learning_rate=0.0, name=name, **kwargs)
        if not optimizers:
            raise ValueError("GroupedOptimizer needs at least one optimizer")
        self.optimizers = list(optimizers)
        self._groups = None

    def set_groups(self, groups):
        """`groups[i]` (variables) are stepped by `optimizers[i]`."""
        if len(groups) != len(self.optimizers):
            raise ValueError(
                f"{len(groups)} variable groups for {len(self.optimizers)} optimizers")
        # Ids, not the variables: a list of variables set on an optimizer
        # would be tracked as its own.
        self._groups = {id(v): index for index, group in enumerate(groups) for v in group}

    @property
    def variables(self):
        return self._variables[:] + [v for o in self.optimizers for v in o.variables]

    def build(self, variables):
        if self._groups is None:
            raise ValueError(
                "GroupedOptimizer.set_groups(...) must give the variable groups before it is "
                "built (a MOKD model's compile does)")
        members = [[] for _ in self.optimizers]
        for variable in variables:
            if id(variable) not in self._groups:
                raise ValueError(f"variable {variable.path} is in no optimizer group")
            members[self._groups[id(variable)]].append(variable)
        for optimizer, group in zip(self.optimizers, members):
            optimizer.build(group)
        super().build(variables)

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        else:
            trainable_variables = list(trainable_variables)
            if not self.built:
                self.build(trainable_variables)
        grads = [None if g is None else ops.convert_to_tensor(g) for g in grads]
        for index, optimizer in enumerate(self.optimizers):
            pairs = [(g, v) for g, v in zip(grads, trainable_variables)
                     if self._groups[id(v)] == index]
            if pairs:
                optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        self._iterations.assign_add(1)

    def _get_current_learning_rate(self):
        return self.optimizers[0]._get_current_learning_rate()

    def get_config(self):
        return {"name": self.name,
                "optimizers": [keras.saving.serialize_keras_object(o) for o in self.optimizers]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["optimizers"] = [keras.saving.deserialize_keras_object(o, custom_objects=custom_objects)
                                for o in config["optimizers"]]
        return cls(**config)
