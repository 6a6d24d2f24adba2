"""The `resnet50_v1.5` backbone against torchvision itself: same stage-3 / stage-4 maps from the same file.

Two halves, two Python environments (torchvision brings PyTorch, ~6 GB; the package never needs it):

    # 1. torchvision (random init, no download), BN statistics randomised, last stride 1:
    #    writes resnet50_tv.pth, images and torchvision's layer3 / layer4 outputs.
    /work/venvs/torch/bin/python benchmarks/check_torchvision_backbone.py torch --out /tmp/tvcheck
    # 2. keras-mmga loads resnet50_tv.pth (torch-free reader) and compares.
    .venv/bin/python benchmarks/check_torchvision_backbone.py keras --out /tmp/tvcheck

Also writes the same weights as model.safetensors in a timm-style folder and checks that path too.
"""

import argparse
import os
import sys

import numpy as np

SIZE = (256, 128)  # H, W
BATCH = 4


def torch_side(out):
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.resnet50()  # random init: downloads nothing
    # Last stride 1, as MMGA (and BoT / fast-reid) change it.
    model.layer4[0].conv2.stride = (1, 1)
    model.layer4[0].downsample[0].stride = (1, 1)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():  # non-trivial BN statistics, so BN conversion is really tested
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    model.eval()
    os.makedirs(out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(out, "resnet50_tv.pth"))
    os.makedirs(os.path.join(out, "timm_folder"), exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        os.path.join(out, "timm_folder", "model.safetensors"),
    )
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (BATCH,) + SIZE + (3,)).astype(np.float32)  # RGB [0, 255]
    mean = np.array([0.485, 0.456, 0.406], np.float32) * 255
    std = np.array([0.229, 0.224, 0.225], np.float32) * 255
    x = torch.from_numpy(((pixels - mean) / std).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        y = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        y = model.layer2(model.layer1(y))
        l3 = model.layer3(y)
        l4 = model.layer4(l3)
    np.savez(
        os.path.join(out, "torch_outputs.npz"),
        pixels=pixels,
        layer3=l3.numpy().transpose(0, 2, 3, 1),
        layer4=l4.numpy().transpose(0, 2, 3, 1),
    )
    print(f"torch {torch.__version__} torchvision {torchvision.__version__}: wrote {out}")


def keras_side(out):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_mmga.models.mmga_backbone import MMGABackbone

    ref = np.load(os.path.join(out, "torch_outputs.npz"))
    worst = 0.0
    for weights in (os.path.join(out, "resnet50_tv.pth"), os.path.join(out, "timm_folder")):
        net = MMGABackbone(
            input_shape=SIZE + (3,), backbone="resnet50_v1.5", backbone_weights=weights, attention=False, parts=()
        )
        x = net.preprocess(ref["pixels"])
        l3 = net.stage3(net.stem(x))
        l4 = np.asarray(net.stage4(l3))
        l3 = np.asarray(l3)
        for name, got in (("layer3", l3), ("layer4", l4)):
            want = ref[name]
            rel = np.max(np.abs(got - want)) / np.max(np.abs(want))
            worst = max(worst, rel)
            print(
                f"{os.path.basename(weights):18s} {name}: shape {got.shape}, max |keras - torch| / max |torch| "
                f"= {rel:.2e}"
            )
        print(f"  preprocessing {net.preprocessing}, weights sha256 {net.backbone_weights_info['sha256'][:16]}...")
    print(f"worst relative difference {worst:.2e} ({'OK' if worst <= 1e-4 else 'FAIL'}, goal <= 1e-4)")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("side", choices=("torch", "keras"))
    parser.add_argument("--out", default="/tmp/tvcheck")
    args = parser.parse_args()
    sys.exit(torch_side(args.out) if args.side == "torch" else keras_side(args.out))
