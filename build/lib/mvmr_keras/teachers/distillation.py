"""What the trainer needs to distil a teacher: its embeddings and a score.

`prepare` gives the teacher's embeddings of the training and held-out
images, from the cache (`config.teacher.use_cache`, computed on first use)
or from a live teacher layer the model then runs every step.
`heldout_dcor` is the score the run reports: dCor between the student's
embedding `z` and the teacher's `t(x)` on held-out images.

Example:

>>> setup = prepare(config, workdir, train_images, test_images)
>>> heldout_dcor(model, test_images[:512], setup.test_embeddings[:512], 32)
0.41
"""

import dataclasses

import numpy as np

from mvmr_keras.teachers import cache as cache_lib


@dataclasses.dataclass
class Distillation:
    teacher: object  # the live teacher layer for the model, or None
    train_embeddings: object  # (N_train, D) cached embeddings, or None
    test_embeddings: np.ndarray  # (N_heldout, D) for the held-out score


def enabled(config):
    """Whether a config distils a teacher (a non-empty `teacher.preset`)."""
    teacher = config.get("teacher") if hasattr(config, "get") else None
    return bool(teacher and teacher.get("preset"))


def prepare(config, workdir, train_images, heldout_images, verbose=1, log=print):
    """Teacher embeddings for training and for the held-out score."""
    teacher = None
    if config.teacher.use_cache:
        train = cache_lib.embeddings_for(config, workdir, config.train_split,
                                         train_images, verbose=verbose, log=log)
        test = cache_lib.embeddings_for(config, workdir, config.test_split,
                                        heldout_images, verbose=verbose, log=log)
        return Distillation(None, train, test)
    teacher = cache_lib.teacher_from_config(config)
    predict = cache_lib.compiled_predict(teacher, config.image_size)
    test = np.concatenate([
        predict(cache_lib.original_view(heldout_images[i:i + config.teacher.batch_size],
                                        config.image_size))
        for i in range(0, len(heldout_images), config.teacher.batch_size)
    ])
    return Distillation(teacher, None, test)


def heldout_dcor(model, images, teacher_embeddings, image_size, batch_size=256):
    """dCor(z(x), t(x)) over `images` (the student's projector output `z`
    of the original view at `image_size`)."""
    from mvmr_keras import losses

    views = cache_lib.original_view(images, image_size)
    z = model.predict(views, batch_size=batch_size, verbose=0)
    return float(np.asarray(losses.distance_correlation(z, teacher_embeddings)))
