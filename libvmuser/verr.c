/* verr.c: see verr.h. */
#include "verr.h"

#include <stdarg.h>

int verr_set(struct verr *e, int r, const char *fmt, ...) {
        va_list ap;

        if (!e || e->text[0])
                return r;
        va_start(ap, fmt);
        vsnprintf(e->text, sizeof(e->text), fmt, ap);
        va_end(ap);
        return r;
}
