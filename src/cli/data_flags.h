/* The flags every command that reads images shares (they fill src/data/data_options.h's
 * DataOptions): where the data is, how big the views are, and every augmentation value. */
#ifndef BYOL_DATA_FLAGS_H
#define BYOL_DATA_FLAGS_H

#include "../data/data_options.h"
#include "args.h"

enum { DATA_FLAG_COUNT = 23 };
void data_flags(Flag *out, DataOptions *o);

#endif
