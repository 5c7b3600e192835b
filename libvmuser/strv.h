/* strv.h: NULL-terminated string vectors (command-line lists such as --allow-rpcs).
 *
 * Allocation failure is an error the caller must see, never a shorter or empty list: an
 * allow-list that silently came out NULL would mean "everything allowed". */
#pragma once

#include <stdbool.h>

/* Splits s at commas, dropping empty items: "a,,b" -> {"a", "b", NULL}, "" -> {NULL}. 0 and
 * *ret set, or -ENOMEM with *ret untouched. */
int strv_split_commas(const char *s, char ***ret);

void strv_free(char **v);
static inline void strv_freep(char ***v) {
        strv_free(*v);
}
