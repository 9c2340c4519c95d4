/* Build probe: protobuf-c (libprotobuf-c-dev) links. */
#include <protobuf-c/protobuf-c.h>
int main(void) { return protobuf_c_version_number() == 0; }
