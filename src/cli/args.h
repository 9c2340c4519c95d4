/* Command-line flags: a table of --name/value pairs per command, parsed in one place so every
 * command reports bad input the same way (one line naming the flag and the value). */
#ifndef BYOL_ARGS_H
#define BYOL_ARGS_H

#include "../core/common.h"
#include "../model/byol.h"

/* FLAG_SWITCH: an int set to 1 by the bare flag (--no-predictor), or to 0/1 by --flag=0|1 and in a
 * saved configuration. */
typedef enum { FLAG_INT, FLAG_FLOAT, FLAG_STRING, FLAG_ARCH, FLAG_STEM, FLAG_SWITCH, FLAG_METHOD } FlagType;

typedef struct {
    const char *name; /* without the leading "--" */
    FlagType type;
    void *dst;        /* int*, float*, const char**, Arch*, Stem* */
    const char *help;
    double min, max;  /* inclusive range for numbers (ignored when min > max) */
} Flag;

/* Parses argv[0..argc) (the command's own arguments). `--help` prints usage and returns 1. */
int flags_parse(int argc, char **argv, const Flag *flags, int n, const char *usage, Err *e);
void flags_usage(FILE *f, const char *usage, const Flag *flags, int n);

/* Prints "byol CMD: <message>" as the one line of a failed command; returns status. */
int cmd_fail(const char *cmd, const Err *e, int status);

/* Whether --name (or --name=value) stands among the command's arguments. */
int flag_given(int argc, char **argv, const char *name);

/* Settings as text, one `key = value` per line (the flag's name without --; '#' starts a
 * comment), e.g. a --config file or the config saved with a checkpoint. */
int flags_parse_text(const char *text, const char *label, const Flag *flags, int n, Err *e);
int flags_parse_file(const char *path, const Flag *flags, int n, Err *e);
/* Frees the texts that string settings point into (at exit; fuzz targets after each input,
 * once the settings are no longer used). */
void flags_release_texts(void);
/* Every flag with a value as `key = value` lines (malloc'ed): the effective configuration.
 * Floats are written with the fewest digits that read back to the same float (5e-4, not
 * 0.000500000024); NaN floats mean "unset" and are left out. flags_dump_if keeps the flags for
 * which keep() is true. */
char *flags_dump(const Flag *flags, int n);
char *flags_dump_if(const Flag *flags, int n, int (*keep)(const Flag *));
const char *flag_value_string(const Flag *fl, char *buf, size_t cap);
/* Copies the value of `from` into `to`'s destination (two tables of the same flags). */
void flag_copy_value(const Flag *to, const Flag *from);

/* ComputeOptions (src/backend/backend.h) as flags, for every command that runs the encoder:
 * --plan measure|fixed (measure), --plan-cache FILE|none (~/.cache/byol/...), --device and
 * --precision. */
enum { COMPUTE_FLAG_COUNT = 4 };
void compute_flags(Flag *out, ComputeOptions *o);
/* Sets the planner's mode and reads its cache; after threads_set (the cache is per thread
 * count). With `report` non-NULL the command also takes --plan report (byol bench): measure
 * every shape afresh, the cache only written, and *report says whether it was given. */
int plan_apply(const ComputeOptions *o, int *report, Err *e);
/* The backend --device names (src/backend/backend.h), opened and set to --precision; NULL with
 * e set when it cannot be had (no CUDA in this build, no GPU, an index out of range, bf16 on the
 * CPU). */
const Backend *compute_backend(const ComputeOptions *o, Err *e);

/* The model flags every command shares, appended to a command's table. */
enum { MODEL_FLAG_COUNT = 10 };
void model_flags(Flag *out, ModelConfig *cfg);


#endif
