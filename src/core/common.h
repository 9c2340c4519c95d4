/* Shared helpers: error reporting, checked allocation and file I/O, timing.
 *
 * Two error styles, chosen by who can recover:
 *  - Library code that reads user-supplied data (files, flags) returns an int status and fills an
 *    Err with one complete line (file, value, hint). The CLI prints it and exits non-zero; tests
 *    inspect it.
 *  - Programming errors and resource exhaustion call die(), which prints one line and exits 1. */
#ifndef BYOL_COMMON_H
#define BYOL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus /* src/backend/cuda/ includes this from nvcc's C++ */
#define _Noreturn [[noreturn]]
#endif

typedef struct Err {
    char msg[1024];
} Err;

/* Formats msg into e (if e is non-NULL) and returns -1, so callers can write
 * `return err_set(e, "...")`. */
int err_set(Err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation that names what it was for and how much, so an out-of-memory stop says which flag
 * to lower. Memory is 64-byte aligned (cache line, AVX-512). */
void *xmalloc(size_t bytes, const char *what);
void *xcalloc(size_t count, size_t size, const char *what);
void xfree(void *p);

/* Opens PATH for reading and returns its descriptor (blocking, close-on-exec) with its size in
 * *size, or -1 with e filled. Anything but a regular file is refused: a FIFO or a device named
 * like a data file must be an error, not a read that hangs (it is opened non-blocking for that). */
int open_regular_file(const char *path, size_t *size, Err *e);

/* Reads a whole file into memory. Returns NULL and fills e on failure. */
uint8_t *read_file(const char *path, size_t *size, Err *e);

/* Writes a file atomically: data goes to PATH.tmp.<pid> in the same folder, is fsync'ed, then
 * renamed over PATH, and the folder is fsync'ed. A failure (disk full, no permission) removes
 * the temporary file and leaves any existing PATH untouched. */
typedef struct AtomicFile {
    FILE *f;
    char path[4096];
    char tmp[4200];
    int failed;
} AtomicFile;
int atomic_open(AtomicFile *af, const char *path, Err *e);
int atomic_write(AtomicFile *af, const void *data, size_t n, Err *e);
int atomic_commit(AtomicFile *af, Err *e);  /* closes; on error nothing is left behind */
void atomic_abort(AtomicFile *af);
/* A whole buffer as the file at path, atomically (the three calls above). */
int atomic_write_file(const char *path, const void *data, size_t n, Err *e);

/* Creates the folders above the last '/' of path that do not exist (mkdir -p of its parent).
 * Returns 0, or -1 with errno set and the folder that could not be made in failed (of cap). */
int make_parent_dirs(const char *path, char *failed, size_t cap);

double now_seconds(void);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
