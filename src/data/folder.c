/* Image folders in torchvision's ImageFolder layout:
 *
 *   ROOT/train/<class>/.../<image>   and optionally ROOT/test/<class>/... (or ROOT/val/...)
 *   ROOT/<class>/.../<image>         (no ROOT/train: ROOT is the train split)
 *   ROOT/<image>                     (no class folders: the train split, unlabeled, labels -1)
 *
 * where <image> is a file named *.jpg, *.jpeg, *.png, *.bmp, *.tif or *.tiff (any case). Beside
 * class folders, unlabeled images (label -1) form the unlabeled split, as STL-10's do (train's
 * --unlabeled 1 pretrains on it): images loose in ROOT or in the train folder, and with
 * ROOT/train, everything under ROOT/unlabeled/. Images loose in the test folder have no class
 * and are skipped.
 *
 * Classes are the train split's subfolders sorted by name (byte order, as Python's sorted());
 * the files of a class are found recursively and ordered as ImageFolder orders them (by folder
 * path, then by file name). A class folder without any image file is an error, as in
 * ImageFolder. Hidden entries (".name") and files with other extensions are ignored, except the
 * ones ImageFolder reads and byol.c does not (.ppm, .pgm, .webp): those are skipped by name.
 * Every candidate's header is probed (not decoded; in parallel, since ImageNet has 1.3 M files);
 * a file that fails is skipped with one warning and listed in ds->skipped.
 *
 * Sizes: ds->height/width are the typical image's (the median by shorter side), so that a few
 * large files among small ones do not set the size of every view; max_height/max_width are the
 * largest sides, and both are logged when sizes vary. */
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

/* Moves every entry of src to the end of dst, each skipped with `reason` when non-NULL. */
static void flist_move(FList *dst, FList *src, const char *reason) {
    for (size_t i = 0; i < src->n; i++) {
        FEnt *f = &src->v[i];
        flist_push(dst, f->path, f->dirlen, f->label);
        if (reason && !f->err) {
            size_t pl = strlen(f->path);
            f->err = malloc(pl + strlen(reason) + 3);
            if (!f->err) die("out of memory listing an image folder");
            sprintf(f->err, "%s: %s", f->path, reason);
        }
        dst->v[dst->n - 1].err = f->err;
    }
    free(src->v);
    memset(src, 0, sizeof *src);
}

static void flist_free(FList *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].err);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* 1: an image byol.c reads, by extension; 2: one torchvision's ImageFolder reads and byol.c does
 * not (listed as skipped, so that no file ImageFolder would train on disappears silently);
 * 0: not an image. */
static int image_name_kind(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    static const char *const read[] = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"};
    static const char *const other[] = {".ppm", ".pgm", ".webp"};
    for (size_t i = 0; i < ARRAY_LEN(read); i++)
        if (strcasecmp(dot, read[i]) == 0) return 1;
    for (size_t i = 0; i < ARRAY_LEN(other); i++)
        if (strcasecmp(dot, other[i]) == 0) return 2;
    return 0;
}

#define IMAGE_EXTENSIONS ".jpg, .jpeg, .png, .bmp, .tif, .tiff"

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
        int img = image_name_kind(name);
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
            if (img == 2) {
                FEnt *f = &files->v[files->n - 1];
                const char *ext = strrchr(name, '.');
                f->err = malloc(strlen(f->path) + strlen(ext) + 80);
                if (!f->err) die("out of memory listing an image folder");
                sprintf(f->err, "%s: %s images are not read by byol.c (convert them to PNG or JPEG)",
                        f->path, ext);
            }
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
 * on entry) the class names are its subfolders; for the test split they must be among them.
 * Images directly in dir go into files (unlabeled) when there are no class folders, else into
 * loose (sorted, label -1) for the caller to place. */
static int scan_split(const char *dir, int is_train, SList *classes, FList *files, FList *loose, Err *e) {
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
            if (rc == 0 && files->n == first)
                rc = err_set(e, "%s: empty class folder: no " IMAGE_EXTENSIONS " files in it (torchvision's "
                                "ImageFolder refuses it too; add images or remove the folder)", sub.v[i]);
            if (rc == 0) qsort(files->v + first, files->n - first, sizeof *files->v, cmp_fent);
        }
        if (rc == 0 && direct.n) {
            qsort(direct.v, direct.n, sizeof *direct.v, cmp_fent);
            flist_move(loose, &direct, NULL);
        }
    } else if (rc == 0) {
        /* No class folders: the images directly inside, unlabeled. */
        if (direct.n) qsort(direct.v, direct.n, sizeof *direct.v, cmp_fent);
        flist_move(files, &direct, NULL);
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
    if (f->err) return; /* skipped by name already */
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

/* The typical size: the median image by shorter side (by area among equal shorter sides). */
typedef struct {
    int s, w, h;
} SizeEnt;

static int cmp_size(const void *pa, const void *pb) {
    const SizeEnt *a = pa, *b = pb;
    if (a->s != b->s) return a->s < b->s ? -1 : 1;
    long aa = (long)a->w * a->h, ab = (long)b->w * b->h;
    return (aa > ab) - (aa < ab);
}

static void free_lists(SList *classes, FList *files, int n) {
    slist_free(classes);
    for (int s = 0; s < n; s++) flist_free(&files[s]);
}

int folder_image_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && image_name_kind(path) == 1;
}

int folder_open(Dataset *ds, const char *root, FILE *warn, Err *e) {
    if (strlen(root) >= sizeof ds->root) return err_set(e, "%s: path too long", root);
    /* One image file: a train split of that image alone, unlabeled (byol embed of one image) */
    const int one_file = folder_image_file(root);
    DIR *d = one_file ? NULL : opendir(root);
    if (!d && !one_file) return err_set(e, "%s: cannot open folder: %s (check --data)", root, strerror(errno));
    if (d) closedir(d);

    /* Joins below use root without trailing slashes ("data/" -> "data/train"). */
    char base[4096];
    snprintf(base, sizeof base, "%s", root);
    for (size_t l = strlen(base); l > 1 && base[l - 1] == '/'; l--) base[l - 1] = '\0';

    /* files[0..2]: the train, test and unlabeled splits' candidates. */
    enum { NS = 3 };
    static const Split SPLIT_OF[NS] = {SPLIT_TRAIN, SPLIT_TEST, SPLIT_UNLABELED};
    SList classes = {0};
    FList files[NS] = {{0}}, loose = {0};
    int rc = 0;
    char *train = join(base, "train");
    if (one_file) {
        flist_push(&files[0], xstrdup_local(root), 0, -1);
    } else if (is_dir(train)) {
        char *test = join(base, "test");
        if (!is_dir(test)) {
            free(test);
            test = join(base, "val");
            if (!is_dir(test)) {
                free(test);
                test = NULL;
            }
        }
        rc = scan_split(train, 1, &classes, &files[0], &loose, e);
        if (rc == 0) flist_move(&files[2], &loose, NULL);
        if (rc == 0 && test) {
            rc = scan_split(test, 0, &classes, &files[1], &loose, e);
            flist_move(&files[1], &loose, "not in a class folder (a test image needs one for its label)");
        }
        /* Unlabeled: images loose in ROOT, then everything under ROOT/unlabeled/. */
        if (rc == 0) rc = list_dir(base, NULL, &loose, -1, e);
        if (rc == 0) {
            char *unl = join(base, "unlabeled");
            if (is_dir(unl)) rc = collect(unl, -1, &loose, 1, e);
            free(unl);
        }
        if (rc == 0) {
            if (loose.n) qsort(loose.v, loose.n, sizeof *loose.v, cmp_fent);
            flist_move(&files[2], &loose, NULL);
        }
        free(test);
    } else {
        rc = scan_split(base, 1, &classes, &files[0], &loose, e);
        if (rc == 0) flist_move(&files[2], &loose, NULL);
    }
    free(train);
    flist_free(&loose);
    if (rc != 0) {
        free_lists(&classes, files, NS);
        return -1;
    }
    if (files[0].n + files[1].n + files[2].n > (size_t)INT32_MAX / 2) {
        size_t total = files[0].n + files[1].n + files[2].n;
        free_lists(&classes, files, NS);
        return err_set(e, "%s: too many images (%zu)", root, total);
    }

    for (int s = 0; s < NS; s++) probe_all(files[s].v, files[s].n);

    /* Keep what probed fine, in order; report the rest in order. */
    SList skipped = {0};
    char **paths[NS] = {NULL};
    int32_t *labels[NS] = {NULL};
    int kept[NS] = {0};
    size_t n_all = files[0].n + files[1].n + files[2].n, n_sizes = 0;
    SizeEnt *sizes = malloc((n_all ? n_all : 1) * sizeof *sizes);
    if (!sizes) die("out of memory listing %zu images", n_all);
    int channels = 1, max_h = 0, max_w = 0, vary = 0;
    for (int s = 0; s < NS; s++) {
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
            if (n_sizes && (f->h != sizes[0].h || f->w != sizes[0].w)) vary = 1;
            sizes[n_sizes++] = (SizeEnt){MIN(f->w, f->h), f->w, f->h};
            max_h = MAX(max_h, f->h);
            max_w = MAX(max_w, f->w);
            paths[s][kept[s]] = f->path;
            labels[s][kept[s]] = f->label;
            kept[s]++;
            f->path = NULL; /* now owned by paths[s] */
        }
    }
    for (int s = 0; s < NS; s++) flist_free(&files[s]);

    if (kept[0] == 0) {
        if (warn) fflush(warn);
        if (one_file && skipped.n)
            err_set(e, "%s (an image file given as --data)", skipped.v[0]);
        else if (skipped.n)
            err_set(e, "%s: no images found (expected %s/<class>/*.jpg|png or %s/train/<class>/...; "
                       "%zu files skipped as unreadable)", root, base, base, skipped.n);
        else
            err_set(e, "%s: no images found (expected %s/<class>/*.jpg|png or %s/train/<class>/...)",
                    root, base, base);
        free(sizes);
        slist_free(&skipped);
        slist_free(&classes);
        for (int s = 0; s < NS; s++) {
            free_strv(paths[s], (size_t)kept[s]);
            free(labels[s]);
        }
        return -1;
    }

    SizeEnt typical = sizes[0];
    if (vary) {
        qsort(sizes, n_sizes, sizeof *sizes, cmp_size);
        typical = sizes[(n_sizes - 1) / 2];
    }
    free(sizes);

    snprintf(ds->kind, sizeof ds->kind, "folder");
    snprintf(ds->root, sizeof ds->root, "%s", root);
    ds->channels = channels;
    ds->height = typical.h;
    ds->width = typical.w;
    ds->max_height = max_h;
    ds->max_width = max_w;
    ds->sizes_vary = vary;
    ds->n_classes = (int)classes.n;
    ds->class_names = classes.v;
    for (int s = 0; s < NS; s++) {
        DatasetSplit *sp = &ds->split[SPLIT_OF[s]];
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
    /* One line, because the size decides the default view size and so the speed of training. */
    if (warn && vary)
        fprintf(warn, "byol: %s: image sizes vary: typical %dx%d (the median of %zu by shorter side), largest "
                      "%dx%d; views default to %d px (--image-size sets them)\n",
                root, ds->width, ds->height, n_sizes, max_w, max_h, dataset_default_image_size(ds));
    if (warn) fflush(warn);
    return 0;
}
