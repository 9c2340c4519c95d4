#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int err_set(Err *e, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void die(const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "byol: error: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void *xmalloc(size_t bytes, const char *what) {
    void *p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    if (posix_memalign(&p, 64, rounded) != 0 || !p)
        die("out of memory allocating %.1f MiB for %s%s", bytes / 1048576.0, what,
            strchr(what, '(') ? "" : " (lower --batch or the model size)"); /* what may name its own flag */
    return p;
}

void *xcalloc(size_t count, size_t size, const char *what) {
    if (size && count > SIZE_MAX / size) die("allocation size overflow for %s", what);
    void *p = xmalloc(count * size, what);
    memset(p, 0, count * size);
    return p;
}

void xfree(void *p) { free(p); }

int open_regular_file(const char *path, size_t *size, Err *e) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return err_set(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        return err_set(e, "%s: cannot stat: %s", path, strerror(saved));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, "%s: not a regular file", path);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *size = (size_t)st.st_size;
    return fd;
}

uint8_t *read_file(const char *path, size_t *size, Err *e) {
    size_t n;
    int fd = open_regular_file(path, &n, e);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        err_set(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        err_set(e, "%s: out of memory reading %zu bytes", path, n);
        return NULL;
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        err_set(e, "%s: read error", path);
        return NULL;
    }
    fclose(f);
    *size = n;
    return buf;
}

int atomic_open(AtomicFile *af, const char *path, Err *e) {
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path) return err_set(e, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f)
        return err_set(e, "%s: cannot write: %s (check that the folder exists and is writable)",
                       path, strerror(errno));
    return 0;
}

/* Fault injection for tests: BYOL_FAULT_KILL_AFTER_BYTES=N kills the process with SIGKILL once
 * N bytes in all have gone through atomic_write, leaving that file's temporary half written:
 * the crash-in-the-middle-of-a-checkpoint case, at a chosen byte. */
static void fault_kill_point(FILE *f, const void *data, size_t n) {
    static long long budget = -2; /* -2: not read yet; -1: off */
    if (budget == -2) {
        const char *s = getenv("BYOL_FAULT_KILL_AFTER_BYTES");
        budget = s && *s ? atoll(s) : -1;
    }
    if (budget < 0) return;
    if ((long long)n > budget) {
        if (fwrite(data, 1, (size_t)budget, f) == (size_t)budget) fflush(f);
        raise(SIGKILL);
    }
    budget -= (long long)n;
}

int atomic_write(AtomicFile *af, const void *data, size_t n, Err *e) {
    if (af->failed) return -1;
    fault_kill_point(af->f, data, n);
    if (n && fwrite(data, 1, n, af->f) != n) {
        af->failed = 1;
        int saved = errno;
        atomic_abort(af);
        return err_set(e, "%s: write failed: %s", af->path, strerror(saved));
    }
    return 0;
}

static void fsync_dir_of(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int atomic_commit(AtomicFile *af, Err *e) {
    if (af->failed || !af->f) return err_set(e, "%s: write failed earlier", af->path);
    int rc = fflush(af->f);
    if (rc == 0) rc = fsync(fileno(af->f));
    int saved = errno;
    if (fclose(af->f) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    af->f = NULL;
    if (rc != 0) {
        unlink(af->tmp);
        return err_set(e, "%s: write failed: %s (disk full?)", af->path, strerror(saved));
    }
    if (rename(af->tmp, af->path) != 0) {
        saved = errno;
        unlink(af->tmp);
        return err_set(e, "%s: cannot rename temporary file into place: %s", af->path,
                       strerror(saved));
    }
    fsync_dir_of(af->path);
    return 0;
}

void atomic_abort(AtomicFile *af) {
    if (af->f) {
        fclose(af->f);
        af->f = NULL;
    }
    if (af->tmp[0]) unlink(af->tmp);
}

int make_parent_dirs(const char *path, char *failed, size_t cap) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(failed, cap, "%.64s...", path);
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                snprintf(failed, cap, "%s", buf);
                return -1;
            }
            *p = '/';
        }
    return 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int atomic_write_file(const char *path, const void *data, size_t n, Err *e) {
    AtomicFile af;
    int rc = atomic_open(&af, path, e);
    if (rc == 0) rc = atomic_write(&af, data, n, e);
    if (rc == 0) rc = atomic_commit(&af, e);
    return rc;
}
