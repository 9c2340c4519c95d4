#!/usr/bin/python3
"""Writes the PIL reference pixels that tests/test_image.c compares byol.c's decoders against.

  /usr/bin/python3 tests/reference/make_image_fixtures.py [--data ../shared/data/cifar10-jpeg.tar.gz]
                                                          [--out tests/fixtures]

image_cifar10_airplane_0000.rgb   PIL's RGB decode of cifar10-jpeg/test/airplane/0000.jpg from the
                                  CIFAR-10 JPEG archive (32x32x3 bytes, HWC)
image_cifar10_airplane_0000.gray  the same image .convert("L") (32x32 bytes)
image_cmyk.jpg                    a 16x12 CMYK JPEG written by PIL (Adobe-style inverted CMYK)
image_cmyk.rgb                    PIL's .convert("RGB") of it (16x12x3 bytes)

PIL 9.4 (Debian 12) decodes JPEGs with the system libjpeg-turbo, default settings (ISLOW DCT,
fancy upsampling), as byol.c does."""
import argparse
import io
import os
import tarfile

from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    ap.add_argument("--out", default="tests/fixtures")
    a = ap.parse_args()

    with tarfile.open(a.data) as tf:
        data = tf.extractfile("cifar10-jpeg/test/airplane/0000.jpg").read()
    im = Image.open(io.BytesIO(data))
    assert im.mode == "RGB" and im.size == (32, 32)
    rgb = im.convert("RGB")
    with open(os.path.join(a.out, "image_cifar10_airplane_0000.rgb"), "wb") as f:
        f.write(rgb.tobytes())
    with open(os.path.join(a.out, "image_cifar10_airplane_0000.gray"), "wb") as f:
        f.write(rgb.convert("L").tobytes())

    w, h = 16, 12
    cmyk = Image.new("CMYK", (w, h))
    cmyk.putdata([((x * 16) % 256, (y * 21) % 256, ((x + y) * 9) % 256, (x * y * 3) % 256)
                  for y in range(h) for x in range(w)])
    path = os.path.join(a.out, "image_cmyk.jpg")
    cmyk.save(path, quality=90)
    back = Image.open(path)
    assert back.mode == "CMYK"
    with open(os.path.join(a.out, "image_cmyk.rgb"), "wb") as f:
        f.write(back.convert("RGB").tobytes())


if __name__ == "__main__":
    main()
