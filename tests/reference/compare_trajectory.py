#!/usr/bin/python3
"""Follows byol.c and float32 PyTorch over many BYOL steps from the same fresh initialization
on the same real augmented views, to see whether training dynamics agree where a few-step
fixture cannot tell (two float32 runs drift apart over many steps, so only the curves are
compared, not the tensors):

  /usr/bin/python3 tests/reference/compare_trajectory.py --data /path/to/cifar10-jpeg/train \\
      --steps 60 --batch 128 --width 16 --lr 0.5

Views come from ../shared/bench/torch_byol_train.py's own augmentation (PyTorch's recipe), made
once and fed to both programs (./byol step). Prints both loss curves and, at the end, the
collapse figures of each program's online projections of a held-out augmented batch: per-
dimension std of the L2-normalized projections times sqrt(D) and the effective rank (exp of
the entropy of the normalized singular values). Needs Debian's python3-torch and python3-pil."""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import byol_ref as R  # noqa: E402


def load_images(folder, n, seed):
    from PIL import Image
    files = []
    for root, _, names in sorted(os.walk(folder)):
        files += [os.path.join(root, f) for f in sorted(names) if f.endswith((".jpg", ".jpeg", ".png"))]
    if len(files) < n:
        sys.exit(f"{folder}: {len(files)} images, {n} needed")
    pick = np.random.default_rng(seed).choice(len(files), n, replace=False)
    return torch.from_numpy(np.stack([np.asarray(Image.open(files[i]).convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
                                      for i in pick]))


def collapse_figures(z):
    z = F.normalize(z.double(), dim=1)
    std = z.std(dim=0).mean().item() * z.shape[1] ** 0.5
    s = torch.linalg.svdvals(z - z.mean(dim=0))
    p = s / s.sum()
    rank = torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum()).item()
    return std, rank


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--byol", default=os.path.join(HERE, "..", "..", "byol"))
    ap.add_argument("--torch-script", default=os.path.join(HERE, "..", "..", "..", "shared", "bench", "torch_byol_train.py"))
    ap.add_argument("--data", required=True, help="a folder of 32x32 RGB images (e.g. cifar10-jpeg/train)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--proj-hidden", type=int, default=4096)
    ap.add_argument("--proj-dim", type=int, default=256)
    ap.add_argument("--pred-hidden", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--weight-decay", type=float, default=1e-5)
    ap.add_argument("--lars-eta", type=float, default=0.02)
    ap.add_argument("--tau", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    spec = importlib.util.spec_from_file_location("torch_byol_train", a.torch_script)
    T = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(T)

    cfg = dict(arch="resnet18", width=a.width, stem="cifar", in_channels=3, proj_hidden=a.proj_hidden,
               proj_dim=a.proj_dim, pred_hidden=a.pred_hidden)
    imgs = load_images(a.data, a.batch * (a.steps + 1), a.seed)
    mean = (imgs.float() / 255).mean(dim=(0, 2, 3)).tolist()
    std = (imgs.float() / 255).std(dim=(0, 2, 3)).tolist()
    aug1 = T.Augment(3, 32, mean, std, 0.0, a.seed * 1000 + 1)
    aug2 = T.Augment(3, 32, mean, std, 0.2, a.seed * 1000 + 2)
    views = np.stack([np.stack([aug1(imgs[i * a.batch:(i + 1) * a.batch]).numpy(),
                                aug2(imgs[i * a.batch:(i + 1) * a.batch]).numpy()])
                      for i in range(a.steps + 1)]).astype(np.float32)
    held_out = torch.from_numpy(views[-1][0])
    views = views[:-1]

    # A fresh start as training makes it: torchvision's init, target = online, no momentum.
    torch.manual_seed(a.seed)
    model = R.Byol(cfg)
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
    model.target.load_state_dict(model.online.state_dict())
    state = {k: v.detach().float().numpy().copy() for k, v in R.full_state(model, {}).items()}
    hp = dict(lr=a.lr, wd=a.weight_decay, m=0.9, eta=a.lars_eta, tau=a.tau)

    with tempfile.TemporaryDirectory() as d:
        sin, vin, sout = (os.path.join(d, n) for n in ("in.safetensors", "views.npy", "out.safetensors"))
        R.save_safetensors(sin, state)
        np.save(vin, views)
        cmd = [a.byol, "step", "--state", sin, "--views", vin, "--out", sout, *R.model_flags(cfg),
               "--lr", repr(a.lr), "--weight-decay", repr(a.weight_decay), "--lars-eta", repr(a.lars_eta),
               "--tau", repr(a.tau), "--threads", str(a.threads)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"byol step failed ({run.returncode}): {run.stderr}")
        ours = [float(line.split()[3]) for line in run.stdout.splitlines() if line.startswith("step ")]
        ours_state, _ = R.load_safetensors(sout)
    theirs, theirs_state = R.run_steps(cfg, state, views, dtype=torch.float32, **hp)

    print(f"resnet18 width {a.width}, heads {a.proj_hidden}/{a.proj_dim}/{a.pred_hidden}, batch {a.batch}, "
          f"{a.steps} steps at lr {a.lr}, tau {a.tau}, wd {a.weight_decay}, eta {a.lars_eta}")
    print(f"{'step':>5} {'byol.c':>9} {'PyTorch':>9}")
    for i in range(len(ours)):
        if i < 5 or i % 5 == 4 or i == len(ours) - 1:
            print(f"{i:>5} {ours[i]:>9.5f} {theirs[i]:>9.5f}")
    n = max(1, len(ours) // 4)
    print(f"mean loss of the last {n} steps: byol.c {np.mean(ours[-n:]):.5f}, PyTorch {np.mean(theirs[-n:]):.5f}")
    for name, st in (("byol.c", ours_state), ("PyTorch", theirs_state)):
        m = R.Byol(cfg)
        R.load_full_state(m, st, torch.float32)
        m.train()
        with torch.no_grad():
            s, r = collapse_figures(m.online(held_out))
        print(f"{name:>8}: online projections of a held-out batch: std x sqrt(D) {s:.3f}, effective rank {r:.1f}")


if __name__ == "__main__":
    main()
