/* dir-util.h: listing a directory open as an fd (see dir-util.c). */
#pragma once

#include <dirent.h>
#include <stddef.h>

#include "macro.h"

static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

/* Calls visit(dir_fd, name, userdata) for every entry of the directory open as dir_fd except
 * "." and "..", on a stream of its own (dir_fd itself is neither moved nor closed). Stops at the
 * first negative return of visit() and returns it; 0 after the last entry; -errno when the
 * directory cannot be opened or read. visit() may remove the entry it is given, not others. */
int dir_foreach_at(int dir_fd, int (*visit)(int dir_fd, const char *name, void *userdata), void *userdata);

/* The names of the entries of dir_fd except "." and "..", in directory order, as a
 * NULL-terminated vector (free with strv_free()) and its length. Listing before acting is what a
 * caller that removes or creates entries needs: readdir() may skip or repeat entries while the
 * directory changes. -E2BIG beyond max entries, -ENOMEM, -errno; nothing set on failure. */
int dir_list_names_at(int dir_fd, size_t max, char ***ret_names, size_t *ret_n);
