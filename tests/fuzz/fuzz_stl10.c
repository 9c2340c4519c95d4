/* STL-10 binary datasets (src/data/stl10.c), opened with 2 images per split instead of the
 * official 5000/8000/100000 so that small inputs pass the size check. Files: train_X.bin,
 * train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin, class_names.txt. */
#include "fuzz_files.h"

static const char *const NAMES[6] = {"train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin",
                                     "unlabeled_X.bin", "class_names.txt"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fz_folder(NAMES, 6);
    fz_write_files(data, size, NAMES, 6);
    const DatasetCounts small = {2, 2, 2, 2, 2};
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    snprintf(ds.root, sizeof ds.root, "%s", dir);
    Err e;
    if (stl10_open_counts(&ds, dir, &small, &e) == 0) fz_touch_images(&ds);
    else if (!e.msg[0]) abort();
    dataset_close(&ds);
    return 0;
}
