"""MOKD's losses for one model A of the pair (A, B); pure `keras.ops`.

The four terms (`../shared/spec/MOKD.md`), each a DINO-style
cross-entropy between a sharpened teacher softmax and the student's
`log_softmax(s / tau_s)`:

- `self_mlp` (L_sm): `dino_loss(student A MLP, teacher A MLP)`, A's centre;
- `self_thead` (L_st): the same with both T-Heads, A's T-Head centre;
- `cross_mlp` (L_cm): `dino_loss(student A MLP, teacher B MLP)` with B's
  MLP centre (the released code keeps a centre of its own for this loss,
  fed with the same teacher outputs at the same momentum: the same numbers);
- `cafs` (L_ct): `cafs_loss(student A T-Head on A's local crops, teacher B
  T-Head searched with A's queries)`: one cross-entropy per local-crop row,
  the target `softmax(t / tau_t)` **not centred**.

`model_loss(terms, lam) = self_mlp + self_thead + lam (cross_mlp + cafs)`.
Teacher logits never carry a gradient.

Example:

>>> s = np.random.randn(12, 16); t = np.random.randn(12, 16)
>>> float(cafs_loss(s, t, student_temperature=0.1, teacher_temperature=0.04)) > 0
True
"""

from keras import ops

TERMS = ("self_mlp", "self_thead", "cross_mlp", "cafs")


def cafs_loss(student_logits, teacher_logits, student_temperature=0.1, teacher_temperature=0.07):
    """Mean over rows of `-sum softmax(t / tau_t) * log_softmax(s / tau_s)`.

    Args:
        student_logits, teacher_logits: `(..., K)` with the same rows (each
            local crop of each image, and the teacher's search for it).
    """
    student_logits = ops.cast(student_logits, "float32")
    targets = ops.stop_gradient(
        ops.softmax(ops.cast(teacher_logits, "float32") / teacher_temperature, axis=-1))
    log_predictions = ops.log_softmax(student_logits / student_temperature, axis=-1)
    return ops.mean(-ops.sum(targets * log_predictions, axis=-1))


def model_loss(terms, cross_weight):
    """`L = self_mlp + self_thead + cross_weight * (cross_mlp + cafs)`."""
    return (terms["self_mlp"] + terms["self_thead"]
            + cross_weight * (terms["cross_mlp"] + terms["cafs"]))
