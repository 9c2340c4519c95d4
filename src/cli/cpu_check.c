/* Refuses, in one line, to run on a CPU without the instruction sets the build assumed.
 *
 * The default build is -march=native: a binary built on a Zen 5 or Sapphire Rapids machine uses
 * AVX-512 (and its newer extensions) anywhere the compiler likes, so copied to a machine without
 * them it died of SIGILL somewhere in the first step. This file is built for the baseline x86-64
 * (the Makefile filters -march out of its flags and passes the build's instruction sets as
 * BYOL_ISA_<NAME>), and its check runs as the first constructor, before main and before any
 * code of byol's that may use them. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)

/* BYOL_FAULT_CPU_LACKS=NAME (tests): this CPU counts as lacking NAME, so that the refusal can
 * be seen on a machine that has everything. */
static int pretend_lacks(const char *name) {
    const char *v = getenv("BYOL_FAULT_CPU_LACKS");
    return v && strcmp(v, name) == 0;
}

/* The first instruction set of the build that this CPU lacks, or NULL. __builtin_cpu_supports
 * takes literal names only, hence one line each. */
static const char *first_missing(void) {
    __builtin_cpu_init();
#define NEED(name)                                                                                 \
    if (!__builtin_cpu_supports(name) || pretend_lacks(name)) return name;
#ifdef BYOL_ISA_SSE4_1
    NEED("sse4.1")
#endif
#ifdef BYOL_ISA_SSE4_2
    NEED("sse4.2")
#endif
#ifdef BYOL_ISA_POPCNT
    NEED("popcnt")
#endif
#ifdef BYOL_ISA_AVX
    NEED("avx")
#endif
#ifdef BYOL_ISA_AVX2
    NEED("avx2")
#endif
#ifdef BYOL_ISA_FMA
    NEED("fma")
#endif
#ifdef BYOL_ISA_BMI
    NEED("bmi")
#endif
#ifdef BYOL_ISA_BMI2
    NEED("bmi2")
#endif
#ifdef BYOL_ISA_AVX512F
    NEED("avx512f")
#endif
#ifdef BYOL_ISA_AVX512CD
    NEED("avx512cd")
#endif
#ifdef BYOL_ISA_AVX512BW
    NEED("avx512bw")
#endif
#ifdef BYOL_ISA_AVX512DQ
    NEED("avx512dq")
#endif
#ifdef BYOL_ISA_AVX512VL
    NEED("avx512vl")
#endif
#ifdef BYOL_ISA_AVX512IFMA
    NEED("avx512ifma")
#endif
#ifdef BYOL_ISA_AVX512VBMI
    NEED("avx512vbmi")
#endif
#ifdef BYOL_ISA_AVX512VBMI2
    NEED("avx512vbmi2")
#endif
#ifdef BYOL_ISA_AVX512VNNI
    NEED("avx512vnni")
#endif
#ifdef BYOL_ISA_AVX512BITALG
    NEED("avx512bitalg")
#endif
#ifdef BYOL_ISA_AVX512VPOPCNTDQ
    NEED("avx512vpopcntdq")
#endif
#ifdef BYOL_ISA_AVX512BF16
    NEED("avx512bf16")
#endif
#ifdef BYOL_ISA_AVX512VP2INTERSECT
    NEED("avx512vp2intersect")
#endif
#ifdef BYOL_ISA_GFNI
    NEED("gfni")
#endif
#ifdef BYOL_ISA_VPCLMULQDQ
    NEED("vpclmulqdq")
#endif
    /* VAES, AVX-VNNI and F16C are left out: clang's __builtin_cpu_supports does not know them,
     * and nothing in byol.c makes a compiler emit them */
#undef NEED
    return NULL;
}

/* write(2) only: stdio may not be set up for us yet, and nothing here may need more than the
 * baseline instructions. */
static void say(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        const ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w, n -= (size_t)w;
    }
}

__attribute__((constructor(101))) static void byol_cpu_check(void) {
    const char *missing = first_missing();
    if (!missing) return;
    char upper[32];
    size_t i = 0;
    for (; missing[i] && i < sizeof upper - 1; i++)
        upper[i] = missing[i] >= 'a' && missing[i] <= 'z' ? (char)(missing[i] - 'a' + 'A') : missing[i];
    upper[i] = 0;
    const int avx512 = strncmp(missing, "avx512", 6) == 0;
    say("byol: this binary was built for CPUs with ");
    say(avx512 ? "AVX-512 (" : "");
    say(avx512 ? missing : upper);
    say(avx512 ? ")" : "");
    say(", which this CPU lacks: build it on this machine (make), or a portable binary for every machine "
        "with make NATIVE=0\n");
    _exit(1);
}
#endif
