/* uid-cleanup.c: ending the processes and removing the IPC objects and files of a UID (see
 * uid-cleanup.h); the parts' shared helpers (uid-cleanup-internal.h).
 *
 * A request runs through the parts in order: processes first (uid-processes.c; a live process
 * could recreate what we remove, or race the walk by renaming its own entries), then IPC
 * (uid-ipc.c), then the file walk (uid-files.c). uid_leftovers() asks the same parts to count
 * instead of remove; uid_leftovers_scan() asks them to mark every UID of a range they meet. */
#include "uid-cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dir-util.h"
#include "macro.h"
#include "uid-cleanup-internal.h"

void uid_mark(const struct uid_marks *m, unsigned long long id) {
        if (id >= m->lo && id <= m->hi)
                m->bits[(id - m->lo) / 8] |= (uint8_t) (1u << ((id - m->lo) % 8));
}

int uid_path_join(char *buf, size_t size, const char *a, const char *b) {
        int n = snprintf(buf, size, "%s%s%s", a, streq(a, "/") || a[0] == '\0' ? "" : "/", b);
        return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}

bool uid_name_is_number(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

int uid_foreach_entry(const char *root, const char *sub, int (*visit)(int dir_fd, const char *name, void *userdata),
                      void *userdata) {
        char path[PATH_MAX];

        if (uid_path_join(path, sizeof(path), root, sub) < 0)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : negative_errno();
        return dir_foreach_at(fd, visit, userdata);
}

void uid_cleanup_report_done(struct uid_cleanup_report *r) {
        for (size_t i = 0; i < UID_CLEANUP_KEPT_MAX; i++)
                free(r->kept[i]);
        *r = (struct uid_cleanup_report) {};
}

bool uid_cleanup_report_dirty(const struct uid_cleanup_report *r) {
        return r->processes_left > 0 || r->ipc_left > 0 || r->kept_count > 0;
}

int uid_cleanup(const char *root, uid_t uid, const char *user_name, struct uid_cleanup_report *ret) {
        struct uid_cleanup_report report = {};
        int r;

        if (uid == 0)
                return -EINVAL;
        r = uid_processes_end(root, uid, &report);
        if (r < 0)
                return r;
        r = uid_ipc_remove(root, uid, true, &report);
        if (r < 0) {
                uid_cleanup_report_done(&report);
                return r;
        }
        (void) uid_files_remove(root, uid, user_name, true, &report);
        *ret = report;
        return 0;
}

int uid_leftovers(const char *root, uid_t uid, const char *user_name) {
        struct uid_cleanup_report report = {};
        int processes, ipc;

        if (uid == 0)
                return -EINVAL;
        processes = uid_count_processes(root, uid);
        if (processes < 0)
                return processes;
        ipc = uid_ipc_remove(root, uid, false, &report);
        if (ipc < 0)
                return ipc;
        return processes + ipc + (int) uid_files_remove(root, uid, user_name, false, &report);
}

int uid_leftovers_scan(const char *root, uid_t lo, uid_t hi, uint8_t *bits) {
        struct uid_marks m = { lo, hi, bits };
        int r;

        if (lo == 0 || lo > hi)
                return -EINVAL;
        memset(bits, 0, ((size_t) hi - lo) / 8 + 1);
        if ((r = uid_processes_mark(root, &m)) < 0 || (r = uid_ipc_mark(root, &m)) < 0)
                return r;
        uid_files_mark(root, &m);
        return 0;
}
