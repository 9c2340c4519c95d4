#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT_S */
#include "threads.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifdef BYOL_OMP
#include <omp.h>
#endif
#ifdef BYOL_BLAS
#include <cblas.h>
#endif

static int g_threads = 1;

int threads_affinity_count(void) {
#ifdef __linux__
    /* the mask may be wider than glibc's fixed 1024-CPU set on very large machines */
    for (int ncpu = 1024; ncpu <= 1 << 16; ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set) break;
        const size_t size = CPU_ALLOC_SIZE(ncpu);
        if (sched_getaffinity(0, size, set) == 0) {
            const int n = CPU_COUNT_S(size, set);
            CPU_FREE(set);
            if (n > 0) return n;
            break;
        }
        const int e = errno;
        CPU_FREE(set);
        if (e != EINVAL) break;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The first line of `path` (at most cap - 1 bytes, newline dropped); 0 when it reads. */
static int read_line(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    const int ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    if (!ok) return -1;
    buf[strcspn(buf, "\n")] = 0;
    return 0;
}

/* ceil(quota / period) for a positive quota and period, else 0 (no limit). */
static int quota_cores(long long quota, long long period) {
    if (quota <= 0 || period <= 0) return 0;
    const long long n = (quota + period - 1) / period;
    return n > 1 << 20 ? 1 << 20 : (int)n;
}

/* The limit of one cgroup directory: cgroup v2's cpu.max ("max 100000" or "150000 100000"), or
 * v1's cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us. 0: none, or nothing readable. */
static int dir_limit(const char *dir, int v2) {
    char path[4300], line[128];
    if (strlen(dir) > 4200) return 0; /* no cgroup path is that long */
    if (v2) {
        snprintf(path, sizeof path, "%s/cpu.max", dir);
        if (read_line(path, line, sizeof line) != 0) return 0;
        long long q, p;
        if (strncmp(line, "max", 3) == 0 || sscanf(line, "%lld %lld", &q, &p) != 2) return 0;
        return quota_cores(q, p);
    }
    long long q, p;
    snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
    if (read_line(path, line, sizeof line) != 0 || sscanf(line, "%lld", &q) != 1) return 0;
    snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
    if (read_line(path, line, sizeof line) != 0 || sscanf(line, "%lld", &p) != 1) return 0;
    return quota_cores(q, p);
}

/* The tightest limit from the cgroup `cg` (a path like /a/b) up to the mount `mnt`: a quota set
 * on a parent (a Slurm job above its step, a systemd slice) binds the children too. A container
 * whose /proc/self/cgroup names the host's path finds its own limit at the mount's top. */
static int walk_up(const char *mnt, const char *cg, int v2) {
    char rel[4096];
    snprintf(rel, sizeof rel, "%s", cg);
    int best = 0;
    for (;;) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s%s", mnt, rel);
        const int n = dir_limit(dir, v2);
        if (n > 0 && (best == 0 || n < best)) best = n;
        char *slash = strrchr(rel, '/');
        if (!slash || rel[0] == 0) break;
        *slash = 0;
    }
    return best;
}

/* 1 when the comma-separated list names the controller `name`. */
static int lists(const char *list, const char *name) {
    const size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

int threads_cgroup_cores(const char *root) {
    char path[4200];
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[4200];
    int best = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        /* hierarchy-id:controllers:path; v2's unified hierarchy is "0::/path" */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/') continue;
        *c1 = *c2 = 0;
        const char *controllers = c1 + 1, *cg = c2 + 1;
        if (strcmp(cg, "/") == 0) cg = "";
        int n = 0;
        char mnt[4200];
        if (controllers[0] == 0 && strcmp(line, "0") == 0) {
            snprintf(mnt, sizeof mnt, "%s/sys/fs/cgroup", root);
            n = walk_up(mnt, cg, 1);
        } else if (lists(controllers, "cpu")) {
            /* v1 mounts the controller as /sys/fs/cgroup/cpu,cpuacct (with a cpu link) */
            snprintf(mnt, sizeof mnt, "%s/sys/fs/cgroup/%s", root, controllers);
            n = walk_up(mnt, cg, 0);
            if (n == 0) {
                snprintf(mnt, sizeof mnt, "%s/sys/fs/cgroup/cpu", root);
                n = walk_up(mnt, cg, 0);
            }
        }
        if (n > 0 && (best == 0 || n < best)) best = n;
    }
    fclose(f);
    return best;
}

static int g_available;
static pthread_once_t g_available_once = PTHREAD_ONCE_INIT;

static void count_available(void) {
    int n = threads_affinity_count();
    const int quota = threads_cgroup_cores("");
    if (quota > 0 && quota < n) n = quota;
    g_available = n > 0 ? n : 1;
}

/* Counted once: kernels size per-thread buffers by it when they are planned and clamp their
 * teams to it when they run, so it must not change in between. */
int threads_available(void) {
    pthread_once(&g_available_once, count_available);
    return g_available;
}

void threads_set(int n) {
    if (n <= 0) n = threads_available();
    g_threads = n;
#ifdef BYOL_OMP
    omp_set_num_threads(n);
#endif
#ifdef BYOL_BLAS
    openblas_set_num_threads(n);
#endif
}

int threads_get(void) { return g_threads; }

const char *threads_backend_summary(void) {
    static char buf[320];
#ifdef BYOL_BLAS
    const char *blas = openblas_get_config();
#else
    const char *blas = "built-in gemm (no BLAS)";
#endif
#ifdef BYOL_OMP
    const char *omp = "openmp";
#else
    const char *omp = "no openmp";
#endif
#ifdef BYOL_BLAS
    const char *was = getenv("BYOL_BLAS_CORE_PICKED");
    char why[96] = "";
    if (was) snprintf(why, sizeof why, " (chosen by byol.c: OpenBLAS picked %.40s for this CPU)", was);
    snprintf(buf, sizeof buf, "%s, %s, kernels for %s%s", omp, blas, openblas_get_corename(), why);
#else
    snprintf(buf, sizeof buf, "%s, %s", omp, blas);
#endif
    return buf;
}


#if defined(BYOL_BLAS) && defined(__x86_64__) && defined(__GNUC__)
/* 1: SSE/AVX-era kernels, 2: AVX2+FMA kernels, 3: AVX-512 kernels (OpenBLAS 0.3.21's names). */
static int blas_core_rank(const char *core) {
    static const char *avx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
    static const char *avx2[] = {"haswell", "zen"};
    for (size_t i = 0; i < sizeof avx512 / sizeof avx512[0]; i++)
        if (strcasecmp(core, avx512[i]) == 0) return 3;
    for (size_t i = 0; i < sizeof avx2 / sizeof avx2[0]; i++)
        if (strcasecmp(core, avx2[i]) == 0) return 2;
    return 1;
}
#endif

/* OpenBLAS 0.3.21 (Debian 12) picks its kernels from the CPU model number and falls back to old
 * ones on CPUs newer than itself: on an Intel Xeon of family 6 model 207 (Emerald Rapids, full
 * AVX-512) it picks "Prescott" (SSE3), and a convolution-shaped SGEMM ran 34-55 GFLOP/s there
 * instead of 164-189 with its SkylakeX kernels (2 threads, byol bench); on AMD's Zen 5 it picked
 * Haswell (AVX2), 1.6x slower than SkylakeX. The kernels are chosen when the library loads,
 * before main, so the only supported switch is the OPENBLAS_CORETYPE variable: set it from the
 * CPU's own feature flags and execute this program again, once. A user who sets
 * OPENBLAS_CORETYPE decides for themselves (and the re-executed program sees it set). */
void threads_select_blas_core(char **argv) {
#if defined(BYOL_BLAS) && defined(__x86_64__) && defined(__GNUC__)
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = openblas_get_corename();
    if (!core) return;
    __builtin_cpu_init();
    const char *best = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        best = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        best = "Haswell";
    if (!best || blas_core_rank(core) >= blas_core_rank(best)) return;
    if (setenv("OPENBLAS_CORETYPE", best, 1) != 0 || setenv("BYOL_BLAS_CORE_PICKED", core, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the kernels OpenBLAS chose */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("BYOL_BLAS_CORE_PICKED");
#else
    (void)argv;
#endif
}

/* "AMD EPYC (family 25, model 1)": the CPU's name alone does not tell a Zen 2 from a Zen 3 in a
 * virtual machine. */
const char *machine_cpu_name(void) {
    static char name[320];
    if (name[0]) return name;
    char model[256] = "unknown CPU";
    int family = -1, cpu_model = -1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[1024];
        int got_name = 0;
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (!colon) {
                if (got_name) break; /* the first processor's block ends */
                continue;
            }
            const char *v = colon + 1 + (colon[1] == ' ');
            if (!got_name && strncmp(line, "model name", 10) == 0) {
                snprintf(model, sizeof model, "%.*s", (int)strcspn(v, "\n"), v);
                got_name = 1;
            } else if (family < 0 && strncmp(line, "cpu family", 10) == 0) {
                family = atoi(v);
            } else if (cpu_model < 0 && strncmp(line, "model\t", 6) == 0) {
                cpu_model = atoi(v);
            }
        }
        fclose(f);
    }
    snprintf(name, sizeof name, "%s (family %d, model %d)", model, family, cpu_model);
    return name;
}
