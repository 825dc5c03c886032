"""MobileNetV2 (Sandler et al. 2018) with torchvision's module layout, so torchvision's ImageNet weights load strictly.

torchvision itself cannot be imported with the CPU torch build used here (its compiled ops link CUDA libraries), so
this is a minimal re-implementation: same module tree and parameter names (``features.0.0.weight``,
``features.1.conv.0.0.weight``, ..., ``classifier.1.weight``) and the same forward pass as
``torchvision.models.mobilenet_v2`` (width 1.0). Activations use ReLU6 out of place so forward hooks see each block's
own output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (expansion t, output channels c, repeats n, first stride s), torchvision's inverted_residual_setting.
_INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                              (6, 160, 3, 2), (6, 320, 1, 1))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The 19 blocks of ``features``: stem conv, 17 inverted residual blocks, final 1x1 conv to 1280 channels.
MOBILENET_V2_LAYERS = tuple(f"features.{i}" for i in range(19))


def mobilenet_v2(num_classes: int = 1000):
    """An untrained torchvision-compatible MobileNetV2 (width 1.0); load weights with ``load_state_dict``."""
    import torch
    from torch import nn

    def conv_bn_relu(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=False),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, out: int, stride: int, expand_ratio: int):
            super().__init__()
            hidden = int(round(inp * expand_ratio))
            self.use_res_connect = stride == 1 and inp == out
            layers: list[nn.Module] = []
            if expand_ratio != 1:
                layers.append(conv_bn_relu(inp, hidden, kernel=1))
            layers += [
                conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
                nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            channels = 32
            features: list[nn.Module] = [conv_bn_relu(3, channels, stride=2)]
            for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
                for i in range(n):
                    features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                    channels = c
            features.append(conv_bn_relu(channels, 1280, kernel=1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.features(x)
            x = nn.functional.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
            return self.classifier(x)

    return MobileNetV2()


def imagenet_preprocess(images: Sequence, resize: int = 256, crop: int = 224):
    """torchvision's ImageNet evaluation transform: resize the short side, center crop, scale to [0, 1], normalise.

    Args:
      images: PIL images (any mode; converted to RGB).
      resize: short side after resizing (bilinear, antialiased), torchvision ``Resize(256)``.
      crop: side of the central square crop, torchvision ``CenterCrop(224)``.

    Returns:
      float32 tensor [b, 3, crop, crop], normalised with the ImageNet mean and std.
    """
    import torch
    from PIL import Image

    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
    batch = []
    for img in images:
        img = img.convert("RGB")
        w, h = img.size
        if w <= h:
            size = (resize, int(resize * h / w))
        else:
            size = (int(resize * w / h), resize)
        img = img.resize(size, Image.Resampling.BILINEAR)
        w, h = img.size
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
        img = img.crop((left, top, left + crop, top + crop))
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        batch.append((x - mean) / std)
    return torch.from_numpy(np.stack(batch).astype(np.float32))


def build_mobilenet_v2(weights_path: str):
    """The extraction builder for a torchvision MobileNetV2 state dict.

    Args:
      weights_path: a ``.pth`` file holding torchvision's ``mobilenet_v2`` state dict (loaded strictly).

    Returns:
      (module in eval mode, ``imagenet_preprocess``, the 19 ``features.i`` block names).
    """
    import torch

    model = mobilenet_v2()
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, imagenet_preprocess, list(MOBILENET_V2_LAYERS)
