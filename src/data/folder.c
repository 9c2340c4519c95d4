/* Image folders in torchvision's ImageFolder layout:
 *
 *   ROOT/train/<class>/.../<image>   and optionally ROOT/test/<class>/... (or ROOT/val/...)
 *   ROOT/<class>/.../<image>         (no ROOT/train: ROOT is the train split)
 *   ROOT/<image>                     (no class folders: unlabeled, labels -1)
 *
 * where <image> is a file named *.jpg, *.jpeg or *.png (any case).
 *
 * Classes are the train split's subfolders sorted by name (byte order, as Python's sorted());
 * the files of a class are found recursively and ordered as ImageFolder orders them (by folder
 * path, then by file name). Hidden entries (".name") and other extensions are ignored. Every
 * candidate's header is probed (not decoded; in parallel, since ImageNet has 1.3 M files); a
 * file that fails is skipped with one warning and listed in ds->skipped. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/threads.h"
#include "dataset.h"

enum { MAX_DEPTH = 32, PROBE_CHUNK = 64, MAX_PROBE_THREADS = 16 };

typedef struct {
    char *path;    /* folder + "/" + name, malloc'ed */
    size_t dirlen; /* length of the folder part */
    int32_t label;
    int w, h, c;   /* probe results */
    char *err;     /* probe failure ("path: reason"), malloc'ed, or NULL */
} FEnt;

typedef struct {
    FEnt *v;
    size_t n, cap;
} FList;

typedef struct {
    char **v;
    size_t n, cap;
} SList;

static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(p, c * elem);
    if (!q) die("out of memory listing an image folder (%zu entries)", need);
    *cap = c;
    return q;
}

static char *xstrdup_local(const char *s) {
    char *p = strdup(s);
    if (!p) die("out of memory listing an image folder");
    return p;
}

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) die("out of memory listing an image folder");
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static void slist_push(SList *l, char *s) {
    l->v = grow(l->v, &l->cap, l->n + 1, sizeof *l->v);
    l->v[l->n++] = s;
}

static void slist_free(SList *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static void flist_push(FList *l, char *path, size_t dirlen, int32_t label) {
    l->v = grow(l->v, &l->cap, l->n + 1, sizeof *l->v);
    l->v[l->n++] = (FEnt){.path = path, .dirlen = dirlen, .label = label};
}

static void flist_free(FList *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].err);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 || strcasecmp(dot, ".png") == 0;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ImageFolder's order: sorted(os.walk(...)) by folder path, then sorted file names. */
static int cmp_fent(const void *pa, const void *pb) {
    const FEnt *a = pa, *b = pb;
    size_t m = MIN(a->dirlen, b->dirlen);
    int r = memcmp(a->path, b->path, m);
    if (r) return r;
    if (a->dirlen != b->dirlen) return a->dirlen < b->dirlen ? -1 : 1;
    return strcmp(a->path + a->dirlen + 1, b->path + b->dirlen + 1);
}

/* Lists `dir`: non-hidden subfolders into dirs (full paths, if dirs), image files into files
 * (with `label`, if files). */
static int list_dir(const char *dir, SList *dirs, FList *files, int32_t label, Err *e) {
    DIR *d = opendir(dir);
    if (!d) return err_set(e, "%s: cannot open folder: %s (check --data)", dir, strerror(errno));
    size_t dirlen = strlen(dir);
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.') continue;
        int img = is_image_name(name);
        int sub;
        if (de->d_type == DT_DIR)
            sub = 1;
        else if (de->d_type == DT_REG)
            sub = 0;
        else {
            /* Symlinks and file systems without d_type: follow, as os.walk(followlinks=True). */
            if (!dirs && !img) continue;
            char *p = join(dir, name);
            struct stat st;
            int found = stat(p, &st) == 0;
            free(p);
            /* A broken link stays a candidate (its probe reports it); FIFOs, sockets and
             * devices are not read (opening a FIFO would block). */
            if (found && !S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) continue;
            sub = found && S_ISDIR(st.st_mode);
        }
        if (sub) {
            if (dirs) slist_push(dirs, join(dir, name));
        } else if (img && files) {
            flist_push(files, join(dir, name), dirlen, label);
        }
        errno = 0;
    }
    int saved = errno;
    closedir(d);
    if (saved) return err_set(e, "%s: cannot read folder: %s", dir, strerror(saved));
    return 0;
}

/* Every image file under `dir`, recursively, labelled `label`. */
static int collect(const char *dir, int32_t label, FList *files, int depth, Err *e) {
    if (depth > MAX_DEPTH)
        return err_set(e, "%s: folders nested deeper than %d levels (a symlink loop?)", dir, MAX_DEPTH);
    SList sub = {0};
    int rc = list_dir(dir, &sub, files, label, e);
    for (size_t i = 0; rc == 0 && i < sub.n; i++) rc = collect(sub.v[i], label, files, depth + 1, e);
    slist_free(&sub);
    return rc;
}

/* Lists one split folder into files (sorted, labelled). For the train split (classes->n == 0
 * on entry) the class names are its subfolders; for the test split they must be among them. */
static int scan_split(const char *dir, int is_train, SList *classes, FList *files, Err *e) {
    SList sub = {0};
    FList direct = {0};
    int rc = list_dir(dir, &sub, &direct, -1, e);
    if (rc == 0 && sub.n) {
        qsort(sub.v, sub.n, sizeof *sub.v, cmp_str);
        size_t dl = strlen(dir) + 1;
        for (size_t i = 0; rc == 0 && i < sub.n; i++) {
            const char *name = sub.v[i] + dl;
            int32_t label;
            if (is_train) {
                slist_push(classes, xstrdup_local(name));
                label = (int32_t)i;
            } else {
                const char *key = name;
                char **hit = classes->n ? bsearch(&key, classes->v, classes->n, sizeof *classes->v, cmp_str) : NULL;
                if (!hit) {
                    rc = err_set(e, "%s: class folder not in the train split (the test split must use "
                                    "the train split's classes)", sub.v[i]);
                    break;
                }
                label = (int32_t)(hit - classes->v);
            }
            size_t first = files->n;
            rc = collect(sub.v[i], label, files, 1, e);
            if (rc == 0 && files->n > first)
                qsort(files->v + first, files->n - first, sizeof *files->v, cmp_fent);
        }
    } else if (rc == 0) {
        /* No class folders: the images directly inside, unlabeled. */
        if (direct.n) qsort(direct.v, direct.n, sizeof *direct.v, cmp_fent);
        for (size_t i = 0; i < direct.n; i++) flist_push(files, direct.v[i].path, direct.v[i].dirlen, -1);
        free(direct.v);
        direct = (FList){0};
    }
    flist_free(&direct);
    slist_free(&sub);
    return rc;
}

/* ---- header probes, in parallel ---- */

typedef struct {
    FEnt *v;
    size_t n;
    atomic_size_t next;
} ProbeJob;

static void probe_one(FEnt *f) {
    Err e = {{0}};
    if (image_probe_file(f->path, &f->w, &f->h, &f->c, &e) != 0) f->err = xstrdup_local(e.msg);
}

static void *probe_worker(void *arg) {
    ProbeJob *job = arg;
    for (;;) {
        size_t i0 = atomic_fetch_add(&job->next, PROBE_CHUNK);
        if (i0 >= job->n) break;
        size_t i1 = MIN(i0 + PROBE_CHUNK, job->n);
        for (size_t i = i0; i < i1; i++) probe_one(&job->v[i]);
    }
    return NULL;
}

static void probe_all(FEnt *v, size_t n) {
    ProbeJob job = {.v = v, .n = n};
    atomic_init(&job.next, 0);
    size_t nt = (size_t)threads_available();
    nt = MIN(nt, (size_t)MAX_PROBE_THREADS);
    nt = MIN(nt, n / (4 * PROBE_CHUNK) + 1);
    pthread_t th[MAX_PROBE_THREADS];
    size_t started = 0;
    for (size_t t = 1; t < nt; t++) {
        if (pthread_create(&th[started], NULL, probe_worker, &job) != 0) break;
        started++;
    }
    probe_worker(&job);
    for (size_t t = 0; t < started; t++) pthread_join(th[t], NULL);
}

/* ---- the opener ---- */

static void free_strv(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

int folder_open(Dataset *ds, const char *root, FILE *warn, Err *e) {
    if (strlen(root) >= sizeof ds->root) return err_set(e, "%s: path too long", root);
    DIR *d = opendir(root);
    if (!d) return err_set(e, "%s: cannot open folder: %s (check --data)", root, strerror(errno));
    closedir(d);

    /* Joins below use root without trailing slashes ("data/" -> "data/train"). */
    char base[4096];
    snprintf(base, sizeof base, "%s", root);
    for (size_t l = strlen(base); l > 1 && base[l - 1] == '/'; l--) base[l - 1] = '\0';

    char *split_dir[2] = {NULL, NULL};
    char *train = join(base, "train");
    if (is_dir(train)) {
        split_dir[0] = train;
        char *test = join(base, "test");
        if (!is_dir(test)) {
            free(test);
            test = join(base, "val");
            if (!is_dir(test)) {
                free(test);
                test = NULL;
            }
        }
        split_dir[1] = test;
    } else {
        free(train);
        split_dir[0] = xstrdup_local(base);
    }

    SList classes = {0};
    FList files[2] = {{0}};
    int rc = 0;
    for (int s = 0; s < 2 && rc == 0; s++)
        if (split_dir[s]) rc = scan_split(split_dir[s], s == 0, &classes, &files[s], e);
    free(split_dir[0]);
    free(split_dir[1]);
    if (rc != 0) {
        slist_free(&classes);
        flist_free(&files[0]);
        flist_free(&files[1]);
        return -1;
    }
    if (files[0].n + files[1].n > (size_t)INT32_MAX / 2) {
        slist_free(&classes);
        flist_free(&files[0]);
        flist_free(&files[1]);
        return err_set(e, "%s: too many images (%zu)", root, files[0].n + files[1].n);
    }

    for (int s = 0; s < 2; s++) probe_all(files[s].v, files[s].n);

    /* Keep what probed fine, in order; report the rest in order. */
    SList skipped = {0};
    char **paths[2] = {NULL, NULL};
    int32_t *labels[2] = {NULL, NULL};
    int kept[2] = {0, 0};
    int channels = 1, height = 0, width = 0, vary = 0, have_size = 0;
    for (int s = 0; s < 2; s++) {
        FList *fl = &files[s];
        if (fl->n) {
            paths[s] = malloc(fl->n * sizeof *paths[s]);
            labels[s] = malloc(fl->n * sizeof *labels[s]);
            if (!paths[s] || !labels[s]) die("out of memory listing %zu images", fl->n);
        }
        for (size_t i = 0; i < fl->n; i++) {
            FEnt *f = &fl->v[i];
            if (f->err) {
                size_t pl = strlen(f->path);
                const char *reason = f->err;
                if (strncmp(reason, f->path, pl) == 0 && reason[pl] == ':' && reason[pl + 1] == ' ')
                    reason += pl + 2;
                if (warn) fprintf(warn, "byol: warning: %s: skipped: %s\n", f->path, reason);
                char *line = malloc(pl + strlen(reason) + 3);
                if (!line) die("out of memory listing an image folder");
                sprintf(line, "%s: %s", f->path, reason);
                slist_push(&skipped, line);
                continue;
            }
            if (f->c == 3) channels = 3;
            if (!have_size) {
                height = f->h;
                width = f->w;
                have_size = 1;
            } else if (f->h != height || f->w != width) {
                vary = 1;
            }
            paths[s][kept[s]] = f->path;
            labels[s][kept[s]] = f->label;
            kept[s]++;
            f->path = NULL; /* now owned by paths[s] */
        }
    }
    if (warn) fflush(warn);
    flist_free(&files[0]);
    flist_free(&files[1]);

    if (kept[0] == 0) {
        if (skipped.n)
            err_set(e, "%s: no images found (expected %s/<class>/*.jpg|png or %s/train/<class>/...; "
                       "%zu files skipped as unreadable)", root, base, base, skipped.n);
        else
            err_set(e, "%s: no images found (expected %s/<class>/*.jpg|png or %s/train/<class>/...)",
                    root, base, base);
        slist_free(&skipped);
        slist_free(&classes);
        for (int s = 0; s < 2; s++) {
            free_strv(paths[s], (size_t)kept[s]);
            free(labels[s]);
        }
        return -1;
    }

    snprintf(ds->kind, sizeof ds->kind, "folder");
    snprintf(ds->root, sizeof ds->root, "%s", root);
    ds->channels = channels;
    ds->height = height;
    ds->width = width;
    ds->sizes_vary = vary;
    ds->n_classes = (int)classes.n;
    ds->class_names = classes.v;
    for (int s = 0; s < 2; s++) {
        DatasetSplit *sp = &ds->split[s == 0 ? SPLIT_TRAIN : SPLIT_TEST];
        memset(sp, 0, sizeof *sp);
        sp->n = kept[s];
        if (kept[s]) {
            sp->paths = paths[s];
            sp->labels = labels[s];
        } else {
            free(paths[s]);
            free(labels[s]);
        }
    }
    ds->n_skipped = (int)skipped.n;
    ds->skipped = skipped.v;
    return 0;
}
