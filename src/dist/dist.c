/* Data-parallel training over MPI: see dist.h. Without BYOL_MPI every function is the one-process
 * case. Only the main thread calls MPI (MPI_THREAD_FUNNELED): loader workers and OpenMP threads
 * never do. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_AND */
#include "dist.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/common.h"
#include "../core/threads.h"

#ifdef BYOL_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_local_size = 1;
/* The ranks on this node whose affinity masks share a CPU with this one's (itself included):
 * all of them when they run unbound, 1 when mpirun or Slurm bound each to its own cores. */
static int g_local_sharers = 1;
static double g_timeout = 300.0;
static DistWait g_wait; /* seconds blocked in the batch-norm reducer and in gradsync_finish */

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
int dist_enabled(void) { return g_size > 1; }

/* Ranks bound to cores of their own (Open MPI binds to a core up to 2 ranks, Slurm to the
 * task's CPUs) already see their share in the affinity mask; ranks that share CPUs split them.
 * The cgroup quota (a container, a Slurm job) is one for all the node's ranks. */
int dist_default_threads(void) {
    int n = threads_affinity_count() / (g_local_sharers > 0 ? g_local_sharers : 1);
    const int quota = threads_cgroup_cores("");
    if (quota > 0) {
        const int share = quota / (g_local_size > 0 ? g_local_size : 1);
        if (share < n) n = share;
    }
    return n > 0 ? n : 1;
}
void dist_set_timeout(double seconds) { g_timeout = seconds > 0 ? seconds : 300.0; }

DistWait dist_wait_seconds(int reset) {
    DistWait w = g_wait;
    if (reset) g_wait.bn = g_wait.grads = 0;
    return w;
}

#ifndef BYOL_MPI

void dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (getenv("OMPI_COMM_WORLD_SIZE") && atoi(getenv("OMPI_COMM_WORLD_SIZE")) > 1)
        die("started by mpirun with %s ranks, but this byol was built without MPI: install "
            "libopenmpi-dev and rebuild (make), or run one process",
            getenv("OMPI_COMM_WORLD_SIZE"));
}
void dist_finalize(void) {}
const char *dist_summary(void) { return "no MPI in this build"; }
void dist_heartbeat(int64_t step) { (void)step; }
void dist_allreduce_sum_f64(double *buf, int n, const char *what) { (void)buf, (void)n, (void)what; }
double dist_allreduce_max(double x, const char *what) { return (void)what, x; }
void dist_allreduce_max_f64(double *buf, int n, const char *what) { (void)buf, (void)n, (void)what; }
void dist_broadcast(void *buf, size_t bytes, int root, const char *what) {
    (void)buf, (void)bytes, (void)root, (void)what;
}
void dist_check_identical(const float *params, size_t n, int64_t step) { (void)params, (void)n, (void)step; }
const Reducer *dist_bn_reducer(void) { return NULL; }

struct GradSync {
    int unused;
};
GradSync *gradsync_create(float *grads, size_t n, size_t bucket_floats) {
    (void)grads, (void)n, (void)bucket_floats;
    return NULL;
}
void gradsync_destroy(GradSync *g) { (void)g; }
void gradsync_begin(GradSync *g) { (void)g; }
void gradsync_ready(GradSync *g, size_t from) { (void)g, (void)from; }
void gradsync_finish(GradSync *g) { (void)g; }

#else /* BYOL_MPI */

enum { TAG_HEARTBEAT = 7701 };

static MPI_Comm g_comm = MPI_COMM_NULL;
static int g_mpi_started = 0;
/* Heartbeats: the last step each rank announced and when we last heard from it, and our sends
 * in flight (one per peer). A rank sends one at the start of every step and, while it waits in
 * a collective, every second: a rank that hangs or stopped falls silent. */
static int64_t *g_last_step, g_my_step = -1;
static double *g_last_heard;
static int64_t *g_send_buf;
static MPI_Request *g_send_req;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int under_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") ||
           getenv("MPI_LOCALNRANKS");
}

/* g_local_sharers from every local rank's affinity mask (a full mask where it cannot be read). */
static void count_local_sharers(MPI_Comm node) {
    cpu_set_t mine;
    CPU_ZERO(&mine);
    if (sched_getaffinity(0, sizeof mine, &mine) != 0)
        for (int c = 0; c < CPU_SETSIZE; c++) CPU_SET(c, &mine);
    cpu_set_t *all = xmalloc((size_t)g_local_size * sizeof *all, "the ranks' CPU masks");
    if (MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, node) != MPI_SUCCESS) {
        xfree(all);
        g_local_sharers = g_local_size; /* assume they share */
        return;
    }
    g_local_sharers = 0;
    for (int q = 0; q < g_local_size; q++) {
        cpu_set_t both;
        CPU_AND(&both, &mine, &all[q]);
        if (CPU_COUNT(&both) > 0) g_local_sharers++;
    }
    if (g_local_sharers < 1) g_local_sharers = 1;
    xfree(all);
}

void dist_init(int *argc, char ***argv) {
    if (!under_mpirun()) return;
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        die("MPI_Init failed: is this run started by mpirun?");
    g_mpi_started = 1;
    MPI_Comm_dup(MPI_COMM_WORLD, &g_comm);
    MPI_Comm_rank(g_comm, &g_rank);
    MPI_Comm_size(g_comm, &g_size);
    MPI_Comm node;
    MPI_Comm_split_type(g_comm, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &g_local_size);
    count_local_sharers(node);
    MPI_Comm_free(&node);
    g_last_step = xcalloc((size_t)g_size, sizeof(int64_t), "heartbeats");
    g_last_heard = xcalloc((size_t)g_size, sizeof(double), "heartbeats");
    g_send_buf = xcalloc((size_t)g_size, sizeof(int64_t), "heartbeats");
    g_send_req = xmalloc((size_t)g_size * sizeof(MPI_Request), "heartbeats");
    const double t = now();
    for (int q = 0; q < g_size; q++) g_last_step[q] = -1, g_last_heard[q] = t, g_send_req[q] = MPI_REQUEST_NULL;
    /* rank 0 alone prints and logs; errors still reach stderr from every rank */
    if (g_rank > 0 && !freopen("/dev/null", "w", stdout)) die("rank %d: cannot silence stdout", g_rank);
}

static void drain_heartbeats(void) {
    if (g_size < 2) return;
    for (;;) {
        int flag;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_HEARTBEAT, g_comm, &flag, &st);
        if (!flag) return;
        int64_t s;
        MPI_Recv(&s, 1, MPI_INT64_T, st.MPI_SOURCE, TAG_HEARTBEAT, g_comm, MPI_STATUS_IGNORE);
        if (s > g_last_step[st.MPI_SOURCE]) g_last_step[st.MPI_SOURCE] = s;
        g_last_heard[st.MPI_SOURCE] = now();
    }
}

void dist_finalize(void) {
    if (!g_mpi_started) return;
    MPI_Barrier(g_comm);
    drain_heartbeats();
    for (int q = 0; q < g_size; q++)
        if (g_send_req[q] != MPI_REQUEST_NULL) MPI_Request_free(&g_send_req[q]);
    MPI_Comm_free(&g_comm);
    MPI_Finalize();
    g_mpi_started = 0;
    xfree(g_last_step), xfree(g_last_heard), xfree(g_send_buf), xfree(g_send_req);
}

const char *dist_summary(void) {
    static char buf[160];
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(lib, &len);
    char *nl = strchr(lib, ',');
    if (nl) *nl = 0;
    snprintf(buf, sizeof buf, "MPI (%.140s)", lib);
    return buf;
}

static void send_heartbeats(void) {
    for (int q = 0; q < g_size; q++) {
        if (q == g_rank) continue;
        int done = 1;
        if (g_send_req[q] != MPI_REQUEST_NULL) MPI_Test(&g_send_req[q], &done, MPI_STATUS_IGNORE);
        if (!done) continue; /* the peer has not taken the last one: do not pile up */
        g_send_buf[q] = g_my_step;
        MPI_Isend(&g_send_buf[q], 1, MPI_INT64_T, q, TAG_HEARTBEAT, g_comm, &g_send_req[q]);
    }
    drain_heartbeats();
}

void dist_heartbeat(int64_t step) {
    g_my_step = step;
    if (g_size < 2) return;
    g_last_step[g_rank] = step;
    send_heartbeats();
}

/* Exits the whole job (every rank) with status 1 after printing msg with this rank's number. */
_Noreturn static void dist_abort(const char *msg) {
    fprintf(stderr, "byol: rank %d of %d: %s\n", g_rank, g_size, msg);
    fflush(stderr);
    if (g_mpi_started) MPI_Abort(g_comm, 1);
    exit(1);
}

/* A collective did not complete in time: name the ranks we have not heard from for half the
 * wait (they hang, stopped or died), or else those whose step lags ours. */
_Noreturn static void timed_out(const char *what, double waited) {
    drain_heartbeats();
    char who[512] = "";
    size_t at = 0;
    const double t = now();
    for (int pass = 0; pass < 2 && !at; pass++)
        for (int q = 0; q < g_size && at < sizeof who - 80; q++) {
            if (q == g_rank) continue;
            const int silent = t - g_last_heard[q] > 0.5 * waited, behind = g_last_step[q] < g_my_step;
            if (!(pass == 0 ? silent : behind)) continue;
            if (g_last_step[q] < 0)
                at += (size_t)snprintf(who + at, sizeof who - at, "%srank %d (never started a step)", at ? ", " : "", q);
            else
                at += (size_t)snprintf(who + at, sizeof who - at, "%srank %d (last heard at step %lld, %.0f s ago)",
                                       at ? ", " : "", q, (long long)g_last_step[q], t - g_last_heard[q]);
        }
    char msg[900];
    snprintf(msg, sizeof msg,
             "no progress from %s for %.0f s while waiting in %s at step %lld: a rank died or hangs; "
             "stopping all ranks (the last checkpoint is intact: resume with --resume)",
             at ? who : "another rank", waited, what, (long long)g_my_step);
    dist_abort(msg);
}

/* Waits for `req` with the deadline, serving heartbeats; spins briefly first (batch-norm
 * reductions are a few microseconds), then sleeps in growing steps. */
static void wait_request(MPI_Request *req, const char *what) {
    const double t0 = now();
    double last_beat = t0;
    int done = 0;
    for (long spins = 0; !done; spins++) {
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done) break;
        if (spins > 2000) {
            const double t = now(), waited = t - t0;
            if (waited > g_timeout) timed_out(what, waited);
            if (t - last_beat > 1.0) { /* still alive, still waiting */
                send_heartbeats();
                last_beat = t;
            } else if ((spins & 63) == 0) {
                drain_heartbeats();
            }
            usleep(spins > 20000 ? 1000 : 20);
        }
    }
}

void dist_allreduce_sum_f64(double *buf, int n, const char *what) {
    if (g_size < 2) return;
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, g_comm, &r);
    wait_request(&r, what);
}

void dist_allreduce_max_f64(double *buf, int n, const char *what) {
    if (g_size < 2) return;
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_MAX, g_comm, &r);
    wait_request(&r, what);
}

double dist_allreduce_max(double x, const char *what) {
    dist_allreduce_max_f64(&x, 1, what);
    return x;
}

void dist_broadcast(void *buf, size_t bytes, int root, const char *what) {
    if (g_size < 2) return;
    for (size_t at = 0; at < bytes;) {
        int c = (int)MIN(bytes - at, (size_t)1 << 30);
        MPI_Request r;
        MPI_Ibcast((char *)buf + at, c, MPI_BYTE, root, g_comm, &r);
        wait_request(&r, what);
        at += (size_t)c;
    }
}

void dist_check_identical(const float *params, size_t n, int64_t step) {
    if (g_size < 2) return;
    /* FNV-1a over the bits, then the minimum and maximum over ranks must agree. */
    uint64_t h = 1469598103934665603ull;
    const uint32_t *bits = (const uint32_t *)params;
    for (size_t i = 0; i < n; i++) h = (h ^ bits[i]) * 1099511628211ull;
    uint64_t lo = h, hi = h;
    MPI_Request r[2];
    MPI_Iallreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, g_comm, &r[0]);
    MPI_Iallreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, g_comm, &r[1]);
    wait_request(&r[0], "the parameter check");
    wait_request(&r[1], "the parameter check");
    if (lo != hi) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "step %lld: the parameters differ between ranks (checksum %016llx here, range %016llx..%016llx): "
                 "the ranks no longer train the same model; check that every rank runs the same byol build",
                 (long long)step, (unsigned long long)h, (unsigned long long)lo, (unsigned long long)hi);
        dist_abort(msg);
    }
}

static void bn_sum(const Reducer *r, double *v, int n) {
    (void)r;
    double t0 = now();
    dist_allreduce_sum_f64(v, n, "a synchronized batch norm");
    g_wait.bn += now() - t0;
}

const Reducer *dist_bn_reducer(void) {
    static const Reducer red = {bn_sum, NULL};
    return g_size < 2 ? NULL : &red;
}

struct GradSync {
    float *grads;
    size_t n, bucket, pending_hi;
    MPI_Request *req;
    int n_req, cap_req;
};

GradSync *gradsync_create(float *grads, size_t n, size_t bucket_floats) {
    if (g_size < 2) return NULL;
    GradSync *g = xcalloc(1, sizeof *g, "gradient all-reduce");
    g->grads = grads;
    g->n = n;
    g->bucket = bucket_floats > 0 ? bucket_floats : n;
    /* a bucket per `bucket` floats or less, each split at 2^30 floats (MPI counts are int) */
    g->cap_req = (int)(n / g->bucket + n / ((size_t)1 << 30)) + 4;
    g->req = xmalloc((size_t)g->cap_req * sizeof(MPI_Request), "gradient all-reduce");
    g->pending_hi = n;
    return g;
}

void gradsync_destroy(GradSync *g) {
    if (!g) return;
    xfree(g->req);
    xfree(g);
}

void gradsync_begin(GradSync *g) {
    if (!g) return;
    g->pending_hi = g->n;
    g->n_req = 0;
}

static void start_bucket(GradSync *g, size_t lo, size_t hi) {
    for (size_t at = lo; at < hi;) {
        int c = (int)MIN(hi - at, (size_t)1 << 30);
        if (g->n_req == g->cap_req) die("gradient all-reduce: more buckets than planned (%d)", g->cap_req);
        MPI_Iallreduce(MPI_IN_PLACE, g->grads + at, c, MPI_FLOAT, MPI_SUM, g_comm, &g->req[g->n_req++]);
        at += (size_t)c;
    }
}

void gradsync_ready(GradSync *g, size_t from) {
    if (!g || from >= g->pending_hi) return;
    if (g->pending_hi - from >= g->bucket) {
        start_bucket(g, from, g->pending_hi);
        g->pending_hi = from;
    }
    /* let the library move the buckets in flight along */
    int flag;
    if (g->n_req) MPI_Testall(g->n_req, g->req, &flag, MPI_STATUSES_IGNORE);
}

void gradsync_finish(GradSync *g) {
    if (!g) return;
    if (g->pending_hi > 0) start_bucket(g, 0, g->pending_hi);
    g->pending_hi = 0;
    double t0 = now();
    for (int i = 0; i < g->n_req; i++) wait_request(&g->req[i], "the gradient all-reduce");
    g_wait.grads += now() - t0;
    g->n_req = 0;
    const float inv = 1.0f / (float)g_size;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < g->n; i++) g->grads[i] *= inv;
}

#endif /* BYOL_MPI */
