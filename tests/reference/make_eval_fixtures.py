#!/usr/bin/python3
"""Writes tests/fixtures/eval_probe.safetensors: linear probes fitted by PyTorch, for
tests/test_eval.c.

  /usr/bin/python3 tests/reference/make_eval_fixtures.py [--out tests/fixtures]

Each case is a small multinomial logistic regression on overlapping gaussian blobs (features
with various offsets and scales, plus one constant feature). As src/eval/probe.c does, the
features are standardized with the training set's mean and population std (a constant feature
is divided by 1), then W [C, d] and b [C] minimize
    mean cross-entropy(X W^T + b) + 0.5 * l2 * ||W||^2
starting from zero, with torch.optim.LBFGS (history 10, line_search_fn="strong_wolfe") in
float64 run to a gradient of 1e-12.

Keys: <case>.train_x, <case>.train_y, <case>.test_x, <case>.test_y (labels stored as float32),
<case>.W, <case>.b. __metadata__: <case>.l2, <case>.classes, <case>.loss (float64 repr),
<case>.test_top1, <case>.train_top1, <case>.grad_max."""
import argparse
import os

import numpy as np
import torch

import byol_ref as R


def blobs(rng, n, d, C, centers, offset, scale):
    y = rng.integers(0, C, size=n)
    x = centers[y] + rng.normal(size=(n, d))
    x = x * scale + offset
    x[:, d - 1] = 3.25  # a constant feature (std 0)
    return x.astype(np.float32), y.astype(np.int32)


def fit(xtr, ytr, C, l2):
    x = torch.from_numpy(xtr.astype(np.float64))
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std[std == 0] = 1
    xs = (x - mean) / std
    y = torch.from_numpy(ytr.astype(np.int64))
    d = x.shape[1]
    W = torch.zeros(C, d, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=100000, max_eval=200000, tolerance_grad=1e-12,
                            tolerance_change=1e-30, history_size=10, line_search_fn="strong_wolfe")

    def loss_fn():
        return torch.nn.functional.cross_entropy(xs @ W.T + b, y) + 0.5 * l2 * (W * W).sum()

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)
    loss = loss_fn()
    gW, gb = torch.autograd.grad(loss, [W, b])
    gmax = max(gW.abs().max().item(), gb.abs().max().item())
    return W.detach(), b.detach(), mean, std, loss.item(), gmax


def top1(x, y, W, b, mean, std):
    xs = (torch.from_numpy(x.astype(np.float64)) - mean) / std
    return (torch.argmax(xs @ W.T + b, 1).numpy() == y).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures"))
    args = ap.parse_args()
    rng = np.random.default_rng(20240611)
    T, meta = {}, {}
    for case, n_train, n_test, d, C, sep, l2 in [("a", 300, 150, 12, 4, 1.2, 1e-4),
                                                  ("b", 200, 100, 7, 3, 0.8, 0.05)]:
        centers = rng.normal(size=(C, d)) * sep
        offset = rng.normal(size=d) * 5
        scale = np.exp(rng.normal(size=d))
        xtr, ytr = blobs(rng, n_train, d, C, centers, offset, scale)
        xte, yte = blobs(rng, n_test, d, C, centers, offset, scale)
        W, b, mean, std, loss, gmax = fit(xtr, ytr, C, l2)
        tr, te = top1(xtr, ytr, W, b, mean, std), top1(xte, yte, W, b, mean, std)
        print(f"case {case}: loss {loss!r} grad_max {gmax:.2e} train_top1 {tr:.4f} test_top1 {te:.4f}")
        T.update({f"{case}.train_x": xtr, f"{case}.train_y": ytr.astype(np.float32),
                  f"{case}.test_x": xte, f"{case}.test_y": yte.astype(np.float32),
                  f"{case}.W": W.float().numpy(), f"{case}.b": b.float().numpy()})
        meta.update({f"{case}.l2": repr(l2), f"{case}.classes": C, f"{case}.loss": repr(loss),
                     f"{case}.test_top1": repr(float(te)), f"{case}.train_top1": repr(float(tr)),
                     f"{case}.grad_max": repr(gmax)})
    path = os.path.join(args.out, "eval_probe.safetensors")
    R.save_safetensors(path, T, meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
