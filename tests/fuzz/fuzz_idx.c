/* IDX datasets (src/data/idx.c), plain and gzipped: the input's files become the four MNIST
 * files (see fuzz_files.h). Flags: bit 0 Fashion-MNIST (else MNIST); bits 1-4 give each file
 * the .gz suffix (gzip data, or plain data that zlib passes through). */
#include "fuzz_files.h"

static const char *const NAMES[8] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                     "t10k-images-idx3-ubyte",  "t10k-labels-idx1-ubyte",
                                     "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                     "t10k-images-idx3-ubyte.gz",  "t10k-labels-idx1-ubyte.gz"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fz_folder(NAMES, 8);
    fz_remove_all(NAMES, 8);
    if (size < 1) return 0;
    const uint8_t flags = data[0];
    const char *names[4];
    for (int i = 0; i < 4; i++) names[i] = NAMES[i + (flags >> (1 + i) & 1 ? 4 : 0)];
    fz_write_files(data, size, names, 4);
    Dataset ds;
    Err e;
    if (dataset_open(&ds, dir, flags & 1 ? "fashion-mnist" : "mnist", NULL, &e) == 0) {
        fz_touch_images(&ds);
        dataset_close(&ds);
    } else if (!e.msg[0]) {
        abort();
    }
    return 0;
}
