/* `byol data` and `byol augment` end to end: the report and its JSON line, skipped files, the
 * augmentation grid, and every bad-input case as one stderr line with a non-zero exit. */
#include <cjson/cJSON.h>
#include <sys/wait.h>

#include "harness.h"
#include "data/image.h"

typedef struct {
    int status;
    char out[1 << 16], err[8192];
    int err_lines;
} Run;

static Run R;

static const Run *byol(const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    const char *bin = getenv("BYOL") ? getenv("BYOL") : "./byol";
    snprintf(cmd, sizeof cmd, "%s %s > %s/stdout 2> %s/stderr", bin, args, TEST_TMP, TEST_TMP);
    int rc = system(cmd);
    R.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
    char path[512];
    const char *names[2] = {"stdout", "stderr"};
    char *dst[2] = {R.out, R.err};
    size_t cap[2] = {sizeof R.out, sizeof R.err};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", TEST_TMP, names[k]);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(dst[k], 1, cap[k] - 1, f) : 0;
        dst[k][n] = 0;
        if (f) fclose(f);
    }
    R.err_lines = 0;
    for (char *p = R.err; *p; p++) R.err_lines += *p == '\n';
    return &R;
}

/* The last line of stdout, parsed. */
static cJSON *last_json(void) {
    char *end = R.out + strlen(R.out);
    while (end > R.out && end[-1] == '\n') *--end = 0;
    char *line = strrchr(R.out, '\n');
    return cJSON_Parse(line ? line + 1 : R.out);
}

static void expect_error(const char *needle, const char *fmt, const char *arg) {
    byol(fmt, arg);
    CHECK(R.status != 0, "exit 0 for: %s", arg);
    CHECK(R.err_lines == 1, "%d stderr lines (want 1): %s", R.err_lines, R.err);
    CHECK(strstr(R.err, needle) != NULL, "stderr lacks '%s': %s", needle, R.err);
}


static void sh(const char *fmt, const char *a) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, fmt, a, a, a);
    if (system(cmd) != 0) {
        printf("FATAL command failed: %s\n", cmd);
        exit(2);
    }
}

static char CIFAR[512]; /* a 100-image subset of the CIFAR-10 JPEG folder (test split) */

static void test_data_fashion_mnist(void) {
    byol("data");
    CHECK(R.status == 0, "exit %d: %s", R.status, R.err);
    cJSON *j = last_json();
    CHECK(j != NULL, "last line is JSON");
    if (!j) return;
    cJSON *splits = cJSON_GetObjectItem(j, "splits");
    CHECK(cJSON_GetObjectItem(splits, "train")->valueint == 60000, "train 60000");
    CHECK(cJSON_GetObjectItem(splits, "test")->valueint == 10000, "test 10000");
    CHECK(strcmp(cJSON_GetObjectItem(j, "dataset")->valuestring, "fashion-mnist") == 0, "kind");
    CHECK(cJSON_GetObjectItem(j, "channels")->valueint == 1, "1 channel");
    /* The published Fashion-MNIST statistics: mean 0.2860, std 0.3530. */
    double m = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "mean"), 0)->valuedouble;
    double s = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "std"), 0)->valuedouble;
    CHECK(fabs(m - 0.2860) < 1e-4 && fabs(s - 0.3530) < 1e-4, "mean %g std %g", m, s);
    cJSON *counts = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "class_counts"), "train");
    CHECK(cJSON_GetArraySize(counts) == 10 && cJSON_GetArrayItem(counts, 9)->valueint == 6000, "6000 per class");
    CHECK(strstr(R.out, "Ankle boot") != NULL, "class names printed");
    cJSON_Delete(j);
}

static void test_data_folder_with_bad_files(void) {
    char root[600], p[700];
    snprintf(root, sizeof root, "%s/mixed", TEST_TMP);
    sh("mkdir -p %s/train/a %s/train/b", root);
    /* Two CIFAR JPEGs per class, copied from the extracted subset. */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp %s/airplane/000[0-1].jpg %s/train/a/ && cp %s/bird/000[0-1].jpg %s/train/b/",
             CIFAR, root, CIFAR, root);
    CHECK(system(cmd) == 0, "copied images");
    snprintf(p, sizeof p, "%s/train/a/broken.jpg", root);
    write_bytes(p, "\xff\xd8\xff\xe0 this is not really a jpeg", 30);
    snprintf(p, sizeof p, "%s/train/b/notes.txt", root);
    write_bytes(p, "ignored", 7);
    /* A JPEG whose header is intact but whose data is cut: only a full decode finds it. */
    snprintf(cmd, sizeof cmd, "f=%s/bird/0002.jpg; head -c $(( $(stat -c %%s $f) - 250 )) $f > %s/train/b/cut.jpg", CIFAR, root);
    CHECK(system(cmd) == 0, "made a truncated JPEG");
    byol("data --data %s", root);
    CHECK(R.status == 0, "exit %d: %s", R.status, R.err);
    CHECK(R.err_lines == 2 && strstr(R.err, "broken.jpg") && strstr(R.err, "cut.jpg"), "one warning per bad file: %s", R.err);
    cJSON *j = last_json();
    CHECK(j && cJSON_GetObjectItem(cJSON_GetObjectItem(j, "splits"), "train")->valueint == 5, "5 images pass the header check");
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "skipped")) == 2, "2 skipped, in the JSON");
    CHECK(j && cJSON_GetObjectItem(j, "undecodable")->valueint == 1, "1 fails to decode");
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "classes")) == 2, "2 classes");
    cJSON_Delete(j);
}

/* A folder of mostly small images and one photo: the typical size is reported, and the largest,
 * and the views default to the typical size. */
static void test_data_mixed_sizes(void) {
    char root[600], cmd[4096];
    snprintf(root, sizeof root, "%s/mostly32", TEST_TMP);
    sh("mkdir -p %s/a %s/b", root);
    snprintf(cmd, sizeof cmd, "cp %s/airplane/000[0-4].jpg %s/a/ && cp %s/bird/000[0-4].jpg %s/b/", CIFAR, root, CIFAR, root);
    CHECK(system(cmd) == 0, "copied images");
    uint8_t *px = calloc(400 * 300 * 3, 1);
    Err e;
    char p[700];
    snprintf(p, sizeof p, "%s/a/photo.png", root);
    CHECK(png_write(p, px, 400, 300, 3, &e) == 0, "%s", e.msg);
    free(px);
    byol("data --data %s", root);
    CHECK(R.status == 0, "exit %d: %s", R.status, R.err);
    CHECK(strstr(R.out, "32x32 typical (median), largest 400x300") && strstr(R.out, "views     32 px by default"),
          "report: %s", R.out);
    CHECK(R.err_lines == 1 && strstr(R.err, "image sizes vary: typical 32x32") && strstr(R.err, "largest 400x300"),
          "one log line: %s", R.err);
    cJSON *j = last_json();
    CHECK(j && cJSON_GetObjectItem(j, "height")->valueint == 32 && cJSON_GetObjectItem(j, "max_width")->valueint == 400 &&
              cJSON_GetObjectItem(j, "default_image_size")->valueint == 32,
          "JSON sizes");
    cJSON_Delete(j);
    byol("augment --data %s --out %s/mixed.png --n 1", root, TEST_TMP);
    CHECK(R.status == 0 && strstr(R.out, "32x32 views"), "augment at 32 px: %s %s", R.out, R.err);
}

static void test_data_bad_inputs(void) {
    char p[700];
    expect_error("cannot open", "data --data %s", "/nonexistent/place");
    snprintf(p, sizeof p, "%s/empty", TEST_TMP);
    sh("mkdir -p %s", p);
    expect_error("no images", "data --data %s", p);
    /* A CIFAR-10 batch of the wrong size. */
    snprintf(p, sizeof p, "%s/cifar-bad", TEST_TMP);
    sh("mkdir -p %s", p);
    char f[800];
    snprintf(f, sizeof f, "%s/data_batch_1.bin", p);
    uint8_t rec[3073 * 2 + 100] = {0};
    write_bytes(f, rec, sizeof rec);
    expect_error("3073", "data --data %s", p);
    /* An IDX file with a bad magic number. */
    snprintf(p, sizeof p, "%s/idx-bad", TEST_TMP);
    sh("mkdir -p %s", p);
    uint8_t head[16 + 4] = {0, 0, 8, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2};
    snprintf(f, sizeof f, "%s/train-images-idx3-ubyte", p);
    write_bytes(f, head, sizeof head);
    uint8_t lab[9] = {0, 0, 8, 1, 0, 0, 0, 1, 0};
    snprintf(f, sizeof f, "%s/train-labels-idx1-ubyte", p);
    write_bytes(f, lab, sizeof lab);
    expect_error("magic", "data --data %s", p);
    expect_error("unknown dataset", "data --dataset %s", "imagenet22k");
    expect_error("unknown flag", "data %s", "--frobnicate 1");
}

static void test_augment_grid(void) {
    char out[600], out2[600];
    snprintf(out, sizeof out, "%s/grid.png", TEST_TMP);
    snprintf(out2, sizeof out2, "%s/grid2.png", TEST_TMP);
    byol("augment --data %s --out %s/grid.png --n 3 --seed 5", CIFAR, TEST_TMP);
    CHECK(R.status == 0, "exit %d: %s", R.status, R.err);
    Image img = {0};
    Err e;
    CHECK(image_decode_file(&img, out, 3, 0, &e) == 0, "%s", e.msg);
    /* 32-px views enlarged 3x to 96 px cells, 3 columns and 3 rows with 2-px gaps. */
    CHECK(img.w == 3 * 96 + 4 * 2 && img.h == 3 * 96 + 4 * 2, "grid %dx%d", img.w, img.h);
    /* The two views of a row differ from each other. */
    int differ = 0;
    for (int y = 2; y < 98; y++)
        for (int x = 0; x < 96; x++)
            for (int k = 0; k < 3; k++)
                differ += img.px[((size_t)y * img.w + 2 + 98 + x) * 3 + k] != img.px[((size_t)y * img.w + 2 + 196 + x) * 3 + k];
    CHECK(differ > 1000, "views 1 and 2 differ in %d values", differ);
    /* Same seed: same bytes. Another seed: another picture. */
    byol("augment --data %s --out %s/grid2.png --n 3 --seed 5", CIFAR, TEST_TMP);
    size_t n1, n2;
    uint8_t *a = read_file(out, &n1, &e), *b = read_file(out2, &n2, &e);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0, "same seed, same grid");
    free(b);
    byol("augment --data %s --out %s/grid2.png --n 3 --seed 6", CIFAR, TEST_TMP);
    b = read_file(out2, &n2, &e);
    CHECK(b && (n1 != n2 || memcmp(a, b, n1) != 0), "another seed, another grid");
    free(a), free(b);
    /* --out's extension picks the format: .jpg and .jpeg write a real JPEG of the same grid. */
    for (int k = 0; k < 2; k++) {
        const char *ext = k ? "JPEG" : "jpg";
        byol("augment --data %s --out %s/grid.%s --n 3 --seed 5", CIFAR, TEST_TMP, ext);
        CHECK(R.status == 0, "exit %d: %s", R.status, R.err);
        char jp[600];
        snprintf(jp, sizeof jp, "%s/grid.%s", TEST_TMP, ext);
        size_t nj = 0;
        uint8_t *jb = read_file(jp, &nj, &e);
        CHECK(jb && nj > 3 && image_format_of(jb, nj) == IMAGE_FORMAT_JPEG, "%s holds JPEG data", jp);
        Image jimg = {0};
        CHECK(jb && image_decode_mem(&jimg, jb, nj, jp, 3, 0, &e) == 0 && jimg.w == img.w && jimg.h == img.h,
              "%s decodes to the grid's size: %s", jp, e.msg);
        /* Lossy, but the same picture: mean difference from the PNG grid small. */
        if (jimg.w == img.w && jimg.h == img.h) {
            double diff = 0;
            for (size_t i = 0; i < (size_t)img.w * img.h * 3; i++) diff += abs((int)jimg.px[i] - (int)img.px[i]);
            diff /= (double)img.w * img.h * 3;
            CHECK(diff < 4, "JPEG vs PNG grid: mean difference %.2f", diff);
        }
        image_free(&jimg);
        free(jb);
    }
    /* One-channel data makes a gray grid. */
    byol("augment --out %s/fm.png --n 2", TEST_TMP);
    CHECK(R.status == 0, "fashion-mnist grid: %s", R.err);
    image_free(&img);
}

static void test_augment_bad_inputs(void) {
    char a[1024];
    snprintf(a, sizeof a, "augment --data %s --out %s/g.png --flip-p 2", CIFAR, TEST_TMP);
    expect_error("--flip-p: 2 is out of range", "%s", a);
    snprintf(a, sizeof a, "augment --data %s --out %s/g.png --interp lanczos", CIFAR, TEST_TMP);
    expect_error("unknown filter 'lanczos'", "%s", a);
    snprintf(a, sizeof a, "augment --data %s --out %s/g.png --blur-p1 1 --blur-kernel 4", CIFAR, TEST_TMP);
    expect_error("odd", "%s", a);
    snprintf(a, sizeof a, "augment --data %s --out %s/no/such/dir/g.png", CIFAR, TEST_TMP);
    expect_error("not writable", "%s", a);
    snprintf(a, sizeof a, "augment --data %s", CIFAR);
    expect_error("--out is required", "%s", a);
    snprintf(a, sizeof a, "augment --data %s --out %s/g.gif", CIFAR, TEST_TMP);
    expect_error("unknown picture format '.gif' (name it .png, .jpg or .jpeg)", "%s", a);
    snprintf(a, sizeof a, "augment --data %s --out %s/grid", CIFAR, TEST_TMP);
    expect_error("name it .png, .jpg or .jpeg", "%s", a);
    /* Views smaller than the encoders can use. */
    snprintf(a, sizeof a, "augment --data %s --out %s/g.png --image-size 1", CIFAR, TEST_TMP);
    expect_error("--image-size 1 is too small: at least 8 px", "%s", a);
    snprintf(a, sizeof a, "augment --data %s --out %s/g.png --image-size 7", CIFAR, TEST_TMP);
    expect_error("--image-size 7 is too small", "%s", a);
    snprintf(a, sizeof a, "train --image-size 4 --epochs 1 --out %s/never", TEST_TMP);
    expect_error("--image-size 4 is too small: at least 8 px", "%s", a);
    snprintf(a, sizeof a, "%s/g.png", TEST_TMP);
    struct stat st;
    CHECK(stat(a, &st) != 0, "no grid written by a failed command");
}

int main(void) {
    test_tmpdir("test_cli_data");
    const char *tarball = "../shared/data/cifar10-jpeg.tar.gz";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "tar xzf %s -C %s --wildcards 'cifar10-jpeg/test/*/000?.jpg'", tarball, TEST_TMP);
    if (system(cmd) != 0) {
        printf("FATAL cannot extract %s (the shared CIFAR-10 JPEG folder)\n", tarball);
        return 2;
    }
    snprintf(CIFAR, sizeof CIFAR, "%s/cifar10-jpeg/test", TEST_TMP);
    RUN(test_data_fashion_mnist);
    RUN(test_data_folder_with_bad_files);
    RUN(test_data_mixed_sizes);
    RUN(test_data_bad_inputs);
    RUN(test_augment_grid);
    RUN(test_augment_bad_inputs);
    return test_finish();
}
