"""The PyTorch re-ID baseline that MMGA is measured against on the GPU.

This is the "bag of tricks" model (Luo et al., "Bag of Tricks and a Strong
Baseline for Deep Person Re-identification", CVPRW 2019) as torchreid and
fast-reid train it: ResNet50 with the last stride 1, BNNeck (the pooled
2048-d feature goes to the triplet loss; a BatchNorm1d without shift gives the
feature the bias-free classifier and inference use), cross-entropy with label
smoothing 0.1, batch-hard triplet with margin 0.3 on Euclidean distances, Adam
(lr 3.5e-4, weight decay 5e-4). The network takes RGB pixels in [0, 255] and
normalises them inside `forward`, like MMGA does in its graph, so both sides
get the same input tensor.

The ResNet50 comes from torchvision when it imports; otherwise from the
compact copy below (same module names and parameter count, so the CPU check
runs where torchvision does not import).
"""

import torch
import torch.nn.functional as F
from torch import nn

# torchvision's resnet50 without its 1000-way fc layer (25,557,032 - 2,049,000).
RESNET50_BACKBONE_PARAMS = 23_508_032

_RGB_MEAN = (123.675, 116.28, 103.53)
_RGB_STD = (58.395, 57.12, 57.375)


class _Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class _ResNet50(nn.Module):
    """ResNet50 with torchvision's module names and initialisation, no fc."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for index, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
            layer = []
            for block in range(blocks):
                layer.append(_Bottleneck(channels, width, stride if block == 0 else 1))
                channels = width * _Bottleneck.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def resnet50_last_stride1():
    """ResNet50 trunk (conv1 .. layer4, no pooling) with layer4's stride set to 1.

    Returns `(module, source)`, `source` being `"torchvision"` or `"own"`
    (with the reason torchvision was not used).
    """
    try:
        import torchvision

        net = torchvision.models.resnet50(weights=None)
        source = f"torchvision {torchvision.__version__}"
    except Exception as error:  # torchvision absent, or built for another torch (operator errors)
        net = _ResNet50()
        source = f"own ResNet50 (torchvision unusable: {type(error).__name__}: {str(error)[:120]})"
    # Last stride 1: layer4's first block down-samples in its 3x3 conv and its shortcut.
    net.layer4[0].conv2.stride = (1, 1)
    net.layer4[0].downsample[0].stride = (1, 1)
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    count = sum(p.numel() for p in trunk.parameters())
    if count != RESNET50_BACKBONE_PARAMS:
        raise RuntimeError(f"ResNet50 trunk has {count:,} parameters, expected {RESNET50_BACKBONE_PARAMS:,}")
    return trunk, source


class ReidBaseline(nn.Module):
    """ResNet50 (last stride 1) + BNNeck.

    `forward` in training mode returns `(pooled_feature, logits)`: the
    2048-d pre-BN feature for the triplet loss and the classifier's logits on
    the BN feature. In eval mode it returns the BN feature (fast-reid's
    "after" neck feature), the inference output.
    """

    def __init__(self, num_classes, feature_dim=2048):
        super().__init__()
        self.trunk, self.backbone_source = resnet50_last_stride1()
        self.register_buffer("mean", torch.tensor(_RGB_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_RGB_STD).view(1, 3, 1, 1))
        self.bottleneck = nn.BatchNorm1d(feature_dim)
        self.bottleneck.bias.requires_grad_(False)  # BNNeck: no shift before the classifier
        self.classifier = nn.Linear(feature_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, images):
        x = (images - self.mean) / self.std
        pooled = F.adaptive_avg_pool2d(self.trunk(x), 1).flatten(1)
        neck = self.bottleneck(pooled)
        if self.training:
            return pooled, self.classifier(neck)
        return neck


def batch_hard_triplet(features, labels, margin=0.3):
    """Batch-hard triplet loss on Euclidean distances (farthest positive, closest negative)."""
    f = features.float()
    squared = f.pow(2).sum(1)
    d2 = squared[:, None] + squared[None, :] - 2.0 * f @ f.t()
    dist = d2.clamp(min=1e-12).sqrt()  # clamp: finite gradient at zero distance
    same = labels[:, None] == labels[None, :]
    hardest_positive = dist.masked_fill(~same, 0.0).amax(1)
    hardest_negative = dist.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_positive - hardest_negative + margin).mean()


def make_optimizer(model, name="adam"):
    """Adam 3.5e-4 (bag of tricks) or SGD 0.05 / momentum 0.9; weight decay 5e-4; fused kernels on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = next(model.parameters()).device.type == "cuda"
    if name == "adam":
        return torch.optim.Adam(params, lr=3.5e-4, weight_decay=5e-4, fused=fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4, fused=fused)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def make_train_step(model, optimizer, amp_dtype=None, label_smoothing=0.1, margin=0.3):
    """A function `step(images, labels) -> loss` doing one full training step.

    `amp_dtype` (e.g. `torch.bfloat16`) runs the forward pass under
    `torch.autocast`; the losses are computed in float32. bfloat16 needs no
    gradient scaling.
    """
    device_type = next(model.parameters()).device.type

    def step(images, labels):
        with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            pooled, logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        loss = loss + batch_hard_triplet(pooled, labels, margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def make_infer_step(model, amp_dtype=None):
    """A function `infer(images) -> features` (eval mode, no autograd)."""
    device_type = next(model.parameters()).device.type

    @torch.inference_mode()
    def infer(images):
        with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            return model(images)

    return infer
