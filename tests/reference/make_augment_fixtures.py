#!/usr/bin/python3
"""Writes tests/fixtures/augment.safetensors: torchvision's augmentations applied with fixed
parameters to small random images, for tests/test_augment.c.

  /usr/bin/python3 tests/reference/make_augment_fixtures.py [--out tests/fixtures]

Uses Debian's python3-torchvision (0.14) tensor functions, i.e. what torchvision.transforms does
on float tensors in [0, 1]. One deliberate difference: grayscale weights. torchvision's tensor
rgb_to_grayscale uses 0.2989 for red where PIL (what ImageFolder pipelines use) and the BYOL
definition use 0.299; byol.c follows PIL, so the reference is computed with 0.299 by swapping
torchvision's rgb_to_grayscale for the same function with that one weight changed (contrast,
saturation and grayscale all go through it).

Keys: <case>.in (input, CHW float32 or HWC uint8-as-float for crops) and <case>.out, plus the
case's parameters in __metadata__ as "<case>.<name>"."""
import argparse
import os

import numpy as np
import torch
import torchvision.transforms.functional as F
import torchvision.transforms.functional_tensor as FT
from torchvision.transforms import InterpolationMode

import byol_ref as R


def gray_pil_weights(img, num_output_channels=1):
    if img.shape[-3] == 3:
        r, g, b = img.unbind(dim=-3)
        l_img = (0.299 * r + 0.587 * g + 0.114 * b).to(img.dtype).unsqueeze(dim=-3)
    else:
        l_img = img.clone()
    return l_img.expand(img.shape) if num_output_channels == 3 else l_img


FT.rgb_to_grayscale = gray_pil_weights


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures"))
    args = ap.parse_args()
    g = torch.Generator().manual_seed(7)
    T, meta = {}, {}

    def put(name, inp, out, **params):
        T[f"{name}.in"] = inp.detach().numpy().astype(np.float32)
        T[f"{name}.out"] = out.detach().numpy().astype(np.float32)
        for k, v in params.items():
            meta[f"{name}.{k}"] = repr(v)

    # Crop + antialiased resize from uint8 HWC pixels (stored as float for the file).
    rgb8 = torch.randint(0, 256, (37, 45, 3), generator=g, dtype=torch.uint8)
    gray8 = torch.randint(0, 256, (29, 23, 1), generator=g, dtype=torch.uint8)
    crops = [  # name, image, top, left, h, w, size, interpolation
        ("crop_down_bilinear", rgb8, 3, 5, 30, 36, 16, "bilinear"),
        ("crop_up_bilinear", rgb8, 10, 2, 9, 12, 24, "bilinear"),
        ("crop_mixed_bicubic", rgb8, 0, 0, 37, 11, 20, "bicubic"),
        ("crop_down_bicubic", rgb8, 1, 4, 33, 40, 13, "bicubic"),
        ("crop_gray_bilinear", gray8, 2, 1, 25, 20, 12, "bilinear"),
        ("crop_whole_identity", rgb8, 0, 0, 37, 37, 37, "bilinear"),
    ]
    for name, im, top, left, h, w, size, interp in crops:
        chw = im.permute(2, 0, 1).float() / 255.0
        mode = InterpolationMode.BILINEAR if interp == "bilinear" else InterpolationMode.BICUBIC
        out = F.resized_crop(chw, top, left, h, w, [size, size], mode, antialias=True)
        put(name, im.float(), out, top=top, left=left, h=h, w=w, size=size, interp=interp)

    # Colour transforms on CHW float images in [0, 1] (with some exact 0s and 1s).
    rgb = torch.rand(3, 11, 13, generator=g)
    rgb[0, 0, :4] = 0.0
    rgb[1, 1, :3] = 1.0
    rgb[:, 2, 2] = 0.5  # gray pixel: hue undefined
    gray = torch.rand(1, 9, 10, generator=g)
    for f in (0.6, 1.37):
        put(f"brightness_{f}", rgb, FT.adjust_brightness(rgb, f), factor=f)
        put(f"contrast_{f}", rgb, FT.adjust_contrast(rgb, f), factor=f)
        put(f"saturation_{f}", rgb, FT.adjust_saturation(rgb, f), factor=f)
        put(f"gray_brightness_{f}", gray, FT.adjust_brightness(gray, f), factor=f)
        put(f"gray_contrast_{f}", gray, FT.adjust_contrast(gray, f), factor=f)
    for h in (-0.1, 0.043, 0.5, -0.5):
        put(f"hue_{h}", rgb, FT.adjust_hue(rgb, h), factor=h)
    put("grayscale", rgb, FT.rgb_to_grayscale(rgb, 3))
    put("hflip", rgb, FT.hflip(rgb))
    for k, s in ((3, 0.7), (5, 1.9), (7, 0.1)):
        put(f"blur_{k}_{s}", rgb, FT.gaussian_blur(rgb, [k, k], [s, s]), kernel=k, sigma=s)
    big = torch.rand(3, 30, 34, generator=g)  # the default kernel at 224 px is 23
    put("blur_23_1.3", big, FT.gaussian_blur(big, [23, 23], [1.3, 1.3]), kernel=23, sigma=1.3)
    put("solarize", rgb, FT.solarize(rgb, 0.5), threshold=0.5)
    mean, std = [0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]
    put("normalize", rgb, F.normalize(rgb, mean, std), mean=mean, std=std)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "augment.safetensors")
    R.save_safetensors(path, T, meta)
    print(f"{path}: {len(T)} tensors")


if __name__ == "__main__":
    main()
