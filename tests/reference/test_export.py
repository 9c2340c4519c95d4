#!/usr/bin/python3
"""The exported encoder works in PyTorch: `byol export` loads into torchvision.models.resnet18()
(conv1 and max-pool swapped for the cifar stem) with load_state_dict(strict=False) missing only
fc.*, and gives the same features as `byol embed` within 1e-4 relative.

Run by tests/run.sh when /usr/bin/python3 has torch and torchvision (Debian's python3-torch,
python3-torchvision); otherwise counted as skipped. Prints a RESULT line like the C tests.

  /usr/bin/python3 tests/reference/test_export.py BYOL_BINARY"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byol_ref as R  # noqa: E402


def main():
    byol = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./byol")
    check = R.Checks()

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["tar", "xzf", "../shared/data/cifar10-jpeg.tar.gz", "-C", tmp, "--wildcards",
                        "cifar10-jpeg/t*/*/000[01].jpg"], check=True)
        data = os.path.join(tmp, "cifar10-jpeg")
        run = os.path.join(tmp, "run")
        # A full-width ResNet-18 (torchvision's shape), one training step so BN statistics move.
        subprocess.run([byol, "train", "--data", data, "--out", run, "--width", "64", "--batch", "8",
                        "--proj-hidden", "64", "--proj-dim", "32", "--pred-hidden", "64", "--max-steps", "1",
                        "--knn-before", "0", "--knn-after", "0", "--eval-every", "0"], check=True,
                       stdout=subprocess.DEVNULL)
        enc = os.path.join(tmp, "enc.safetensors")
        subprocess.run([byol, "export", "--ckpt", run, "--out", enc], check=True, stdout=subprocess.DEVNULL)
        feats = os.path.join(tmp, "f.npy")
        subprocess.run([byol, "embed", "--ckpt", run, "--data", data, "--split", "test", "--out", feats],
                       check=True, stdout=subprocess.DEVNULL)

        state, _ = R.load_safetensors(enc)
        ckpt = sorted(glob.glob(os.path.join(run, "ckpt-*.safetensors")))[-1]
        _, meta = R.load_safetensors(ckpt)
        mean = [float(x) for x in meta["byol.mean"].split()]
        std = [float(x) for x in meta["byol.std"].split()]

        m = torchvision.models.resnet18()
        m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = torch.nn.Identity()
        res = m.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
        check(sorted(res.missing_keys) == ["fc.bias", "fc.weight"] and not res.unexpected_keys,
              f"load_state_dict(strict=False): missing {res.missing_keys}, unexpected {res.unexpected_keys}")
        m.fc = torch.nn.Identity()
        m.eval()

        # The test split in byol's order (classes sorted, files sorted), preprocessed as byol does.
        files = sorted(glob.glob(os.path.join(data, "test", "*", "*.jpg")))
        x = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0 for f in files])
        x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
        with torch.no_grad():
            ref = m(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
        ours = np.load(feats)
        check(ours.shape == ref.shape, f"feature shapes {ours.shape} and {ref.shape}")
        if ours.shape == ref.shape:
            err = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
            check(err < 1e-4, f"byol embed vs torchvision on the exported weights: relative difference {err:.2e}")
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
