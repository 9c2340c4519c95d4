/* The default thread counts follow what the process may use: its CPU affinity mask (taskset,
 * Slurm, mpirun's binding) and its cgroup CPU quota (docker --cpus), read here from generated
 * cgroup v1 and v2 trees; and `taskset -c 0 byol` defaults to one thread and one worker. */
#define _GNU_SOURCE /* sched_setaffinity */
#include <sched.h>

#include "harness.h"
#include "core/threads.h"
#include "data/loader.h"
#include "dist/dist.h"

/* Writes TEST_TMP/<root>/<rel> with `text`, making the directories on the way. */
static void put(const char *root, const char *rel, const char *text) {
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s/%s/%s')\"", TEST_TMP, root, rel);
    if (sh_status(cmd) != 0) {
        printf("FATAL %s\n", cmd);
        exit(2);
    }
    char path[1600];
    snprintf(path, sizeof path, "%s/%s/%s", TEST_TMP, root, rel);
    write_bytes(path, text, strlen(text));
}

static int quota_of(const char *root) {
    char r[1300];
    snprintf(r, sizeof r, "%s/%s", TEST_TMP, root);
    return threads_cgroup_cores(r);
}

static void test_cgroup_v2_quota(void) {
    /* 1.5 cores rounds up to 2 */
    put("v2a", "proc/self/cgroup", "0::/user.slice/job\n");
    put("v2a", "sys/fs/cgroup/user.slice/job/cpu.max", "150000 100000\n");
    CHECK(quota_of("v2a") == 2, "cpu.max 150000 100000: %d cores (2)", quota_of("v2a"));
    /* a tighter parent binds the child; "max" is no limit */
    put("v2b", "proc/self/cgroup", "0::/slurm/job7/step0\n");
    put("v2b", "sys/fs/cgroup/slurm/job7/step0/cpu.max", "max 100000\n");
    put("v2b", "sys/fs/cgroup/slurm/job7/cpu.max", "300000 100000\n");
    put("v2b", "sys/fs/cgroup/slurm/cpu.max", "800000 100000\n");
    CHECK(quota_of("v2b") == 3, "the parent's 3 cores bind the step: %d", quota_of("v2b"));
    put("v2c", "proc/self/cgroup", "0::/a\n");
    put("v2c", "sys/fs/cgroup/a/cpu.max", "max 100000\n");
    CHECK(quota_of("v2c") == 0, "cpu.max max: no quota, got %d", quota_of("v2c"));
    /* a container shows the host's path but mounts its own cgroup at the top (docker --cpus 2.5) */
    put("v2d", "proc/self/cgroup", "0::/system.slice/docker-0123abcd.scope\n");
    put("v2d", "sys/fs/cgroup/cpu.max", "250000 100000\n");
    CHECK(quota_of("v2d") == 3, "docker --cpus 2.5: %d cores (3)", quota_of("v2d"));
    /* a quota below one period still leaves one core */
    put("v2e", "proc/self/cgroup", "0::/\n");
    put("v2e", "sys/fs/cgroup/cpu.max", "20000 100000\n");
    CHECK(quota_of("v2e") == 1, "0.2 cores: %d (1)", quota_of("v2e"));
    put("v2f", "proc/self/cgroup", "0::/x\n");
    put("v2f", "sys/fs/cgroup/x/cpu.max", "garbage\n");
    CHECK(quota_of("v2f") == 0, "an unreadable cpu.max is no quota: %d", quota_of("v2f"));
    CHECK(quota_of("nothing-here") == 0, "no /proc/self/cgroup: %d", quota_of("nothing-here"));
}

static void test_cgroup_v1_quota(void) {
    put("v1a", "proc/self/cgroup", "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n");
    put("v1a", "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "400000\n");
    put("v1a", "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    CHECK(quota_of("v1a") == 4, "cfs 400000/100000: %d cores (4)", quota_of("v1a"));
    /* -1: no quota here, but the parent has one */
    put("v1b", "proc/self/cgroup", "3:cpuacct,cpu:/slurm/uid_0/job_9\n");
    put("v1b", "sys/fs/cgroup/cpuacct,cpu/slurm/uid_0/job_9/cpu.cfs_quota_us", "-1\n");
    put("v1b", "sys/fs/cgroup/cpuacct,cpu/slurm/uid_0/job_9/cpu.cfs_period_us", "100000\n");
    put("v1b", "sys/fs/cgroup/cpuacct,cpu/slurm/uid_0/cpu.cfs_quota_us", "50000\n");
    put("v1b", "sys/fs/cgroup/cpuacct,cpu/slurm/uid_0/cpu.cfs_period_us", "10000\n");
    CHECK(quota_of("v1b") == 5, "the parent's 50000/10000: %d cores (5)", quota_of("v1b"));
    /* the controller mounted as plain "cpu", and a cpuacct-only line that must not count */
    put("v1c", "proc/self/cgroup", "2:cpuacct:/\n1:cpu:/\n");
    put("v1c", "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "150000\n");
    put("v1c", "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    put("v1c", "sys/fs/cgroup/cpuacct/cpu.cfs_quota_us", "100000\n");
    put("v1c", "sys/fs/cgroup/cpuacct/cpu.cfs_period_us", "100000\n");
    CHECK(quota_of("v1c") == 2, "cpu mount, 1.5 cores: %d (2)", quota_of("v1c"));
    put("v1d", "proc/self/cgroup", "1:cpu:/\n");
    put("v1d", "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
    put("v1d", "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    CHECK(quota_of("v1d") == 0, "cfs quota -1: no quota, got %d", quota_of("v1d"));
}

/* In a child pinned to one CPU: every default is 1 (the counts are taken once per process, so
 * the pinning comes first). */
static void test_defaults_follow_the_affinity_mask(void) {
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid < 0) return;
    if (pid == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        cpu_set_t mine;
        if (sched_getaffinity(0, sizeof mine, &mine) != 0) _exit(10);
        int first = -1;
        for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
            if (CPU_ISSET(c, &mine)) first = c;
        CPU_SET(first, &one);
        if (sched_setaffinity(0, sizeof one, &one) != 0) _exit(11);
        if (threads_affinity_count() != 1) _exit(12);
        if (threads_available() != 1) _exit(13);
        if (dist_default_threads() != 1) _exit(14);
        if (loader_default_workers() != 1) _exit(15);
        _exit(0);
    }
    int ws = 0;
    waitpid(pid, &ws, 0);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
          "pinned to one CPU: exit %d (12: affinity count, 13: available, 14: --threads, 15: --workers not 1)",
          WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    const int n = threads_available(), aff = threads_affinity_count();
    CHECK(n >= 1 && n <= aff, "unpinned: %d available of an affinity mask of %d", n, aff);
}

/* End to end: byol --version reports the defaults it would use. */
static void test_taskset_one_core(void) {
    if (sh_status("command -v taskset > /dev/null") != 0) {
        printf("     (no taskset: skipped)\n");
        return;
    }
    const char *byol = getenv("BYOL") ? getenv("BYOL") : "./byol";
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "taskset -c \"$(taskset -pc $$ | sed 's/.*: *//; s/[,-].*//')\" %s --version > %s/version",
             byol, TEST_TMP);
    CHECK(sh_status(cmd) == 0, "%s", cmd);
    char *v = slurp_text("version");
    CHECK(strstr(v, "cores: 1 available (affinity mask 1,") && strstr(v, "defaults --threads 1, --workers 1"),
          "taskset to one CPU: %s", v);
    free(v);
}

int main(void) {
    test_tmpdir("test_threads");
    RUN(test_cgroup_v2_quota);
    RUN(test_cgroup_v1_quota);
    RUN(test_defaults_follow_the_affinity_mask);
    RUN(test_taskset_one_core);
    return test_finish();
}
