"""Converts the authors' PyTorch MV-MR checkpoints into this project's files.

    python -m mvmr_keras.convert --checkpoint=FILE --output=DIR [--config=configs/stl10.py]

Reads, with `torch.load(weights_only=True)` (never arbitrary unpickling):

- a PyTorch Lightning `.ckpt` of the official code: `state_dict` with
  `_encoder.backbone.*` (torchvision ResNet names), `_encoder.projector.*`
  (`Linear, BatchNorm1d, ReLU` repeated, then `Linear`: indices 0, 1, 3,
  4, 6 for 8192-8192-8192) and `online_finetuner.*`; the module's fixed
  feature extractors (`_scatnet`, `_hog`) and a CLIP teacher (`clip`) are
  skipped; the fine-tuning module's `encoder.*` (the backbone) and
  `classifier.*` are read too;
- the `{'encoder': ..., 'online_finetuner': ...}` files of the official
  `scripts/save_self_weights.py` (and `save_clip_weights.py`), and the
  `{'encoder': <backbone only>, 'classifier': ...}` files of
  `save_semi_weights.py` (fine-tuned on 1% / 10% of ImageNet's labels);
- a bare state dict in either naming.

Writes to DIR:

    encoder.keras      ImageEncoder: [0, 255] images -> backbone features
    model.keras        the MVMR model (encoder + projector), when the
                       checkpoint has a projector; its loss settings
                       (representations, ...) come from the config
    linear_head.keras  features -> logits, from `online_finetuner` or
                       `classifier`, when there is one
    conversion.json    what was found and what was written

The architecture (ResNet18/34/50/101, width, small-kernel or standard
stem, projector sizes) comes from the tensor shapes. What differs between
the two frameworks is converted: convolution kernels `(O, I, kh, kw)` ->
`(kh, kw, I, O)`, Linear weights transposed, BatchNorm epsilon 1e-5 and
momentum 0.1 (PyTorch) = 0.9 (Keras) in the backbone and the projector.
PyTorch's `running_var` is used as Keras's `moving_variance` unchanged: in
inference both compute `(x - mean) / sqrt(var + eps) * gamma + beta`.
The official code normalises `ToTensor()` images ([0, 1]) with ImageNet
statistics (STL10, ImageNet) or CIFAR statistics (CIFAR10/20/100), the
same numbers as `NORMALIZATION_STATS`; the config's `normalization` picks
them (default: `configs/stl10.py`, ImageNet's).

Example:

>>> summary = convert_checkpoint("stl10.pth", "converted/stl10")
>>> summary["architecture"]["backbone"], summary["written"]
('resnet50', ['encoder.keras', 'model.keras', 'linear_head.keras'])
"""

import json
import os
import re
import sys

import numpy as np

# Prefixes of the Lightning module's buffers that are not the model: the
# fixed scattering and HOG extractors and a frozen CLIP teacher.
SKIPPED_PREFIXES = ("_scatnet.", "_hog.", "clip.")
TORCH_BATCHNORM_EPSILON = 1e-5
TORCH_BATCHNORM_MOMENTUM = 0.9  # PyTorch's momentum 0.1 in Keras's convention
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
_TORCH_REQUIREMENT = "requirements-backends.txt"


class ConversionError(ValueError):
    """A checkpoint this converter cannot read; the message says why."""


# --------------------------------------------------------------------------
# Reading the file.


def load_torch_checkpoint(path):
    """The checkpoint's object tree with tensors as float32 NumPy arrays."""
    try:
        import torch
    except ImportError:
        raise ConversionError(
            f"reading PyTorch checkpoints needs torch; install it with "
            f"`pip install -r {_TORCH_REQUIREMENT}`"
        ) from None
    import pickle

    if not os.path.isfile(path):
        raise ConversionError(f"no checkpoint file at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        needed = re.search(r"GLOBAL ([\w.]+)", str(e))
        if needed or "weights_only" in str(e).lower() and "global" in str(e).lower():
            what = needed.group(1) if needed else "a Python object"
            raise ConversionError(
                f"{path} needs code to unpickle ({what}), which is refused; re-save "
                "its weights as plain tensors (the official scripts/save_self_weights.py "
                "writes such a file)"
            ) from None
        raise ConversionError(f"{path} is truncated or not a PyTorch checkpoint: "
                              f"{_first_line(e)}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ConversionError(f"{path} is truncated or not a PyTorch checkpoint: "
                              f"{_first_line(e)}") from None
    if isinstance(obj, dict):
        # Only the model's parts: a Lightning file's optimiser state can be
        # larger than the model and is not needed.
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return _to_numpy(obj, torch)
        return {k: _to_numpy(v, torch) if k in _MODEL_ENTRIES else v for k, v in obj.items()}
    return obj


_MODEL_ENTRIES = ("state_dict", "encoder", "online_finetuner", "classifier")


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _to_numpy(obj, torch):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(torch.float32).numpy() if obj.is_floating_point() \
            else obj.detach().numpy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v, torch) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v, torch) for v in obj)
    return obj


# --------------------------------------------------------------------------
# Finding the parts: backbone, projector, head.


def split_checkpoint(checkpoint):
    """`{'backbone': {...}, 'projector': {...} | None, 'head': {...} | None}`,
    each a state dict with short names, plus `'prefixes'` (the prefix each
    part had in the file, for error messages) and `'format'`."""
    if not isinstance(checkpoint, dict):
        raise ConversionError(
            f"the checkpoint holds a {type(checkpoint).__name__}, not a dict of tensors"
        )
    if isinstance(checkpoint.get("state_dict"), dict):  # Lightning
        state = {k: v for k, v in checkpoint["state_dict"].items()
                 if not k.startswith(SKIPPED_PREFIXES)}
        # SelfSupervisedModule / CLIPSelfSupervisedModule, or the
        # fine-tuned SemiSupervisedModule (`encoder` = the backbone).
        encoder_prefix, head_prefix = ("_encoder.", "online_finetuner.") if any(
            k.startswith("_encoder.") for k in state) else ("encoder.", "classifier.")
        encoder, rest = _take_prefix(state, encoder_prefix)
        head, rest = _take_prefix(rest, head_prefix)
        _no_leftovers(rest, "state_dict")
        parts = _split_encoder(encoder, "state_dict", encoder_prefix)
        parts["head"], parts["prefixes"]["head"] = head or None, head_prefix
        parts["format"] = "lightning"
        return parts
    if isinstance(checkpoint.get("encoder"), dict):  # save_*_weights.py
        extra = sorted(set(checkpoint) - {"encoder", "online_finetuner", "classifier"})
        if extra:
            raise ConversionError(
                f"unexpected key '{extra[0]}' next to 'encoder' (expected "
                "'online_finetuner' or 'classifier')"
            )
        parts = _split_encoder(checkpoint["encoder"], "encoder", "")
        head_key = "online_finetuner" if "online_finetuner" in checkpoint else "classifier"
        parts["head"] = checkpoint.get(head_key)
        parts["prefixes"]["head"] = f"{head_key}."
        parts["format"] = "saved_weights"
        return parts
    if checkpoint and all(isinstance(v, np.ndarray) for v in checkpoint.values()):
        parts = _split_encoder(checkpoint, "the state dict", "")
        parts["head"] = None
        parts["format"] = "state_dict"
        return parts
    raise ConversionError(
        f"unknown checkpoint layout: top-level keys {sorted(checkpoint)[:5]}; expected "
        "'state_dict' (Lightning .ckpt) or 'encoder' (save_self_weights.py)"
    )


def _take_prefix(state, prefix):
    taken = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
    return taken, rest


def _no_leftovers(rest, where):
    if rest:
        raise ConversionError(f"unknown checkpoint layout: unexpected key "
                              f"'{next(iter(rest))}' in {where}")


def _split_encoder(encoder, where, prefix):
    """ResnetMultiProj's state (`backbone.*`, `projector.*`) or a bare
    torchvision ResNet's (`conv1.weight`, ...)."""
    if any(k.startswith("backbone.") for k in encoder):
        backbone, rest = _take_prefix(encoder, "backbone.")
        projector, rest = _take_prefix(rest, "projector.")
        _no_leftovers({prefix + k: v for k, v in rest.items()}, where)
        return {
            "backbone": backbone,
            "projector": projector or None,
            "prefixes": {"backbone": f"{prefix}backbone.", "projector": f"{prefix}projector."},
        }
    if "conv1.weight" not in encoder:
        first = next(iter(encoder), None)
        if first is None:
            raise ConversionError(f"unknown checkpoint layout: {where} is empty")
        raise ConversionError(
            f"unknown checkpoint layout: unexpected key '{prefix}{first}' in {where} "
            f"(expected torchvision ResNet names, '{prefix}backbone.conv1.weight' first)"
        )
    return {"backbone": dict(encoder), "projector": None,
            "prefixes": {"backbone": prefix, "projector": None}}


# --------------------------------------------------------------------------
# The architecture, from the shapes.


def infer_backbone(state, prefix=""):
    """`dict(block_type, stackwise_num_blocks, width, small_kernel_stem, name)`
    of a torchvision-named ResNet state dict."""
    stem = state.get("conv1.weight")
    if stem is None:
        raise ConversionError(f"unknown checkpoint layout: missing key '{prefix}conv1.weight'")
    if stem.ndim != 4 or stem.shape[1] != 3 or stem.shape[2:] not in ((3, 3), (7, 7)):
        raise ConversionError(
            f"unknown checkpoint layout: '{prefix}conv1.weight' has shape {stem.shape}; "
            "expected (width, 3, 7, 7) or, the small-kernel stem, (width, 3, 3, 3)"
        )
    blocks = []
    for stage in range(1, 5):
        indices = {int(m.group(1)) for k in state
                   if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        if not indices:
            break
        blocks.append(max(indices) + 1)
    if not blocks:
        raise ConversionError(f"unknown checkpoint layout: missing key '{prefix}layer1.0.conv1.weight'")
    block_type = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    from mvmr_keras.models.resnet import RESNET_ARCHITECTURES

    name = next((n for n, arch in RESNET_ARCHITECTURES.items()
                 if arch == (block_type, tuple(blocks))), f"resnet_{block_type}")
    return {
        "name": name,
        "block_type": block_type,
        "stackwise_num_blocks": tuple(blocks),
        "width": int(stem.shape[0]),
        "small_kernel_stem": stem.shape[2] == 3,
    }


def infer_projector_sizes(state, prefix=""):
    """Sizes of `Linear, BatchNorm1d, ReLU, ..., Linear` from index 0."""
    sizes, index = [], 0
    while f"{index}.weight" in state:
        weight = state[f"{index}.weight"]
        if weight.ndim != 2:
            raise ConversionError(
                f"unknown checkpoint layout: '{prefix}{index}.weight' has shape "
                f"{weight.shape}; expected a Linear weight (out, in)"
            )
        sizes.append(int(weight.shape[0]))
        if f"{index + 1}.running_mean" not in state:
            break
        index += 3
    if not sizes:
        raise ConversionError(f"unknown checkpoint layout: missing key '{prefix}0.weight'")
    return tuple(sizes)


# --------------------------------------------------------------------------
# Torch names -> Keras layers.


def backbone_key_map(backbone):
    """`[(torch_prefix, keras_layer_name, kind)]` for a `ResNetBackbone`, in
    the order of torchvision's state dict; kind is `conv` or `bn`."""
    entries = [("conv1", "stem_conv", "conv"), ("bn1", "stem_bn", "bn")]
    convs = 3 if backbone.block_type == "bottleneck" else 2
    for s, num_blocks in enumerate(backbone.stackwise_num_blocks):
        for b in range(num_blocks):
            torch_block, keras_block = f"layer{s + 1}.{b}", f"stage{s + 1}_block{b + 1}"
            for i in range(1, convs + 1):
                entries.append((f"{torch_block}.conv{i}", f"{keras_block}_conv{i}", "conv"))
                entries.append((f"{torch_block}.bn{i}", f"{keras_block}_bn{i}", "bn"))
            if _has_layer(backbone, f"{keras_block}_down_conv"):
                entries.append((f"{torch_block}.downsample.0", f"{keras_block}_down_conv", "conv"))
                entries.append((f"{torch_block}.downsample.1", f"{keras_block}_down_bn", "bn"))
    return entries


def _has_layer(model, name):
    try:
        model.get_layer(name)
        return True
    except ValueError:
        return False


def _expected_shapes(kind, layer):
    if kind == "conv":
        kh, kw, cin, cout = layer.kernel.shape
        return {"weight": (cout, cin, kh, kw)}
    channels = layer.gamma.shape[0]
    return {f: (channels,) for f in _BN_FIELDS}


def _keras_weights(kind, tensors):
    if kind == "conv":
        return [np.transpose(tensors["weight"], (2, 3, 1, 0))]
    if kind == "dense":
        return [np.transpose(tensors["weight"])]
    return [tensors[f] for f in _BN_FIELDS]


def _assign(entries, state, prefix, where):
    """Checks `state` against `entries` `(torch_prefix, layer, kind)` (the
    first missing, unexpected or misshapen key is the error) and sets the
    layers' weights."""
    expected = {}
    for torch_prefix, layer, kind in entries:
        if kind == "dense":
            units_in, units_out = layer.kernel.shape
            shapes = {"weight": (units_out, units_in)}
        else:
            shapes = _expected_shapes(kind, layer)
        for field, shape in shapes.items():
            expected[f"{torch_prefix}.{field}"] = shape
    optional = {f"{p}.num_batches_tracked" for p, _, kind in entries if kind == "bn"}
    for key in state:
        if key not in expected and key not in optional:
            raise ConversionError(f"unknown checkpoint layout: unexpected key '{prefix}{key}' "
                                  f"in {where}")
    for key, shape in expected.items():
        if key not in state:
            raise ConversionError(f"unknown checkpoint layout: missing key '{prefix}{key}' "
                                  f"in {where}")
        if tuple(state[key].shape) != tuple(shape):
            raise ConversionError(
                f"unknown checkpoint layout: '{prefix}{key}' has shape "
                f"{tuple(state[key].shape)}, expected {tuple(shape)}"
            )
    for torch_prefix, layer, kind in entries:
        fields = ("weight",) if kind in ("conv", "dense") else _BN_FIELDS
        tensors = {f: state[f"{torch_prefix}.{f}"] for f in fields}
        layer.set_weights(_keras_weights(kind, tensors))


def build_backbone(state, image_shape=(None, None, 3), prefix="", where="the checkpoint"):
    """A `ResNetBackbone` holding the weights of a torchvision-named state dict."""
    from mvmr_keras.models import ResNetBackbone

    arch = infer_backbone(state, prefix)
    backbone = ResNetBackbone(
        block_type=arch["block_type"],
        stackwise_num_blocks=arch["stackwise_num_blocks"],
        width=arch["width"],
        small_kernel_stem=arch["small_kernel_stem"],
        zero_init_residual=True,  # the official code's; only matters for training from scratch
        image_shape=image_shape,
        name=arch["name"],
    )
    entries = [(t, backbone.get_layer(k), kind) for t, k, kind in backbone_key_map(backbone)]
    _assign(entries, state, prefix, where)
    return backbone, arch


def build_projector(state, input_dim, prefix="", where="the checkpoint"):
    """A `Projector` (PyTorch's BatchNorm settings) holding the weights of
    `nn.Sequential(Linear, BatchNorm1d, ReLU, ..., Linear)`'s state dict."""
    from mvmr_keras.models import Projector

    sizes = infer_projector_sizes(state, prefix)
    projector = Projector(sizes, batchnorm_epsilon=TORCH_BATCHNORM_EPSILON,
                          batchnorm_momentum=TORCH_BATCHNORM_MOMENTUM, name="projector")
    projector.build((None, input_dim))
    entries = []
    for i, (dense, bn) in enumerate(projector.hidden):
        entries += [(f"{3 * i}", dense, "dense"), (f"{3 * i + 1}", bn, "bn")]
    entries.append((f"{3 * len(projector.hidden)}", projector.output_dense, "dense"))
    _assign(entries, state, prefix, where)
    return projector


def build_linear_head(state, feature_dim, prefix="", where="the checkpoint"):
    """`nn.Linear(D, C)`'s state dict as this project's `linear_head`."""
    from mvmr_keras.evaluation.linear import linear_head

    weight = state.get("weight")
    if weight is None or weight.ndim != 2:
        raise ConversionError(f"unknown checkpoint layout: missing key '{prefix}weight' in {where}")
    head = linear_head(feature_dim, int(weight.shape[0]))
    dense = head.get_layer("logits")
    expected = {"weight": (weight.shape[0], feature_dim), "bias": (weight.shape[0],)}
    for key in state:
        if key not in expected:
            raise ConversionError(f"unknown checkpoint layout: unexpected key '{prefix}{key}'")
    for key, shape in expected.items():
        if key not in state:
            raise ConversionError(f"unknown checkpoint layout: missing key '{prefix}{key}'")
        if tuple(state[key].shape) != shape:
            raise ConversionError(
                f"unknown checkpoint layout: '{prefix}{key}' has shape "
                f"{tuple(state[key].shape)}, expected {shape}"
            )
    dense.set_weights([state["weight"].T, state["bias"]])
    return head


# --------------------------------------------------------------------------
# The whole conversion.


def default_config():
    from mvmr_keras.configs import stl10

    return stl10.get_config()


def convert_checkpoint(checkpoint_path, output_dir, config=None, log=print):
    """Converts `checkpoint_path` into `output_dir` (module docstring); the
    config (default `configs/stl10.py`) gives the normalisation, the image
    size and `model.keras`'s loss settings. Returns the summary also
    written to `conversion.json`."""
    import keras

    from mvmr_keras import representations as representations_lib
    from mvmr_keras.models import MVMR, ImageEncoder
    from mvmr_keras.models.encoder import NORMALIZATION_STATS

    config = default_config() if config is None else config
    if config.normalization not in NORMALIZATION_STATS:
        raise ConversionError(f"unknown normalization {config.normalization!r}; available: "
                              f"{sorted(NORMALIZATION_STATS)}")
    parts = split_checkpoint(load_torch_checkpoint(checkpoint_path))
    prefixes = parts["prefixes"]
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # the weights are float32
    try:
        image_shape = (config.image_size, config.image_size, 3)
        backbone, arch = build_backbone(parts["backbone"], image_shape, prefixes["backbone"],
                                        "the backbone")
        encoder = ImageEncoder(backbone, normalization=config.normalization, name="encoder")
        os.makedirs(output_dir, exist_ok=True)
        written = ["encoder.keras"]
        encoder.save(os.path.join(output_dir, "encoder.keras"))
        projector_sizes = None
        if parts["projector"] is not None:
            projector = build_projector(parts["projector"], backbone.output_dim,
                                        prefixes["projector"], "the projector")
            projector_sizes = "-".join(str(s) for s in projector.sizes)
            parsed = representations_lib.parse(config.representations)
            model = MVMR(
                encoder,
                projector=projector,
                representations=[layer for layer, _ in parsed],
                representation_weights=[weight for _, weight in parsed],
                representation_objective=config.representation_objective,
                variance_margin=config.variance_margin,
            )
            model.build((None, *image_shape))
            model.save(os.path.join(output_dir, "model.keras"))
            written.append("model.keras")
        num_classes = None
        if parts["head"] is not None:
            head = build_linear_head(parts["head"], backbone.output_dim, prefixes["head"],
                                     "the linear head")
            num_classes = int(head.output.shape[-1])
            head.save(os.path.join(output_dir, "linear_head.keras"))
            written.append("linear_head.keras")
    finally:
        keras.config.set_dtype_policy(previous_policy)
    summary = {
        "checkpoint": os.path.abspath(checkpoint_path),
        "format": parts["format"],
        "architecture": {
            "backbone": arch["name"],
            "block_type": arch["block_type"],
            "stackwise_num_blocks": list(arch["stackwise_num_blocks"]),
            "width": arch["width"],
            "small_kernel_stem": arch["small_kernel_stem"],
            "feature_dim": int(backbone.output_dim),
            "projector": projector_sizes,
            "num_classes": num_classes,
        },
        "normalization": config.normalization,
        "image_size": config.image_size,
        "written": written,
    }
    with open(os.path.join(output_dir, "conversion.json"), "w") as f:
        json.dump(summary, f, indent=2)
    stem = "small-kernel (3x3, stride 1)" if arch["small_kernel_stem"] else "standard (7x7, stride 2)"
    log(f"{arch['name']} (width {arch['width']}, {stem} stem), projector "
        f"{projector_sizes or 'none'}, head {num_classes or 'none'} classes; "
        f"{config.normalization} normalisation. Wrote {', '.join(written)} to {output_dir}.")
    return summary


def main(argv):
    from mvmr_keras import cli

    config = cli.config_value(_CONFIG, argv)
    try:
        convert_checkpoint(_CHECKPOINT.value, _OUTPUT.value, config)
    except ConversionError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import app, flags

    from mvmr_keras import cli

    _CONFIG = cli.define_config_flag("configs/stl10.py")
    _CHECKPOINT = flags.DEFINE_string("checkpoint", None, "The PyTorch checkpoint (.ckpt or .pth).",
                                      required=True)
    _OUTPUT = flags.DEFINE_string("output", None, "Folder for the converted files.", required=True)
    app.run(main, flags_parser=cli.parse_flags)
