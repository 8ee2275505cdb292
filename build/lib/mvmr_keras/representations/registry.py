"""Name -> representation layer registry, and the config spec parser.

A representation is a `keras.layers.Layer` that maps the normalised original
view `(B, H, W, C)` to a fixed feature tensor `(B, ...)`. MV-MR's third loss
term ties the augmented embedding to each of them.

In a config, `representations` is either a comma-separated string of names
(`"pixels,hog"`) or a list whose items are names or dicts
`{"name": "hog", "weight": 0.5, "nbins": 12}` (every key but `name`,
`weight` and `layer_name` goes to the layer's constructor). `layer_name`
names the layer, and so its logged term `dcor_<layer_name>`; it defaults to
`name`, and tells apart two entries of the same representation:
`[{"name": "hog"}, {"name": "hog", "nbins": 12, "layer_name": "hog12"}]`.
"""

_REGISTRY = {}


def register(name):
    """Class decorator that makes a layer available under `name`."""

    def decorator(cls):
        if name in _REGISTRY:
            raise ValueError(f"Representation {name!r} is registered twice.")
        _REGISTRY[name] = cls
        return cls

    return decorator


def available():
    return sorted(_REGISTRY)


def get(name, /, **kwargs):
    """Builds the representation layer registered as `name`.

    The layer is named `name` unless `kwargs` says otherwise (`name=...`
    there is the layer's name), so that its loss term is logged as
    `dcor_<name>`.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown representation {name!r}; available: {available()}."
        )
    kwargs.setdefault("name", name)
    return _REGISTRY[name](**kwargs)


def parse(spec):
    """Config spec -> list of `(layer, weight)`; see the module docstring."""
    if spec is None or spec == "":
        return []
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    parsed = []
    for item in spec:
        if isinstance(item, str):
            item = {"name": item}
        item = dict(item)
        if "name" not in item:
            raise ValueError(f"Representation entry {item} has no 'name'.")
        name = item.pop("name")
        weight = float(item.pop("weight", 1.0))
        if "layer_name" in item:
            item["name"] = item.pop("layer_name")
        parsed.append((get(name, **item), weight))
    names = [layer.name for layer, _ in parsed]
    if len(set(names)) != len(names):
        raise ValueError(
            f"Representation names must be unique (they name the logged "
            f"terms); got {names}. Give repeated ones distinct layer "
            "names, e.g. {'name': 'hog', 'nbins': 12, 'layer_name': 'hog12'}."
        )
    return parsed
