#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#include <stb/stb_image.h>
int main(void) { int w, h, c; return stbi_info_from_memory((const unsigned char *)"", 0, &w, &h, &c); }
