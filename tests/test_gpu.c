/* GPUs as the build and the machine see them (src/backend/gpu.h). A CUDA build must start and
 * run on a machine without a GPU or a driver (CI's): every other test program of a CUDA build
 * runs that way too; here, byol --version's gpu line agrees with what the runtime reports. */
#include "backend/gpu.h"
#include "harness.h"

static void test_version_gpu_line(void) {
    char cmd[1200];
    const char *bin = getenv("BYOL") ? getenv("BYOL") : "./byol";
    snprintf(cmd, sizeof cmd, "%s --version > %s/out 2>&1", bin, TEST_TMP);
    CHECK(sh_status(cmd) == 0, "byol --version exits 0");
    char *out = slurp_text("out"), *line = strstr(out, "\ngpu: ");
    CHECK(line != NULL, "a gpu line: %s", out);
    if (line) line[strcspn(line + 1, "\n") + 1] = 0;
    char why[256] = "";
    const int n = gpu_device_count(why, sizeof why);
    if (!gpu_built()) {
        CHECK(n == -1 && line && strstr(line, "not built"), "no CUDA in this build: %s", line ? line : "");
    } else if (n < 0) {
        /* CI: the CUDA runtime is linked, the driver is not there */
        CHECK(line && strstr(line, "CUDA ") && strstr(line, "runtime; no usable device: ") && strstr(line, why),
              "the runtime's reason (%s): %s", why, line ? line : "");
    } else {
        char want[32];
        snprintf(want, sizeof want, "%d device", n);
        CHECK(line && strstr(line, want), "%s: %s", want, line ? line : "");
    }
    free(out);
}

int main(void) {
    test_tmpdir("test_gpu");
    RUN(test_version_gpu_line);
    return test_finish();
}
