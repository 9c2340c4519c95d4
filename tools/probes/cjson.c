/* Build probe: cJSON (libcjson-dev) links. */
#include <cjson/cJSON.h>
int main(void) { return cJSON_Parse("1") == 0; }
