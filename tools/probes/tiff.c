#include <tiffio.h>
int main(void) {
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc(); /* libtiff >= 4.5: per-file error handlers */
    TIFFOpenOptionsFree(o);
    return TIFFGetVersion() == NULL;
}
