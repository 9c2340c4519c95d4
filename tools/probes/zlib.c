#include <zlib.h>
int main(void) { return gzopen("/dev/null", "rb") == 0; }
