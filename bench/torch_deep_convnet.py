"""The book's DeepConvNet in PyTorch: the peer the Keras model's training speed is measured against.

Same layers, padding, initialisation and dropout placement as `suite.models.deep_convnet` and the
book (ch08/deep_convnet.py), so a step of either costs the same arithmetic. For inference
(bench.inference_throughput) the Keras model's weights copy into it, and it runs as a classifier
in float32, bfloat16 or PyTorch's static int8. Measurement only: it is not part of the `suite`
package and `torch` is an optional extra (`pip install .[bench]`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

NUM_PARAMETERS = 123_552  # the book's count; any drift means the peers no longer match
# (out_channels, padding) in the book's order; a pool follows the 2nd, 4th and 6th conv.
CONV_LAYERS = ((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))
HIDDEN_UNITS = 50
NUM_CLASSES = 10
DROPOUT_RATE = 0.5


class DeepConvNet(nn.Module):
    """Input: raw pixels in [0, 255], (N, 1, 28, 28) float32. Output: logits (N, 10)."""

    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        in_channels = 1
        for index, (out_channels, padding) in enumerate(CONV_LAYERS):
            blocks += [nn.Conv2d(in_channels, out_channels, 3, padding=padding), nn.ReLU()]
            if index % 2 == 1:
                blocks.append(nn.MaxPool2d(2))
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        # 28 -> 14 (pool) -> 16 (pad 2) -> 8 (pool) -> 4 (pool): 64 * 4 * 4 = 1024 features,
        # flattened channel-major as the book does.
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, HIDDEN_UNITS),
            nn.ReLU(),
            nn.Dropout(DROPOUT_RATE),
            nn.Linear(HIDDEN_UNITS, NUM_CLASSES),
            nn.Dropout(DROPOUT_RATE),  # the book drops out the logits too
        )
        self._init_like_the_book()

    def _init_like_the_book(self) -> None:
        """N(0, 2 / fan_in) untruncated, zero biases: the book's `weight_init_std`."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_in))
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Scaling inside the model, as the Keras model's Rescaling layer does, keeps inputs identical.
        return self.classifier(self.features(images * (1.0 / 255.0)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(channels_last: bool = False) -> DeepConvNet:
    """Returns the network, checked to have the book's 123,552 parameters."""
    model = DeepConvNet()
    count = count_parameters(model)
    assert count == NUM_PARAMETERS, f"torch DeepConvNet has {count:,} parameters, the book {NUM_PARAMETERS:,}"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def make_train_step(model: nn.Module, learning_rate: float = 1e-3):
    """Returns step(images, labels) -> loss tensor: one Adam update, as Keras `fit` does per batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, eps=1e-7)  # Keras's and the book's eps
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def keras_weights_into_torch(model, net: torch.nn.Module) -> None:
    """The Keras DeepConvNet's weights in the PyTorch one (HWIO -> OIHW; the first dense layer's
    rows reordered from NHWC flattening to NCHW flattening), so both compute one function. The
    book's inference-time dropout (x0.5 after fc1's ReLU and after fc2) is folded into fc2:
    its kernel x0.25, its bias x0.5 (PyTorch's inverted dropout is the identity in eval())."""
    kernels = [layer for layer in model.layers if layer.weights]
    modules = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(kernels) == len(modules), (len(kernels), len(modules))
    first_dense = True
    with torch.no_grad():
        for layer, module in zip(kernels, modules):
            kernel, bias = (w.numpy() if hasattr(w, "numpy") else np.asarray(w)
                            for w in layer.weights[:2])
            kernel = np.asarray(kernel)
            if kernel.ndim == 4:
                kernel = kernel.transpose(3, 2, 0, 1)
            else:
                if first_dense:  # Keras flattens (4, 4, 64) channel-last, PyTorch (64, 4, 4)
                    kernel = kernel.reshape(4, 4, 64, -1).transpose(2, 0, 1, 3).reshape(1024, -1)
                    first_dense = False
                kernel = kernel.T
                if module is modules[-1]:
                    kernel, bias = kernel * 0.25, np.asarray(bias) * 0.5
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            module.bias.copy_(torch.from_numpy(np.asarray(bias)))


class TorchClassifier:
    """Softmax probabilities of raw NHWC pixels from `net`, as the suite's export serves them."""

    def __init__(self, net, channels_last=False, compiled=False, bfloat16=False, frozen=False):
        """`frozen`: torch.compile with Inductor's freezing (weights folded in as constants,
        inference only), run under no_grad as freezing requires."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=fmt).eval()
        self.forward = (torch.compile(self.net, options={"freezing": True}) if frozen else
                        torch.compile(self.net) if compiled else self.net)
        self.fmt, self.bfloat16 = fmt, bfloat16
        self.mode = torch.no_grad if frozen else torch.inference_mode

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images.transpose(0, 3, 1, 2)).contiguous(memory_format=self.fmt)
        with self.mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.bfloat16):
            return torch.softmax(self.forward(x).float(), dim=-1).numpy()


def torch_int8(net: torch.nn.Module, images: np.ndarray) -> torch.nn.Module:
    """PyTorch's static int8 model of `net` (FX graph mode, x86 backend: fbgemm and oneDNN
    kernels), calibrated on `images`. FX quantisation is deprecated for torchao's pt2e, which
    measured the same here (10.9 ms against 10.3 at batch 256) but is another dependency."""
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(net, get_default_qconfig_mapping("x86"), (x[:1],))
        with torch.inference_mode():
            prepared(x)
        return convert_fx(prepared)
