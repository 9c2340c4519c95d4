#!/usr/bin/env python3
"""PyTorch baseline for one BYOL step on a GPU, beside `byol bench --device cuda`.

usage: torch_byol_step_gpu.py [--arch resnet18] [--width 64] [--stem cifar] [--size 32]
                              [--batch 512] [--steps 20] [--precision bf16|fp32]

The model of ../shared/bench/torch_byol_step.py (torchvision's ResNet structure with a base
width; projector and predictor Linear-BN-ReLU-Linear, hidden 4096, out 256), in PyTorch eager
mode as users run it: channels_last, and with --precision bf16 autocast to bfloat16 (fp32 master
weights, no loss scaling); --precision fp32 turns TF32 off, as byol.c's fp32 does. Each view is
forwarded separately, the loss is symmetrized, the target forwards without grad, SGD with
momentum (LARS adds per-tensor scalars only) and a foreach EMA. Timed with CUDA
synchronization; prints the median ms/step and images/s (one image = one sample, two views) and
a JSON line. Needs PyTorch with CUDA (the GPU machine's python3)."""
import argparse, copy, json, statistics, time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Basic(nn.Module):
    expansion = 1

    def __init__(s, i, o, stride):
        super().__init__()
        s.conv1, s.bn1 = nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o)
        s.conv2, s.bn2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
        s.down = None
        if stride != 1 or i != o:
            s.down = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

    def forward(s, x):
        idt = x if s.down is None else s.down(x)
        return F.relu(s.bn2(s.conv2(F.relu(s.bn1(s.conv1(x))))) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(s, i, o, stride):
        super().__init__()
        s.conv1, s.bn1 = nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o)
        s.conv2, s.bn2 = nn.Conv2d(o, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o)
        s.conv3, s.bn3 = nn.Conv2d(o, o * 4, 1, bias=False), nn.BatchNorm2d(o * 4)
        s.down = None
        if stride != 1 or i != o * 4:
            s.down = nn.Sequential(nn.Conv2d(i, o * 4, 1, stride, bias=False), nn.BatchNorm2d(o * 4))

    def forward(s, x):
        idt = x if s.down is None else s.down(x)
        y = F.relu(s.bn1(s.conv1(x)))
        y = F.relu(s.bn2(s.conv2(y)))
        return F.relu(s.bn3(s.conv3(y)) + idt)


LAYOUT = {"resnet18": (Basic, [2, 2, 2, 2]), "resnet34": (Basic, [3, 4, 6, 3]), "resnet50": (Bottleneck, [3, 4, 6, 3])}


class ResNet(nn.Module):
    def __init__(s, arch, width, stem, in_ch):
        super().__init__()
        block, counts = LAYOUT[arch]
        s.stem = stem
        s.conv1 = nn.Conv2d(in_ch, width, 3, 1, 1, bias=False) if stem == "cifar" else nn.Conv2d(in_ch, width, 7, 2, 3, bias=False)
        s.bn1 = nn.BatchNorm2d(width)
        i, layers = width, []
        for li, n in enumerate(counts):
            o, blocks = width * 2 ** li, []
            for bi in range(n):
                blocks.append(block(i, o, 2 if bi == 0 and li > 0 else 1))
                i = o * block.expansion
            layers.append(nn.Sequential(*blocks))
        s.layers = nn.Sequential(*layers)
        s.dim = i

    def forward(s, x):
        x = F.relu(s.bn1(s.conv1(x)))
        if s.stem != "cifar":
            x = F.max_pool2d(x, 3, 2, 1)
        return s.layers(x).mean(dim=(2, 3))


def mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Linear(h, o))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18", choices=sorted(LAYOUT))
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--stem", default="cifar", choices=["cifar", "imagenet"])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    a = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    enc = ResNet(a.arch, a.width, a.stem, 3)
    online = nn.Sequential(enc, mlp(enc.dim, 4096, 256)).to(dev, memory_format=torch.channels_last)
    pred = mlp(256, 4096, 256).to(dev)
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD(list(online.parameters()) + list(pred.parameters()), lr=0.1, momentum=0.9,
                          weight_decay=1e-5, foreach=True)
    x1 = torch.randn(a.batch, 3, a.size, a.size, device=dev).to(memory_format=torch.channels_last)
    x2 = torch.randn(a.batch, 3, a.size, a.size, device=dev).to(memory_format=torch.channels_last)
    on_params, tg_params = list(online.parameters()), list(target.parameters())
    amp = a.precision == "bf16"

    def loss_fn(p, z):
        return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=-1)).mean()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            p1, p2 = pred(online(x1)), pred(online(x2))
            with torch.no_grad():
                z1, z2 = target(x1), target(x2)
            loss = loss_fn(p1, z2) + loss_fn(p2, z1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(tg_params, 0.99)
            torch._foreach_add_(tg_params, on_params, alpha=0.01)
        return loss

    for _ in range(3):  # warm-up: cuDNN's benchmark, allocator
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    name = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__} on {name}: {a.arch} width={a.width} stem={a.stem} batch={a.batch} "
          f"size={a.size} {a.precision} channels_last eager: {dt * 1000:.2f} ms/step, {a.batch / dt:.1f} images/s")
    print(json.dumps({"torch": torch.__version__, "gpu": name, "arch": a.arch, "width": a.width, "stem": a.stem,
                      "batch": a.batch, "size": a.size, "precision": a.precision, "ms_per_step": dt * 1000,
                      "images_per_s": a.batch / dt}))


if __name__ == "__main__":
    main()
