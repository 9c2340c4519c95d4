#!/usr/bin/python3
"""tools/pth2safetensors.py and `byol train --init` together: a PyTorch ResNet-18 with
torchvision's names (byol_ref's), saved as a Lightning-style checkpoint with a "backbone."
prefix, converts; `byol train --init` on it takes its width and ImageNet stem, and after one step
at learning rate 0 `byol export` gives back its weights bit for bit; the features of `byol embed`
match PyTorch's forward of the same weights (eval mode) within 1e-4. A file with no ResNet in it
is refused in one line.

Run by tests/run.sh when /usr/bin/python3 has torch (Debian's python3-torch); otherwise counted
as skipped. Prints a RESULT line like the C tests.

  /usr/bin/python3 tests/reference/test_pth2safetensors.py BYOL_BINARY"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import byol_ref as R  # noqa: E402

TOOL = os.path.join(HERE, "..", "..", "tools", "pth2safetensors.py")


def main():
    byol = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./byol")
    check = R.Checks()

    torch.manual_seed(0)
    net = R.ResNet("resnet18", width=8, stem="imagenet", in_channels=3)
    with torch.no_grad():  # batch-norm statistics off their defaults, so that they are checked too
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    with tempfile.TemporaryDirectory() as tmp:
        pth = os.path.join(tmp, "model.ckpt")
        sd = {f"backbone.{k}": v for k, v in net.state_dict().items()}
        sd["head.weight"] = torch.zeros(3, 3)
        torch.save({"state_dict": sd, "epoch": 3}, pth)
        out = os.path.join(tmp, "enc.safetensors")
        r = subprocess.run(["/usr/bin/python3", TOOL, pth, out], capture_output=True, text=True)
        check(r.returncode == 0 and "prefix 'backbone.'" in r.stdout, f"converts: {r.stdout.strip()} {r.stderr.strip()}")

        # a small image folder (no splits): 32 random 40x40 images in two classes
        data = os.path.join(tmp, "imgs")
        rng = np.random.default_rng(0)
        for c in ("a", "b"):
            os.makedirs(os.path.join(data, c))
            for i in range(16):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                    os.path.join(data, c, f"{i}.png"))
        run = os.path.join(tmp, "run")
        r = subprocess.run([byol, "train", "--data", data, "--out", run, "--init", out, "--batch", "8",
                            "--proj-hidden", "32", "--proj-dim", "16", "--pred-hidden", "32", "--base-lr", "0",
                            "--max-steps", "1", "--knn-before", "0", "--knn-after", "0", "--eval-every", "0"],
                           capture_output=True, text=True)
        check(r.returncode == 0 and "resnet18 width 8, imagenet stem" in r.stdout,
              f"byol train --init takes the file's encoder: {r.stdout.splitlines()[:1]} {r.stderr.strip()}")
        back = os.path.join(tmp, "back.safetensors")
        subprocess.run([byol, "export", "--ckpt", run, "--out", back], check=True, stdout=subprocess.DEVNULL)
        got, _ = R.load_safetensors(back)
        ref = net.state_dict()
        same = [k for k, v in ref.items() if "running" not in k and "num_batches" not in k
                and k in got and np.array_equal(got[k], v.numpy())]
        n = sum(1 for k in ref if "running" not in k and "num_batches" not in k)
        check(len(same) == n, f"the exported weights are the file's: {len(same)} of {n}")

        # the same weights, BN statistics included: byol embed of an --init run at lr 0 moves the
        # running statistics by one step, so compare against PyTorch with the exported ones
        feats = os.path.join(tmp, "f.npy")
        r = subprocess.run([byol, "embed", "--ckpt", run, "--data", data, "--split", "train", "--out", feats], capture_output=True,
                           text=True)
        check(r.returncode == 0, f"embeds: {r.stderr.strip()}")
        if r.returncode == 0:
            ckpt = sorted(glob.glob(os.path.join(run, "ckpt-*.safetensors")))[-1]
            _, meta = R.load_safetensors(ckpt)
            mean = np.array([float(x) for x in meta["byol.mean"].split()], dtype=np.float32)
            std = np.array([float(x) for x in meta["byol.std"].split()], dtype=np.float32)
            net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in got.items()}, strict=False)
            f = np.load(feats)
            files = sorted(glob.glob(os.path.join(data, "*", "*.png")))
            x = np.stack([(np.asarray(Image.open(p), dtype=np.float32) / 255 - mean) / std for p in files])
            with torch.no_grad():
                ref_f = net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
            err = np.abs(f - ref_f).max() / np.abs(ref_f).max() if f.shape == ref_f.shape else np.inf
            check(err < 1e-4, f"features match PyTorch's forward: {f.shape} vs {ref_f.shape}, max rel err {err:.2e}")

        bad = os.path.join(tmp, "bad.pth")
        torch.save({"w": torch.zeros(2)}, bad)
        r = subprocess.run(["/usr/bin/python3", TOOL, bad, os.path.join(tmp, "bad.safetensors")],
                           capture_output=True, text=True)
        check(r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "conv1.weight" in r.stderr
              and not os.path.exists(os.path.join(tmp, "bad.safetensors")), f"refused: {r.stderr.strip()}")
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
