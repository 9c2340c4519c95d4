/* byol refuses, in one line and before any other code runs, a CPU without the instruction sets
 * it was built for (src/cli/cpu_check.c), and asks for nothing the build does not use. A CPU
 * lacking one is simulated with BYOL_FAULT_CPU_LACKS. This program is built with the flags of
 * byol itself, so its own macros say what the build assumes. */
#include "harness.h"

/* Runs `env byol --version`; its exit status, stdout and stderr in TEST_TMP/{out,err}. */
static int version_with(const char *env) {
    const char *byol = getenv("BYOL") ? getenv("BYOL") : "./byol";
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "env %s %s --version > %s/out 2> %s/err", env, byol, TEST_TMP, TEST_TMP);
    return sh_status(cmd);
}

static void expect(const char *feature, int built_with, const char *named) {
    char env[128];
    snprintf(env, sizeof env, "BYOL_FAULT_CPU_LACKS=%s", feature);
    const int st = version_with(env);
    char *out = slurp_text("out"), *err = slurp_text("err");
    if (built_with) {
        CHECK(st == 1, "lacking %s: exit %d (1)", feature, st);
        CHECK(strstr(err, named) && strstr(err, "make NATIVE=0") && strchr(err, '\n') == err + strlen(err) - 1,
              "lacking %s: one line naming %s and make NATIVE=0: %s", feature, named, err);
        CHECK(out[0] == 0, "lacking %s: nothing ran (stdout: %s)", feature, out);
    } else {
        CHECK(st == 0 && strstr(out, "byol.c"), "not built with %s: runs without it (exit %d: %s)", feature, st, err);
    }
    free(out), free(err);
}

static void test_refuses_a_cpu_without_the_build_isa(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    CHECK(version_with("") == 0, "this machine runs its own build");
#ifdef __AVX512F__
    expect("avx512f", 1, "AVX-512 (avx512f)");
#else
    expect("avx512f", 0, NULL);
#endif
#ifdef __AVX2__
    expect("avx2", 1, "AVX2");
#else
    expect("avx2", 0, NULL);
#endif
#else
    printf("     (not x86-64: no check)\n");
#endif
}

int main(void) {
    test_tmpdir("test_cpu_check");
    RUN(test_refuses_a_cpu_without_the_build_isa);
    return test_finish();
}
