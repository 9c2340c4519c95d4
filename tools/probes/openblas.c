/* Build probe: OpenBLAS's CBLAS interface links (libopenblas-dev). */
#include <cblas.h>
int main(void) {
    float a = 1, b = 1, c = 0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1, &a, 1, &b, 1, 0, &c, 1);
    return openblas_get_num_threads() < 0;
}
