/* stb_image's implementation, built here with only its BMP decoder (Debian's libstb-dev ships
 * the header; compiling it ourselves keeps every other format's parser, and its stdio and HDR
 * paths, out of the binary, and lets the fuzz build instrument it). Its size limit is ours
 * (IMAGE_MAX_SIDE), so a hostile header is refused before any allocation. image.c calls it only
 * on data that starts with "BM", after checking the header against the file's length (stb's
 * reader returns zeros past the end, which would turn a truncated file into black pixels). */
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS 32768
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
