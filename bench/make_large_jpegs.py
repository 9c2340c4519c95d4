#!/usr/bin/python3
"""Large JPEGs for the 224-px loader benchmark: CIFAR-10 images upscaled to ImageNet's typical
500x375 with detail added (noise and a second image blended in, so the files carry the entropy
of photographs rather than of smooth upscales), quality 92, 4:2:0, in DIR/<class>/.

  /usr/bin/python3 bench/make_large_jpegs.py CIFAR_FOLDER OUT_DIR [--n 300]
"""
import argparse
import os
import random

import numpy as np
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    rng = random.Random(0)
    nrng = np.random.default_rng(0)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(args.src) for f in fs if f.endswith(".jpg"))
    rng.shuffle(files)
    total = 0
    for i in range(args.n):
        a = Image.open(files[2 * i % len(files)]).convert("RGB").resize((500, 375), Image.BICUBIC)
        b = Image.open(files[(2 * i + 1) % len(files)]).convert("RGB").resize((125, 94), Image.BICUBIC)
        b = b.resize((500, 375), Image.NEAREST)
        x = 0.8 * np.asarray(a, np.float32) + 0.2 * np.asarray(b, np.float32)
        x += nrng.normal(0, 14, x.shape)
        cls = os.path.join(args.out, f"c{i % 10}")
        os.makedirs(cls, exist_ok=True)
        path = os.path.join(cls, f"{i:05d}.jpg")
        Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(path, quality=92)
        total += os.path.getsize(path)
    print(f"{args.n} JPEGs of 500x375 in {args.out}, {total / args.n / 1024:.0f} KiB on average")


if __name__ == "__main__":
    main()
