"""DINO's self-distillation loss, its centre and its teacher temperature.

Pure `keras.ops` functions of tensors (no variables, no TensorFlow):

- `dino_loss(student, teacher, centre, ...)`: for teacher logits `t`
  `(T, B, K)` (one slab per global crop) and student logits `s` `(S, B, K)`
  (the same global crops first, then the local ones), the mean over every
  pair (teacher crop i, student crop j), i != j, of the batch mean of
  `-sum_k softmax((t_i - c) / tau_t)_k * log_softmax(s_j / tau_s)_k`.
  The teacher side carries no gradient.
- `updated_centre(centre, teacher, momentum)`: the running mean of the
  teacher outputs, `m c + (1 - m) mean(t)` over both global crops and the
  batch. `centre_statistics` gives the (sum, count) it averages, so a
  data-parallel trainer can all-reduce both first (`all_reduce=`).
- `teacher_temperature(epoch, ...)`: linear warm-up per epoch (DINO's
  `np.linspace(warmup, final, warmup_epochs)`), then constant.
- `entropy` / `marginal_entropy`: how peaked the teacher's targets are
  (mean per-image entropy), and how spread over the K outputs their batch
  mean is; collapse shows as either reaching 0 or the per-image one
  reaching log K.

Example:

>>> t = np.random.randn(2, 8, 16); s = np.random.randn(4, 8, 16)
>>> c = np.zeros(16)
>>> loss = dino_loss(s, t, c, student_temperature=0.1, teacher_temperature=0.04)
>>> c = updated_centre(c, t, momentum=0.9)
"""

from keras import ops


def teacher_probabilities(teacher_logits, centre, temperature):
    """The centred, sharpened teacher targets `softmax((t - c) / tau_t)`."""
    teacher_logits = ops.cast(teacher_logits, "float32")
    centre = ops.cast(centre, "float32")
    return ops.softmax((teacher_logits - centre) / temperature, axis=-1)


def dino_loss(student_logits, teacher_logits, centre, student_temperature=0.1,
              teacher_temperature=0.07):
    """The DINO cross-entropy (module docstring), a float32 scalar.

    Args:
        student_logits: `(S, B, K)`, crop-major; the first `T` crops are the
            teacher's crops seen by the student (pairs with i == j skipped).
        teacher_logits: `(T, B, K)`, T <= S.
        centre: `(K,)` (or `(1, K)`).
        student_temperature, teacher_temperature: floats or scalar tensors.
    """
    student_logits = ops.cast(student_logits, "float32")
    targets = ops.stop_gradient(
        teacher_probabilities(teacher_logits, centre, teacher_temperature))
    log_predictions = ops.log_softmax(student_logits / student_temperature, axis=-1)
    num_teacher, num_student = targets.shape[0], log_predictions.shape[0]
    if num_teacher > num_student:
        raise ValueError(
            f"the student sees {num_student} crops, fewer than the teacher's {num_teacher}; "
            "the teacher's crops must be the student's first ones"
        )
    batch = ops.cast(ops.shape(student_logits)[1], "float32")
    # (T, S): the batch-mean cross-entropy of every (teacher, student) pair.
    pair_losses = -ops.einsum("ibk,jbk->ij", targets, log_predictions) / batch
    pairs = 1.0 - ops.eye(num_teacher, num_student, dtype="float32")
    return ops.sum(pair_losses * pairs) / ops.sum(pairs)


def centre_statistics(teacher_logits):
    """`(sum over rows (K,), number of rows)` of the teacher logits `(..., K)`."""
    teacher_logits = ops.cast(teacher_logits, "float32")
    rows = ops.reshape(teacher_logits, (-1, teacher_logits.shape[-1]))
    return ops.sum(rows, axis=0), ops.cast(ops.shape(rows)[0], "float32")


def updated_centre(centre, teacher_logits, momentum=0.9, all_reduce=None):
    """`m * centre + (1 - m) * mean(teacher rows)`; `all_reduce` (a function
    summing a tensor over replicas) makes the mean the global batch's."""
    total, count = centre_statistics(teacher_logits)
    if all_reduce is not None:
        total, count = all_reduce(total), all_reduce(count)
    centre = ops.cast(centre, "float32")
    return momentum * centre + (1.0 - momentum) * ops.reshape(total / count, ops.shape(centre))


def teacher_temperature(epoch, warmup_temperature=0.04, temperature=0.07, warmup_epochs=0):
    """`linspace(warmup_temperature, temperature, warmup_epochs)[epoch]`
    during the warm-up, `temperature` after."""
    epoch = ops.cast(epoch, "float32")
    if warmup_epochs <= 0:
        return ops.convert_to_tensor(float(temperature), "float32")
    if warmup_epochs == 1:
        ramp = ops.convert_to_tensor(float(warmup_temperature), "float32")
    else:
        ramp = warmup_temperature + (temperature - warmup_temperature) * epoch / (warmup_epochs - 1)
    return ops.where(epoch < warmup_epochs, ramp, float(temperature))


def entropy(probabilities):
    """Mean over rows of `-sum p log p` (nats) of `(..., K)` distributions."""
    p = ops.cast(probabilities, "float32")
    return ops.mean(-ops.sum(p * ops.log(ops.maximum(p, 1e-30)), axis=-1))


def marginal_entropy(probabilities):
    """Entropy (nats) of the mean of `(..., K)` distributions over rows."""
    p = ops.cast(probabilities, "float32")
    mean = ops.mean(ops.reshape(p, (-1, p.shape[-1])), axis=0)
    return -ops.sum(mean * ops.log(ops.maximum(mean, 1e-30)))
