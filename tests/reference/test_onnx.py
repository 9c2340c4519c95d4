#!/usr/bin/python3
"""`byol export --format onnx` gives a valid ONNX model (onnx.checker, full check) whose graph,
run node by node with PyTorch's functional operators, gives the features of `byol embed` within
1e-4 relative, for a batch of images and for one image, for both stems (a ResNet-18 with the
cifar stem, a ResNet-50 with the ImageNet stem's 7x7/2 conv and max-pool).

The interpreter below knows exactly the operators byol exports (Conv, BatchNormalization, Relu,
Add, MaxPool, GlobalAveragePool, Flatten) and stops on anything else, so a new operator in the
export has to be added here deliberately. With onnxruntime installed (pip install onnxruntime;
not in Debian) the file is also run by it.

Run by tests/run.sh when /usr/bin/python3 has onnx, torch and numpy (Debian's python3-onnx,
python3-torch); otherwise counted as skipped. Prints a RESULT line like the C tests.

  /usr/bin/python3 tests/reference/test_onnx.py BYOL_BINARY"""
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byol_ref as R  # noqa: E402


def write_png(path, px):
    """An 8-bit RGB PNG without PIL (so the test needs only onnx, torch and numpy)."""
    h, w, _ = px.shape
    raw = b"".join(b"\0" + px[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def read_png(path):
    """The PNGs write_png made: filter type 0 on every row."""
    with open(path, "rb") as f:
        data = f.read()
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, 3)


def attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def sym_pads(pads):
    """ONNX's [top, left, bottom, right] as PyTorch's symmetric (top, left)."""
    assert list(pads[:2]) == list(pads[2:]), f"asymmetric pads {pads}"
    return tuple(pads[:2])


@torch.no_grad()
def run_graph(model, x):
    """The graph, node by node, on x (NCHW float32): its one output."""
    g = model.graph
    env = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
    env[g.input[0].name] = torch.from_numpy(x)
    for n in g.node:
        a, ins = attrs(n), [env[i] for i in n.input]
        if n.op_type == "Conv":
            assert a.get("group", 1) == 1 and list(a.get("dilations", [1, 1])) == [1, 1] and len(ins) == 2
            assert list(a["kernel_shape"]) == list(ins[1].shape[2:])
            y = F.conv2d(ins[0], ins[1], stride=tuple(a.get("strides", [1, 1])), padding=sym_pads(a.get("pads", [0] * 4)))
        elif n.op_type == "BatchNormalization":
            x0, scale, bias, mean, var = ins
            y = F.batch_norm(x0, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))
        elif n.op_type == "Relu":
            y = F.relu(ins[0])
        elif n.op_type == "Add":
            assert ins[0].shape == ins[1].shape
            y = ins[0] + ins[1]
        elif n.op_type == "MaxPool":
            assert a.get("ceil_mode", 0) == 0 and list(a.get("dilations", [1, 1])) == [1, 1]
            y = F.max_pool2d(ins[0], tuple(a["kernel_shape"]), stride=tuple(a.get("strides", [1, 1])),
                             padding=sym_pads(a.get("pads", [0] * 4)))
        elif n.op_type == "GlobalAveragePool":
            y = F.adaptive_avg_pool2d(ins[0], 1)
        elif n.op_type == "Flatten":
            y = torch.flatten(ins[0], a.get("axis", 1))
        else:
            raise ValueError(f"node {n.name}: operator {n.op_type} not in the exported set")
        assert len(n.output) == 1 and n.output[0] not in env, f"node {n.name}: output {n.output[0]} defined twice"
        env[n.output[0]] = y
    return env[g.output[0].name].numpy()


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def check_stem(byol, tmp, data, check, name, train_flags, want_ops):
    run = os.path.join(tmp, "run-" + name)
    r = subprocess.run([byol, "train", "--data", data, "--out", run, "--batch", "8", "--proj-hidden", "32",
                        "--proj-dim", "16", "--pred-hidden", "32", "--max-steps", "1", "--knn-before", "0",
                        "--knn-after", "0", "--eval-every", "0", "--threads", "1"] + train_flags,
                       capture_output=True, text=True)
    check(r.returncode == 0, f"{name}: trains one step: {r.stderr.strip()}")
    if r.returncode:
        return
    path = os.path.join(tmp, name + ".onnx")
    r = subprocess.run([byol, "export", "--ckpt", run, "--format", "onnx", "--out", path], capture_output=True, text=True)
    check(r.returncode == 0 and os.path.exists(path), f"{name}: byol export --format onnx: {r.stdout.strip()} {r.stderr.strip()}")
    feats, names = os.path.join(tmp, name + ".npy"), os.path.join(tmp, name + ".txt")
    r = subprocess.run([byol, "embed", "--ckpt", run, "--split", "test", "--out", feats, "--names", names, "--threads", "1"],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"{name}: byol embed --split test: {r.stderr.strip()}")
    if not os.path.exists(path) or r.returncode:
        return

    model = onnx.load(path)
    try:
        onnx.checker.check_model(model, full_check=True)
        check(True, f"{name}: onnx.checker.check_model(full_check=True)")
    except Exception as ex:  # noqa: BLE001 - the checker's own exception types vary by version
        check(False, f"{name}: onnx.checker: {ex}")
    meta = {p.key: p.value for p in model.metadata_props}
    check(sorted(meta) == sorted(["arch", "width", "stem", "in_channels", "image_size", "mean", "std"])
          and model.producer_name == "byol.c", f"{name}: metadata_props {meta}, producer {model.producer_name}")
    ops = sorted({n.op_type for n in model.graph.node})
    check(ops == sorted(want_ops), f"{name}: operators {ops}")
    out_d = np.load(feats).shape[1]
    check(dims(model.graph.input[0]) == ["N", 3, 32, 32] and dims(model.graph.output[0]) == ["N", out_d],
          f"{name}: input {dims(model.graph.input[0])}, output {dims(model.graph.output[0])}")

    # the test split as byol embed read it (its --names rows), preprocessed as the metadata says:
    # native-size images, so just pixel / 255, then (x - mean) / std
    mean = np.array([float(v) for v in meta["mean"].split()], np.float32)
    std = np.array([float(v) for v in meta["std"].split()], np.float32)
    with open(names) as f:
        rows = f.read().splitlines()
    x = np.stack([(read_png(os.path.join(data, p)).astype(np.float32) / 255 - mean) / std for p in rows])
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    ours = np.load(feats)
    got = run_graph(model, x)
    err = rel(got, ours) if got.shape == ours.shape else np.inf
    check(err < 1e-4, f"{name}: graph vs byol embed, batch of {len(x)}: relative {err:.2e}, "
                      f"max |difference| {np.abs(got - ours).max() if got.shape == ours.shape else np.inf:.2e}")
    one = run_graph(model, x[3:4])
    err1 = rel(one, ours[3:4]) if one.shape == (1, ours.shape[1]) else np.inf
    check(err1 < 1e-4, f"{name}: graph vs byol embed, batch of 1: relative {err1:.2e}")
    try:
        import onnxruntime as ort
    except ImportError:
        print(f"     {name}: onnxruntime not installed (pip install onnxruntime): not run by it")
        return
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rt = sess.run(["features"], {"input": x})[0]
    check(rel(rt, ours) < 1e-4, f"{name}: onnxruntime vs byol embed: relative {rel(rt, ours):.2e}")


def main():
    byol = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./byol")
    check = R.Checks()
    with tempfile.TemporaryDirectory() as tmp:
        # 24 + 12 random 32x32 images in two classes, with a test split for byol embed
        data = os.path.join(tmp, "imgs")
        rng = np.random.default_rng(0)
        for split, n in (("train", 12), ("test", 6)):
            for c in ("a", "b"):
                os.makedirs(os.path.join(data, split, c))
                for i in range(n):
                    write_png(os.path.join(data, split, c, f"{i}.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        basic = ["Add", "BatchNormalization", "Conv", "Flatten", "GlobalAveragePool", "Relu"]
        check_stem(byol, tmp, data, check, "resnet18-cifar", ["--width", "8"], basic)
        check_stem(byol, tmp, data, check, "resnet50-imagenet", ["--arch", "resnet50", "--stem", "imagenet", "--width", "4"],
                   basic + ["MaxPool"])
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
