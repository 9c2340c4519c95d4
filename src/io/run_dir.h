/* A training run's folder (byol train --out DIR): created with a name no other run has, locked
 * so that a second training cannot write into it, and rolled back when a run resumes from an
 * older checkpoint than the folder's newest. */
#ifndef BYOL_RUN_DIR_H
#define BYOL_RUN_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

/* Creates DIR and its parents. With `unique`, a DIR that exists already is not reused: the first
 * free DIR-2, DIR-3, ... is created instead (mkdir is atomic, so two runs started in the same
 * second get two folders) and written back into dir (of capacity cap). */
int run_dir_create(char *dir, size_t cap, int unique, Err *e);

/* An exclusive lock on DIR/.lock (flock), held until run_dir_unlock or the process ends, with
 * the holder's pid written in the file. A second holder is refused in one line naming the
 * first one's pid. */
typedef struct {
    int fd;
} RunLock;
int run_dir_lock(const char *dir, RunLock *lock, Err *e);
void run_dir_unlock(RunLock *lock);

/* Resuming DIR from its checkpoint of `step` when DIR holds newer ones: those belong to a branch
 * the user walked away from. Moves them, and the metrics lines after `step`, into
 * DIR/abandoned-after-<step>[-N]/ (named in aside). Returns how many checkpoints moved (0: none,
 * nothing done), -1 on error. */
int run_dir_set_aside_newer(const char *dir, int64_t step, char *aside, size_t cap, Err *e);

/* Rewrites the metrics file PATH (atomically) without its lines of steps after `step`: a run
 * killed after its last checkpoint had logged steps that the resumed run logs again. The
 * dropped lines are appended to dropped_path when it is not NULL. Returns how many were dropped;
 * a missing file is 0. */
int metrics_drop_after(const char *path, int64_t step, const char *dropped_path, Err *e);

/* The folder a file path is in ("." for a bare name). */
void path_folder(const char *path, char *dir, size_t cap);

#endif
