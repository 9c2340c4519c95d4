#include <stdio.h>
#include <jpeglib.h>
int main(void) {
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr j;
    c.err = jpeg_std_error(&j);
    jpeg_create_decompress(&c);
    jpeg_destroy_decompress(&c);
    return 0;
}
