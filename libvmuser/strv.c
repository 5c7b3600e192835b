/* strv.c: NULL-terminated string vectors (see strv.h). */
#include "strv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void strv_free(char **v) {
        for (char **p = v; p && *p; p++)
                free(*p);
        free(v);
}

int strv_split_commas(const char *s, char ***ret) {
        size_t n = 1, i = 0;
        char **v;

        for (const char *p = s; *p; p++)
                n += *p == ',';
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (const char *p = s; *p;) {
                size_t len = strcspn(p, ",");
                if (len > 0) {
                        v[i] = malloc(len + 1);
                        if (!v[i]) {
                                strv_free(v);
                                return -ENOMEM;
                        }
                        memcpy(v[i], p, len);
                        v[i][len] = '\0';
                        i++;
                }
                p += len;
                if (*p == ',')
                        p++;
        }
        *ret = v;
        return 0;
}
