#!/usr/bin/python3
"""Converts a PyTorch ResNet state_dict (.pth, .pt, .ckpt) into a safetensors file that
`byol train --init` reads: float32 tensors with torchvision's names (conv1.weight, bn1.*,
layer1.0.*, ...).

  /usr/bin/python3 tools/pth2safetensors.py resnet18-f37072fd.pth resnet18.safetensors

- The checkpoint may hold the state_dict itself or under "state_dict" or "model" (Lightning,
  solo-learn, DINO); a prefix before torchvision's names ("module.", "backbone.", "encoder.",
  "online.encoder.", ...) is found from conv1.weight and removed, or given with --prefix.
- Only the encoder's tensors are kept: fc.*, heads and integer tensors (num_batches_tracked)
  are dropped. Nothing else of the file is read: torch.load runs with weights_only=True.
- PyTorch is needed here only (Debian's python3-torch); the file written is plain safetensors
  (an 8-byte header length, a JSON header, the data), written to a temporary name and renamed.
"""
import argparse
import json
import os
import struct
import sys

import torch


def find_state_dict(obj):
    if isinstance(obj, dict) and any(torch.is_tensor(v) for v in obj.values()):
        return obj
    for key in ("state_dict", "model", "teacher", "student"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return find_state_dict(obj[key])
    sys.exit("pth2safetensors: no state_dict of tensors in the file (looked under state_dict, model, teacher, student)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pth", help="PyTorch checkpoint or state_dict")
    ap.add_argument("out", help="safetensors file to write")
    ap.add_argument("--prefix", default=None, help="the prefix before torchvision's names (found from conv1.weight)")
    args = ap.parse_args()
    try:
        obj = torch.load(args.pth, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - one clear line for any unreadable file
        sys.exit(f"pth2safetensors: {args.pth}: cannot read as a PyTorch file: {e}")
    sd = find_state_dict(obj)
    prefix = args.prefix
    if prefix is None:
        found = sorted(k[: -len("conv1.weight")] for k in sd
                       if k.endswith("conv1.weight") and "layer" not in k)
        if not found:
            sys.exit(f"pth2safetensors: {args.pth}: no conv1.weight: not a ResNet's state_dict (give --prefix)")
        prefix = min(found, key=len)
    keep = {}
    for k, v in sd.items():
        if not k.startswith(prefix) or not torch.is_tensor(v) or not v.is_floating_point():
            continue
        name = k[len(prefix):]
        if name.startswith("fc.") or not (name.startswith(("conv1.", "bn1.", "layer"))):
            continue
        keep[name] = v.detach().to(torch.float32).contiguous().numpy()
    if "conv1.weight" not in keep:
        sys.exit(f"pth2safetensors: {args.pth}: no {prefix}conv1.weight")
    header, offset = {}, 0
    for name, a in keep.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in keep.values():
            f.write(a.tobytes())
    os.replace(tmp, args.out)
    c = keep["conv1.weight"].shape
    print(f"wrote {args.out}: {len(keep)} tensors (prefix '{prefix}' removed), conv1 {c[0]} x {c[1]} x {c[2]}x{c[3]}")


if __name__ == "__main__":
    main()
