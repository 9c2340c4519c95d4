/* stb_easy_font, for the text of the figures (libstb-dev: no font files). It is a header of
 * static functions, and a file that draws with only some of them would warn about the rest. */
#ifndef BYOL_EASY_FONT_H
#define BYOL_EASY_FONT_H

#ifdef __clang__
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wunused-function"
#else
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include <stb/stb_easy_font.h>
#ifdef __clang__
#pragma clang diagnostic pop
#else
#pragma GCC diagnostic pop
#endif

#endif
