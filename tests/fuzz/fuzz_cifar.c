/* CIFAR-10/100 binary datasets (src/data/cifar.c), opened with 2 records per file instead of
 * the official 10000/50000 so that small inputs pass the size check and reach the record and
 * label checks. Flags: bit 0 CIFAR-100 (files train.bin, test.bin, fine_label_names.txt), else
 * CIFAR-10 (data_batch_1..5.bin, test_batch.bin, batches.meta.txt). */
#include "fuzz_files.h"

static const char *const NAMES[10] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                      "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin",
                                      "batches.meta.txt", "train.bin", "test.bin",
                                      "fine_label_names.txt"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fz_folder(NAMES, 10);
    fz_remove_all(NAMES, 10);
    if (size < 1) return 0;
    const int cifar100 = data[0] & 1;
    if (cifar100) fz_write_files(data, size, NAMES + 7, 3);
    else fz_write_files(data, size, NAMES, 7);
    const DatasetCounts small = {2, 2, 2, 2, 2};
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    snprintf(ds.root, sizeof ds.root, "%s", dir);
    Err e;
    if (cifar_open_counts(&ds, dir, cifar100, &small, &e) == 0) fz_touch_images(&ds);
    else if (!e.msg[0]) abort();
    dataset_close(&ds);
    return 0;
}
