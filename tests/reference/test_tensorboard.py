#!/usr/bin/python3
"""byol train's TensorBoard file read back with Debian's python3-protobuf, against the same
protos (the descriptor set protoc-c writes beside the C code, $BUILD/gen/tensorboard.desc):
every record's framing, the version event, and the loss, lr and kNN scalars equal to
metrics.jsonl's. TensorBoard itself is not needed.

Run by tests/run.sh when /usr/bin/python3 has google.protobuf; otherwise counted as skipped.

  /usr/bin/python3 tests/reference/test_tensorboard.py BYOL_BINARY"""
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byol_ref as R  # noqa: E402


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def event_class():
    fds = descriptor_pb2.FileDescriptorSet()
    with open(os.path.join(os.environ.get("BUILD", "build"), "gen", "tensorboard.desc"), "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName("tensorflow.Event"))


def main():
    byol = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./byol")
    check = R.Checks()
    Event = event_class()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["tar", "xzf", "../shared/data/cifar10-jpeg.tar.gz", "-C", tmp, "--wildcards",
                        "cifar10-jpeg/t*/*/000[0-3].jpg"], check=True)
        run = os.path.join(tmp, "run")
        subprocess.run([byol, "train", "--data", os.path.join(tmp, "cifar10-jpeg"), "--out", run, "--width", "4",
                        "--proj-hidden", "32", "--proj-dim", "16", "--pred-hidden", "32", "--batch", "8",
                        "--epochs", "2", "--log-every", "2", "--eval-bank", "40", "--eval-queries", "40",
                        "--knn-k", "10"], check=True, stdout=subprocess.DEVNULL)
        files = glob.glob(os.path.join(run, "events.out.tfevents.*"))
        check(len(files) == 1, f"one events file: {files}")
        events, framing_ok = [], True
        with open(files[0], "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack_from("<Q", data, pos)
            (lcrc,) = struct.unpack_from("<I", data, pos + 8)
            body = data[pos + 12:pos + 12 + n]
            (dcrc,) = struct.unpack_from("<I", data, pos + 12 + n)
            framing_ok &= lcrc == masked(data[pos:pos + 8]) and dcrc == masked(body)
            ev = Event()
            ev.ParseFromString(body)
            events.append(ev)
            pos += 16 + n
        check(framing_ok and pos == len(data), f"{len(events)} records, lengths and masked CRC-32C right")
        check(events[0].file_version == "brain.Event:2", "the version event first")
        scalars = {}
        for ev in events[1:]:
            for v in ev.summary.value:
                scalars.setdefault(v.tag, {})[ev.step] = v.simple_value
        metrics = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
        # within what metrics.jsonl prints: loss %.7g, lr %.6g, proj_std %.5f
        for key, tag, rel, ab in (("loss", "loss", 1e-6, 0), ("lr", "lr", 1e-5, 0),
                                  ("proj_std", "collapse/std_sqrt_d", 0, 1e-5)):
            want = {m["step"]: m[key] for m in metrics if key in m}
            got = scalars.get(tag, {})
            same = want and all(s in got and abs(got[s] - v) <= rel * abs(v) + ab for s, v in want.items())
            check(bool(same), f"{tag}: {len(got)} scalars, as metrics.jsonl's {len(want)}")
        knn = {m["step"]: m["knn_top1"] for m in metrics if "knn_top1" in m and not m.get("untrained")
               and not m.get("final")}
        got = scalars.get("knn/top1", {})
        check(bool(knn) and all(abs(got.get(s, -1) - v) < 1e-6 for s, v in knn.items()),
              f"knn/top1 at the epochs' ends: {got}")
    return check.finish()


if __name__ == "__main__":
    sys.exit(main())
