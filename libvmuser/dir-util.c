/* dir-util.c: the one directory-listing loop.
 *
 * Every lister in vmuser walks a directory it holds as an fd (openat() family, no path another
 * user could swap): it opens "." below the fd for a stream of its own, so the caller's fd keeps
 * its offset and stays open, skips "." and "..", and tells a read error (errno set by readdir())
 * from the end of the directory. */
#include "dir-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strv.h"

static int opendir_at(int dir_fd, DIR **ret) {
        _cleanup_close_ int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;

        if (fd < 0)
                return negative_errno();
        d = fdopendir(fd);
        if (!d)
                return negative_errno();
        TAKE_FD(fd);
        *ret = d;
        return 0;
}

static bool is_dot_or_dotdot(const char *name) {
        return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

int dir_foreach_at(int dir_fd, int (*visit)(int dir_fd, const char *name, void *userdata), void *userdata) {
        _cleanup_closedir_ DIR *d = NULL;
        int r;

        r = opendir_at(dir_fd, &d);
        if (r < 0)
                return r;
        for (;;) {
                struct dirent *de;

                errno = 0;
                de = readdir(d);
                if (!de)
                        return errno > 0 ? -errno : 0;
                if (is_dot_or_dotdot(de->d_name))
                        continue;
                r = visit(dir_fd, de->d_name, userdata);
                if (r < 0)
                        return r;
        }
}

struct name_list {
        char **names;
        size_t n, cap, max;
};

static int collect_name(int dir_fd, const char *name, void *userdata) {
        struct name_list *l = userdata;

        if (l->n >= l->max)
                return -E2BIG;
        if (l->n + 1 >= l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                char **v = reallocarray(l->names, cap, sizeof(char *));
                if (!v)
                        return -ENOMEM;
                l->names = v;
                l->cap = cap;
        }
        l->names[l->n] = strdup(name);
        if (!l->names[l->n])
                return -ENOMEM;
        l->names[++l->n] = NULL;
        return 0;
}

int dir_list_names_at(int dir_fd, size_t max, char ***ret_names, size_t *ret_n) {
        struct name_list l = { .max = max };
        int r;

        r = dir_foreach_at(dir_fd, collect_name, &l);
        if (r >= 0 && !l.names) {
                l.names = calloc(1, sizeof(char *));
                if (!l.names)
                        r = -ENOMEM;
        }
        if (r < 0) {
                strv_free(l.names);
                return r;
        }
        *ret_names = l.names;
        *ret_n = l.n;
        return 0;
}
