/* verr.h: a human-readable reason travelling next to a -errno.
 *
 * Validation code cannot print (library rule), but "invalid" alone helps nobody: the caller
 * needs "user name 'Alice' is not valid". Functions that can refuse input take a struct verr *
 * and fill it with a sentence naming the offending value; the boundary (agent reply, CLI
 * message, PAM log) shows it. */
#pragma once

#include "macro.h"

struct verr {
        char text[512];
};

/* Formats the reason (only the first one sticks) and returns r, for `return verr_set(e, -EINVAL, ...)`. */
int verr_set(struct verr *e, int r, const char *fmt, ...) _printf_(3, 4);

static inline const char *verr_text(const struct verr *e, int r) {
        return e && e->text[0] ? e->text : strerror(r < 0 ? -r : r);
}
