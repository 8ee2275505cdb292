"""The PyTorch -> Keras checkpoint converter against a PyTorch reference.

The reference is torchvision's ResNet layout (module and parameter names)
written here in plain PyTorch (torchvision is not a dependency), with the
official code's projector `Linear, BatchNorm1d, ReLU, ..., Linear` and
online fine-tuner `Linear`, random weights and BatchNorm statistics.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch
from torch import nn

from conftest import REPO_ROOT, to_numpy
from mvmr_keras import convert
from mvmr_keras.models.encoder import NORMALIZATION_STATS


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class TorchResNet(nn.Module):
    """torchvision.models.ResNet's names; `fc` is the official code's Identity."""

    def __init__(self, block, layers, small_kernel=False, width=64):
        super().__init__()
        self.inplanes = width
        if small_kernel:
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResnetMultiProj(nn.Module):
    """The official encoder: `backbone` and `projector` attributes."""

    def __init__(self, backbone, num_features, sizes):
        super().__init__()
        self.backbone = backbone
        sizes = [num_features, *sizes]
        layers = []
        for i in range(len(sizes) - 2):
            layers += [nn.Linear(sizes[i], sizes[i + 1], bias=False),
                       nn.BatchNorm1d(sizes[i + 1]), nn.ReLU()]
        layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
        self.projector = nn.Sequential(*layers)


def randomize(module, seed):
    """Random weights and BatchNorm statistics, scaled so that a deep
    network's activations neither vanish nor explode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0, (2.0 / fan_in) ** 0.5, generator=generator)
                if m.bias is not None:
                    m.bias.normal_(0, 0.1, generator=generator)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                m.num_batches_tracked.fill_(1234)
    return module


def official_model(arch, small_kernel, projector=(256, 256, 128), num_classes=10, seed=0):
    block, layers, features = {
        "resnet18": (BasicBlock, (2, 2, 2, 2), 512),
        "resnet50": (Bottleneck, (3, 4, 6, 3), 2048),
    }[arch]
    encoder = ResnetMultiProj(TorchResNet(block, layers, small_kernel), features, projector)
    head = nn.Linear(features, num_classes)
    return randomize(encoder, seed).eval(), randomize(head, seed + 1).eval()


def save_lightning(path, encoder, head):
    """The layout of a Lightning .ckpt of the official SelfSupervisedModule."""
    state = {f"_encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"online_finetuner.{k}": v for k, v in head.state_dict().items()})
    state["_hog.weight"] = torch.zeros(2, 1, 3, 3)  # a fixed extractor's buffer
    torch.save({"epoch": 999, "global_step": 1, "pytorch-lightning_version": "1.5.10",
                "state_dict": state, "optimizer_states": [], "lr_schedulers": [],
                "hyper_parameters": {"batch_size": 256, "lr": 1e-4}}, path)


def save_self_weights(path, encoder, head):
    """The layout of the official scripts/save_self_weights.py."""
    torch.save({"encoder": encoder.state_dict(), "online_finetuner": head.state_dict()}, path)


def torch_outputs(encoder, head, images, normalization="imagenet"):
    mean, std = (np.asarray(s, "float32") for s in NORMALIZATION_STATS[normalization])
    x = torch.from_numpy(((images / 255.0 - mean) / std).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        features = encoder.backbone(x)
        return (features.numpy(), encoder.projector(features).numpy(),
                head(features).numpy())


def assert_close(actual, expected, rtol=1e-4):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    error = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert error < rtol, f"relative error {error:.2e}"


def tiny_config(image_size):
    from mvmr_keras.configs import stl10

    config = stl10.get_config()
    config.image_size = image_size
    config.representations = "pixels"
    return config


def check_converted(output_dir, encoder, head, image_size, normalization="imagenet"):
    images = np.random.default_rng(0).uniform(0, 255, (2, image_size, image_size, 3)) \
        .astype("float32")
    features, z, logits = torch_outputs(encoder, head, images, normalization)
    assert np.std(features) > 1e-3 and np.std(z) > 1e-3  # nothing degenerate to compare
    keras_encoder = keras.saving.load_model(os.path.join(output_dir, "encoder.keras"))
    model = keras.saving.load_model(os.path.join(output_dir, "model.keras"))
    keras_head = keras.saving.load_model(os.path.join(output_dir, "linear_head.keras"))
    keras_features = to_numpy(keras_encoder(images, training=False))
    assert_close(keras_features, features)
    assert_close(to_numpy(model(images, training=False)), z)
    assert_close(to_numpy(keras_head(keras_features)), logits)


@pytest.fixture(scope="module")
def resnet50():
    return official_model("resnet50", small_kernel=False)


@pytest.mark.parametrize("layout", ["lightning", "save_self_weights"])
def test_resnet50_matches_pytorch(resnet50, layout, tmp_path):
    encoder, head = resnet50
    path = str(tmp_path / "checkpoint")
    (save_lightning if layout == "lightning" else save_self_weights)(path, encoder, head)
    summary = convert.convert_checkpoint(path, str(tmp_path / "out"), tiny_config(32),
                                         log=lambda _: None)
    assert summary["architecture"]["backbone"] == "resnet50"
    assert summary["architecture"]["small_kernel_stem"] is False
    assert summary["architecture"]["projector"] == "256-256-128"
    assert summary["written"] == ["encoder.keras", "model.keras", "linear_head.keras"]
    check_converted(str(tmp_path / "out"), encoder, head, 32)


def test_resnet18_small_kernel_stem_and_cifar_statistics(tmp_path):
    encoder, head = official_model("resnet18", small_kernel=True, projector=(64, 32),
                                   num_classes=20)
    save_self_weights(tmp_path / "c.pth", encoder, head)
    config = tiny_config(32)
    config.normalization = "cifar"
    summary = convert.convert_checkpoint(str(tmp_path / "c.pth"), str(tmp_path / "out"),
                                         config, log=lambda _: None)
    assert summary["architecture"]["backbone"] == "resnet18"
    assert summary["architecture"]["small_kernel_stem"] is True
    assert summary["architecture"]["num_classes"] == 20
    check_converted(str(tmp_path / "out"), encoder, head, 32, "cifar")


def test_projector_uses_pytorch_batchnorm_settings(resnet50, tmp_path):
    encoder, head = resnet50
    save_self_weights(tmp_path / "c.pth", encoder, head)
    convert.convert_checkpoint(str(tmp_path / "c.pth"), str(tmp_path / "out"), tiny_config(32),
                               log=lambda _: None)
    model = keras.saving.load_model(str(tmp_path / "out" / "model.keras"))
    bn = model.projector.hidden[0][1]
    assert (bn.epsilon, bn.momentum) == (1e-5, 0.9)
    stem_bn = model.encoder.backbone.get_layer("stem_bn")
    assert (stem_bn.epsilon, stem_bn.momentum) == (1e-5, 0.9)


def test_semi_supervised_weights_give_encoder_and_classifier(tmp_path):
    encoder, head = official_model("resnet18", small_kernel=False, num_classes=5)
    torch.save({"encoder": encoder.backbone.state_dict(), "classifier": head.state_dict()},
               tmp_path / "semi.pth")
    state = {f"encoder.{k}": v for k, v in encoder.backbone.state_dict().items()}
    state.update({f"classifier.{k}": v for k, v in head.state_dict().items()})
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "semi.ckpt")  # its Lightning file
    for name in ("semi.pth", "semi.ckpt"):
        summary = convert.convert_checkpoint(str(tmp_path / name), str(tmp_path / "out"),
                                             tiny_config(32), log=lambda _: None)
        assert summary["written"] == ["encoder.keras", "linear_head.keras"]
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    features, _, logits = torch_outputs(encoder, head, images)
    keras_encoder = keras.saving.load_model(str(tmp_path / "out" / "encoder.keras"))
    keras_head = keras.saving.load_model(str(tmp_path / "out" / "linear_head.keras"))
    assert_close(to_numpy(keras_encoder(images)), features)
    assert_close(to_numpy(keras_head(to_numpy(keras_encoder(images)))), logits)


# Bad checkpoints: one line each, naming the problem.


@pytest.fixture(scope="module")
def resnet18_state():
    encoder, head = official_model("resnet18", small_kernel=True, projector=(32, 16))
    return encoder.state_dict(), head.state_dict()


def conversion_error(path, tmp_path):
    with pytest.raises(convert.ConversionError) as info:
        convert.convert_checkpoint(str(path), str(tmp_path / "out"), tiny_config(32),
                                   log=lambda _: None)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_truncated_file(resnet18_state, tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"encoder": resnet18_state[0]}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in conversion_error(path, tmp_path)


def test_pickle_that_needs_code_is_refused(resnet18_state, tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"encoder": resnet18_state[0], "trainer": CustomObject()}, path)
    message = conversion_error(path, tmp_path)
    assert "needs code to unpickle" in message and "CustomObject" in message


class CustomObject:
    """Unpickling this requires importing (running) this module's code."""


def test_state_dict_of_another_architecture(tmp_path):
    vgg = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    torch.save({"encoder": {f"features.{k}": v for k, v in vgg.state_dict().items()}},
               tmp_path / "vgg.pth")
    message = conversion_error(tmp_path / "vgg.pth", tmp_path)
    assert "unexpected key 'features.0.weight'" in message


def test_missing_key_is_named(resnet18_state, tmp_path):
    state = dict(resnet18_state[0])
    del state["backbone.layer3.1.bn2.running_var"]
    torch.save({"encoder": state}, tmp_path / "c.pth")
    assert "missing key 'backbone.layer3.1.bn2.running_var'" in conversion_error(
        tmp_path / "c.pth", tmp_path)


def test_unexpected_key_is_named(resnet18_state, tmp_path):
    state = dict(resnet18_state[0])
    state["backbone.fc.weight"] = torch.zeros(10, 512)  # a classifier the official code drops
    torch.save({"encoder": state}, tmp_path / "c.pth")
    assert "unexpected key 'backbone.fc.weight'" in conversion_error(tmp_path / "c.pth", tmp_path)


def test_wrong_shape_is_named(resnet18_state, tmp_path):
    state = dict(resnet18_state[0])
    state["projector.0.weight"] = torch.zeros(32, 256)  # expects 512 inputs
    torch.save({"encoder": state}, tmp_path / "c.pth")
    message = conversion_error(tmp_path / "c.pth", tmp_path)
    assert "'projector.0.weight' has shape (32, 256), expected (32, 512)" in message


def test_without_torch_names_the_requirements_file(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    assert "requirements-backends.txt" in conversion_error(tmp_path / "any.pth", tmp_path)


def test_command_line(resnet18_state, tmp_path):
    torch.save({"encoder": resnet18_state[0], "online_finetuner": resnet18_state[1]},
               tmp_path / "c.pth")
    args = [sys.executable, "-m", "mvmr_keras.convert", f"--checkpoint={tmp_path / 'c.pth'}",
            f"--output={tmp_path / 'out'}", "--config=configs/digits.py",
            "--config.representations=pixels"]
    done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resnet18" in done.stdout and "small-kernel" in done.stdout
    assert sorted(os.listdir(tmp_path / "out")) == [
        "conversion.json", "encoder.keras", "linear_head.keras", "model.keras"]
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    args[3] = f"--checkpoint={tmp_path / 'bad.pth'}"
    done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert len([line for line in done.stderr.splitlines() if line.startswith("error")]) == 1
