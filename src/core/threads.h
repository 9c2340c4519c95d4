/* Thread control for the two pools the CPU path uses: OpenMP (our kernels) and OpenBLAS (GEMM).
 * Both are set together so `--threads N` means N cores everywhere. */
#ifndef BYOL_THREADS_H
#define BYOL_THREADS_H

/* The cores this process may use, counted once: the CPUs of its affinity mask (taskset,
 * Slurm's or mpirun's binding, docker --cpuset-cpus), capped by its cgroup's CPU quota rounded
 * up (docker --cpus, Slurm, systemd CPUQuota). The default of --threads, --workers and the
 * folder scan's threads. */
int threads_available(void);
int threads_affinity_count(void); /* the CPUs of the affinity mask (online cores if unknown) */
/* The cgroup CPU quota in whole cores, rounded up, the tightest from the process's cgroup (read
 * from ROOT/proc/self/cgroup) up to the top of ROOT/sys/fs/cgroup (v2 cpu.max, v1
 * cpu.cfs_quota_us / cpu.cfs_period_us); 0 when there is none. ROOT is "" but for tests. */
int threads_cgroup_cores(const char *root);
void threads_set(int n);      /* n <= 0: all available cores */
int threads_get(void);
/* e.g. "openmp, OpenBLAS 0.3.21 ..., kernels for Haswell" */
const char *threads_backend_summary(void);
/* Call first in main: where OpenBLAS picked older kernels than the CPU runs (it does not know
 * CPUs newer than itself), re-executes the program once with OPENBLAS_CORETYPE set to the best
 * kernels for the CPU's features (see threads.c). Returns when there is nothing to do. */
void threads_select_blas_core(char **argv);

/* "AMD EPYC (family 25, model 1)": the first CPU's model name, family and model from
 * /proc/cpuinfo ("unknown CPU" elsewhere); a name alone does not tell a Zen 2 from a Zen 3. */
const char *machine_cpu_name(void);

#endif
