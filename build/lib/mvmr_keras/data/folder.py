"""A user's own images: `load("folder:PATH", split)`.

Layouts:

- `PATH/<class>/<image>`: labels are the class sub-folders' indices in
  sorted order; images directly in `PATH` are then ignored.
- `PATH/<image>` (no sub-folders): every label is -1.
- `PATH/train/...`, `PATH/test/...` (any of `SPLIT_DIRS`): each such
  sub-folder is a split with one of the layouts above. Otherwise the
  whole folder is the one split `train`.

Images may be JPEG, PNG, GIF or BMP, of any size; grayscale and RGBA ones
become RGB. Files that are not readable images (wrong magic bytes, or
truncated: no JPEG end marker, no PNG `IEND`) are skipped and counted in
one warning when the folder is listed; a file that is damaged in a way
this check misses is dropped when it fails to decode, never stopping an
epoch.

Example:

>>> ds = load_folder("/data/flowers", "train")      # doctest: +SKIP
>>> image, label = next(iter(ds))                   # doctest: +SKIP
"""

import os
import warnings

SPLIT_DIRS = ("train", "validation", "val", "test", "unlabelled")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def _is_image_dir(path):
    return os.path.isdir(path) and not os.path.basename(path).startswith(".")


def _looks_complete(path):
    """Cheap check of an image file's head and tail (no decoding)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(size - 12, 0))
            tail = f.read()
    except OSError:
        return False
    if head.startswith(b"\xff\xd8"):  # JPEG: must end with the EOI marker
        return tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return b"IEND" in tail
    if head.startswith((b"GIF87a", b"GIF89a")):
        return tail.endswith(b";")
    return head.startswith(b"BM") and size > 54


def _image_files(directory):
    return sorted(
        os.path.join(directory, name) for name in os.listdir(directory)
        if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(directory, name))
    )


def list_folder(path, split="train"):
    """`(files, labels, class_names)` of a folder split; skips (and warns
    about, once) files that are not complete images."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Image folder {path!r} does not exist.")
    split_dirs = [d for d in SPLIT_DIRS if _is_image_dir(os.path.join(path, d))]
    splits = split_dirs or ["train"]
    if split not in splits:
        raise ValueError(f"Unknown split {split!r} for folder {path!r}; available: {splits}.")
    root = os.path.join(path, split) if split_dirs else path
    class_names = sorted(
        d for d in os.listdir(root) if _is_image_dir(os.path.join(root, d))
    )
    files, labels = [], []
    if class_names:
        for label, name in enumerate(class_names):
            class_files = _image_files(os.path.join(root, name))
            files += class_files
            labels += [label] * len(class_files)
    else:
        files = _image_files(root)
        labels = [-1] * len(files)
    good = [_looks_complete(f) for f in files]
    bad = [f for f, ok in zip(files, good) if not ok]
    if bad:
        warnings.warn(
            f"Skipped {len(bad)} unreadable or truncated image file(s) in {root}, "
            f"e.g. {', '.join(os.path.basename(b) for b in bad[:3])}.",
            stacklevel=3,
        )
    files = [f for f, ok in zip(files, good) if ok]
    labels = [lab for lab, ok in zip(labels, good) if ok]
    if not files:
        raise ValueError(
            f"No readable images ({', '.join(IMAGE_EXTENSIONS)}) in {root!r}"
            + (f" (class folders: {class_names})." if class_names else ".")
        )
    return files, labels, class_names


def load_folder(path, split="train"):
    """A `tf.data.Dataset` of `(image uint8 (H, W, 3), label int64)` from
    an image folder (module docstring for the layouts)."""
    import tensorflow as tf

    files, labels, _ = list_folder(path, split)

    def decode(file, label):
        image = tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)
        return tf.ensure_shape(image, (None, None, 3)), label

    ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(labels, tf.int64)))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.ignore_errors()
