"""The GPU, as the benchmarks see it through PyTorch: PyTorch is on every
machine they run on (the GPU machines have no TensorFlow), and Keras's
torch backend puts its tensors where `torch_device()` says."""


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_device():
    """"cuda" when PyTorch sees a GPU, else "cpu"."""
    torch = _torch()
    return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def synchronize_torch():
    """Waits for queued CUDA kernels: they run asynchronously, so without
    this a timer measures only their launches."""
    if torch_device() == "cuda":
        _torch().cuda.synchronize()


def gpu_name():
    """The GPU's name, or "" without one."""
    return _torch().cuda.get_device_name(0) if torch_device() == "cuda" else ""
