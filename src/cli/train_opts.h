/* byol train's settings: model, data and augmentation flags, the recipe, the run's folder. Also
 * read from --config FILE and from a checkpoint's saved configuration (`key = value` lines). */
#ifndef BYOL_TRAIN_OPTS_H
#define BYOL_TRAIN_OPTS_H

#include "../train/train.h"
#include "args.h"
#include "data_flags.h"

enum { TRAIN_FLAG_MAX = 96 };
/* Fills the flag table (defaults set); returns its length. */
int train_flags(Flag *flags, TrainOptions *o);
/* --config FILE first (wherever it stands), then the command line on top. 1: --help shown. */
int train_parse(int argc, char **argv, const Flag *flags, int n, TrainOptions *o, Err *e);

/* What a setting is, for the configuration a run saves (config.txt, checkpoints):
 * FLAG_RECIPE: what the run trains (model, data, augmentation, optimizer, schedules); saved, and
 *   a change on --resume is refused without --allow-change.
 * FLAG_MONITOR: what the run reports and keeps (kNN monitor, logging, checkpoints); saved, and
 *   free to change on --resume.
 * FLAG_RUN: where and how this process runs (--out, --resume, --threads, ...); never saved. */
typedef enum { FLAG_RECIPE, FLAG_MONITOR, FLAG_RUN } FlagScope;
FlagScope train_flag_scope(const Flag *f);
/* The configuration a run saves: its recipe and monitor flags (malloc'ed text). */
char *train_config_dump(const Flag *flags, int n);

/* A checkpoint's saved configuration on top of the defaults. Checkpoints written before run
 * flags were left out of it may still name an --out, --resume or --max-steps: those belong to
 * the process that wrote it, so they are set back to their defaults. */
int train_parse_saved(const char *text, const char *label, const Flag *flags, int n, Err *e);
/* Whether the command line or a --config file sets a recipe flag (FLAG_RECIPE) other than the
 * data's (--data, --dataset, --image-size, --in-channels, --unlabeled), --seed and --time-budget:
 * byol train takes the short-budget recipe (train_options_budget_recipe) for a --time-budget run
 * given none. */
int train_recipe_given(int argc, char **argv, const Flag *flags, int n);
/* The recipe flags (FLAG_RECIPE) whose values differ between two tables of train_flags, as
 * "batch 16 -> 32, data /a -> /b" in out; returns how many. */
int train_recipe_changes(const Flag *before, const Flag *after, int n, char *out, size_t cap);

#endif
