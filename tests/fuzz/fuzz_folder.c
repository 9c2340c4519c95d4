/* Image-folder datasets (src/data/folder.c): scanning, header probing in threads, skipping bad
 * files, then decoding every image through the decode wrapper, as training and evaluation do.
 * The input's files become train/{a,b}/ and, with flags bit 0, test/{a,b}/ images (JPEG and PNG
 * names; the content decides what they are, BMP and TIFF included). */
#include "fuzz_files.h"

static const char *const NAMES[6] = {"train/a/0.jpg", "train/a/1.png", "train/b/2.PNG",
                                     "train/b/3.jpeg", "test/a/4.png", "test/b/5.jpg"};
static const char *const DIRS[6] = {"train/a", "train/b", "test/a", "test/b", "train", "test"};

static void rm_dirs(void) {
    char p[512];
    fz_remove_all(NAMES, 6);
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%s", fz_dir, DIRS[i]);
        rmdir(p);
    }
}

static void make_dirs(int with_test) {
    char p[512];
    for (int i = 0; i < 6; i++) {
        const int test = strncmp(DIRS[i], "test", 4) == 0;
        snprintf(p, sizeof p, "%s/%s", fz_dir, DIRS[i]);
        if (test && !with_test) continue;
        mkdir(p, 0700); /* train/ and test/ exist already (made by the caller) */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int registered;
    const char *dir = fz_folder(NAMES, 6);
    if (!registered++) atexit(rm_dirs); /* runs before fz_folder's cleanup removes the root */
    rm_dirs();
    const int with_test = size > 0 && (data[0] & 1);
    char p[512];
    snprintf(p, sizeof p, "%s/train", dir);
    mkdir(p, 0700);
    if (with_test) {
        snprintf(p, sizeof p, "%s/test", dir);
        mkdir(p, 0700);
    }
    make_dirs(with_test);
    fz_write_files(data, size, NAMES, with_test ? 6 : 4);
    Dataset ds;
    Err e;
    if (dataset_open(&ds, dir, "folder", NULL, &e) == 0) {
        fz_touch_images(&ds);
        dataset_close(&ds);
    } else if (!e.msg[0]) {
        abort();
    }
    return 0;
}
