#include "run_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"

static int make_dirs(const char *dir, Err *e) {
    if (strlen(dir) >= 4096) return err_set(e, "--out %.80s...: path too long", dir);
    char failed[4096];
    if (make_parent_dirs(dir, failed, sizeof failed))
        return err_set(e, "--out %s: cannot create %s: %s", dir, failed, strerror(errno));
    return 0;
}

int run_dir_create(char *dir, size_t cap, int unique, Err *e) {
    if (make_dirs(dir, e)) return -1;
    char base[4096];
    snprintf(base, sizeof base, "%s", dir);
    for (int n = 1; n < 10000; n++) {
        if (n > 1 && snprintf(dir, cap, "%s-%d", base, n) >= (int)cap) return err_set(e, "--out %s: path too long", base);
        if (mkdir(dir, 0755) == 0) break;
        if (errno != EEXIST) return err_set(e, "--out %s: cannot create the folder: %s", dir, strerror(errno));
        struct stat st;
        if (!unique) {
            if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return err_set(e, "--out %s: exists and is not a folder", dir);
            break;
        }
    }
    if (access(dir, W_OK) != 0) return err_set(e, "--out %s: folder is not writable", dir);
    return 0;
}

int run_dir_lock(const char *dir, RunLock *lock, Err *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", dir);
    lock->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock->fd < 0) return err_set(e, "%s: cannot create the run's lock file: %s", path, strerror(errno));
    if (flock(lock->fd, LOCK_EX | LOCK_NB) != 0) {
        const int why = errno;
        char holder[32] = "";
        ssize_t got = pread(lock->fd, holder, sizeof holder - 1, 0);
        holder[got > 0 ? got : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        close(lock->fd);
        lock->fd = -1;
        if (why == EWOULDBLOCK)
            return err_set(e, "--out %s is in use by another byol train (pid %s): wait for it to end, or choose another --out",
                           dir, *holder ? holder : "unknown");
        return err_set(e, "%s: cannot lock: %s", path, strerror(why));
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(lock->fd, 0) != 0 || pwrite(lock->fd, pid, (size_t)len, 0) != len) {
        const int why = errno;
        run_dir_unlock(lock);
        return err_set(e, "%s: cannot write: %s", path, strerror(why));
    }
    return 0;
}

void run_dir_unlock(RunLock *lock) {
    if (lock->fd >= 0) close(lock->fd); /* closing the descriptor releases the flock */
    lock->fd = -1;
}

/* The step of a metrics line ({"step": N, ...}), -1 for a line that names none. */
static long long line_step(const char *line) {
    long long s;
    return sscanf(line, "{\"step\": %lld", &s) == 1 ? s : -1;
}

int metrics_drop_after(const char *path, int64_t step, const char *dropped_path, Err *e) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    size_t size;
    uint8_t *text = read_file(path, &size, e);
    if (!text) return -1;
    AtomicFile kept;
    if (atomic_open(&kept, path, e)) {
        free(text);
        return -1;
    }
    FILE *dropped = NULL;
    int n_dropped = 0, rc = 0;
    for (size_t at = 0; at < size && rc == 0;) {
        const uint8_t *nl = memchr(text + at, '\n', size - at);
        const size_t len = nl ? (size_t)(nl - (text + at)) + 1 : size - at;
        char head[64];
        snprintf(head, sizeof head, "%.*s", (int)(len < sizeof head - 1 ? len : sizeof head - 1), (const char *)text + at);
        if (line_step(head) > step) {
            n_dropped++;
            if (dropped_path && !dropped && !(dropped = fopen(dropped_path, "a")))
                rc = err_set(e, "%s: cannot write: %s", dropped_path, strerror(errno));
            else if (dropped && fwrite(text + at, 1, len, dropped) != len)
                rc = err_set(e, "%s: cannot write: %s", dropped_path, strerror(errno));
        } else {
            rc = atomic_write(&kept, text + at, len, e);
        }
        at += len;
    }
    free(text);
    if (dropped && fclose(dropped) != 0 && rc == 0) rc = err_set(e, "%s: cannot write: %s", dropped_path, strerror(errno));
    if (rc) {
        atomic_abort(&kept);
        return -1;
    }
    return atomic_commit(&kept, e) ? -1 : n_dropped;
}

int run_dir_set_aside_newer(const char *dir, int64_t step, char *aside, size_t cap, Err *e) {
    int n;
    long long *steps = ckpt_list_steps(dir, &n);
    int newer = 0;
    for (int i = 0; i < n; i++) newer += steps[i] > step;
    if (!newer) {
        free(steps);
        return 0;
    }
    snprintf(aside, cap, "%s/abandoned-after-%lld", dir, (long long)step);
    if (run_dir_create(aside, cap, 1, e)) {
        free(steps);
        return -1;
    }
    int moved = 0;
    for (int i = 0; i < n; i++) {
        if (steps[i] <= step) continue;
        char from[4400], to[4400];
        snprintf(from, sizeof from, "%s/ckpt-%09lld.safetensors", dir, steps[i]);
        snprintf(to, sizeof to, "%s/ckpt-%09lld.safetensors", aside, steps[i]);
        if (rename(from, to) != 0) {
            free(steps);
            return err_set(e, "%s: cannot move it to %s: %s", from, aside, strerror(errno));
        }
        moved++;
    }
    free(steps);
    char metrics[4400], dropped[4400];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    snprintf(dropped, sizeof dropped, "%s/metrics.jsonl", aside);
    return metrics_drop_after(metrics, step, dropped, e) < 0 ? -1 : moved;
}

/* The folder a file path is in ("." for a bare name). */
void path_folder(const char *path, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, cap, ".");
}
