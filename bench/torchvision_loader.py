#!/usr/bin/python3
"""The baseline for bench/bench_loader: torchvision + PIL making BYOL's two views of the same
image folder, the way solo-learn and lightly do it (ImageFolder -> PIL decode -> RandomResizedCrop
-> flip -> ColorJitter -> grayscale -> GaussianBlur -> solarize -> ToTensor -> Normalize, once per
view), in one process with one torch thread: images per second per core.

  /usr/bin/python3 bench/torchvision_loader.py --data DIR --image-size 224 [--seconds 10]
"""
import argparse
import json
import time

import random

import torch
import torchvision.transforms as T
from PIL import ImageFilter
from torchvision.datasets import ImageFolder


class PILBlur:
    """solo-learn's blur: PIL's GaussianBlur with radius sigma ~ U[0.1, 2] (much faster than
    torchvision's GaussianBlur on a PIL image, which converts to a tensor and convolves with the
    full 2-D kernel)."""

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))


def view(size, blur_p, solarize_p, pil_blur=False):
    ops = [T.RandomResizedCrop(size, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
           T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
    if size > 64:
        k = int(0.1 * size) // 2 * 2 + 1
        blur = PILBlur() if pil_blur else T.GaussianBlur(k, (0.1, 2.0))
        ops.append(T.RandomApply([blur], p=blur_p))
    ops += [T.RandomSolarize(128, p=solarize_p), T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    return T.Compose(ops)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--pil-blur", action="store_true", help="blur with PIL's filter (solo-learn) instead of torchvision's")
    args = ap.parse_args()
    torch.set_num_threads(1)
    v1 = view(args.image_size, 1.0, 0.0, args.pil_blur)
    v2 = view(args.image_size, 0.1, 0.2, args.pil_blur)
    ds = ImageFolder(args.data, transform=lambda im: (v1(im), v2(im)))
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(ds), generator=g).tolist()
    ds[order[0]]  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        ds[order[(n + 1) % len(order)]]
        n += 1
    dt = time.perf_counter() - t0
    rate = n / dt
    name = "torchvision+PIL" + (" (PIL blur)" if args.pil_blur else "")
    print(f"{name}: {rate:.1f} images/s in 1 process = {rate:.1f} images/s per core "
          f"({args.image_size}x{args.image_size} views, 2 per image, {dt:.1f} s)")
    print(json.dumps({"impl": "torchvision" + ("-pil-blur" if args.pil_blur else ""), "images_per_s": round(rate, 2), "workers": 1,
                      "per_worker": round(rate, 2), "image_size": args.image_size}))


if __name__ == "__main__":
    main()
