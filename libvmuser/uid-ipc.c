/* uid-ipc.c: the SysV IPC objects of a UID (shared memory segments, semaphore sets, message
 * queues), from ROOT/proc/sysvipc (see uid-cleanup-internal.h): removed, counted or marked.
 *
 * An object is the UID's when its owner or its creator is. A request reads the ids of the UID's
 * objects of one kind from ROOT/proc/sysvipc/KIND (ipc_read()), then removes them with
 * IPC_RMID. IPC_RMID needs the owner's or creator's effective UID (or CAP_SYS_ADMIN, which the
 * agent does not hold), so the removal runs with the effective UID switched to the UID for a
 * moment; an object already gone counts as removed. POSIX shared memory and message queues are
 * files (/dev/shm, /dev/mqueue): uid-files.c's. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#include "macro.h"
#include "uid-cleanup-internal.h"

/* How many objects of one kind a request removes. */
#define IPC_IDS_MAX 4096u

static const char *const kinds[] = { "shm", "sem", "msg" };

/* Calls visit(id, uid, cuid, userdata) for every object listed in ROOT/proc/sysvipc/KIND, until
 * visit() returns non-zero. The column layout is read from the header line, as it differs
 * between the three files. 0 (also for a missing or empty file) or -errno (-EBADMSG: no uid or
 * cuid column). */
static int ipc_read(const char *root, const char *kind, int (*visit)(long long id, long long uid, long long cuid, void *userdata),
                    void *userdata) {
        char path[PATH_MAX], line[1024];
        int col_uid = -1, col_cuid = -1;

        snprintf(line, sizeof(line), "proc/sysvipc/%s", kind);
        if (uid_path_join(path, sizeof(path), root, line) < 0)
                return -ENAMETOOLONG;
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? 0 : negative_errno();
        if (!fgets(line, sizeof(line), f))
                return 0;
        {
                int col = 0;
                for (char *save = NULL, *t = strtok_r(line, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save), col++) {
                        if (streq(t, "uid"))
                                col_uid = col;
                        else if (streq(t, "cuid"))
                                col_cuid = col;
                }
        }
        if (col_uid < 0 || col_cuid < 0)
                return -EBADMSG;
        while (fgets(line, sizeof(line), f)) {
                long long v[32];
                int col = 0;
                for (char *save = NULL, *t = strtok_r(line, " \t\n", &save); t && col < 32;
                     t = strtok_r(NULL, " \t\n", &save), col++)
                        v[col] = strtoll(t, NULL, 10);
                if (col <= col_uid || col <= col_cuid || col < 2)
                        continue;
                if (visit(v[1], v[col_uid], v[col_cuid], userdata) != 0)
                        break;
        }
        return 0;
}

struct ipc_ids {
        uid_t uid;
        int *ids;
        size_t n, max;
};

/* One object: its id kept if the UID owns or created it; stops when ids is full. */
static int list_one(long long id, long long uid, long long cuid, void *userdata) {
        struct ipc_ids *l = userdata;

        if (uid == (long long) l->uid || cuid == (long long) l->uid)
                l->ids[l->n++] = (int) id;
        return l->n >= l->max;
}

/* IPC_RMID on each of the n objects of kinds[k] in ids, with the effective UID switched to uid. */
static void remove_ids(size_t k, uid_t uid, const int *ids, size_t n, struct uid_cleanup_report *report) {
        /* IPC_RMID wants the owner's or creator's effective UID. */
        uid_t saved = geteuid();
        if (seteuid(uid) < 0) {
                report->ipc_left += (unsigned) n;
                return;
        }
        for (size_t i = 0; i < n; i++) {
                int q = k == 0 ? shmctl(ids[i], IPC_RMID, NULL)
                        : k == 1 ? semctl(ids[i], 0, IPC_RMID)
                                 : msgctl(ids[i], IPC_RMID, NULL);
                if (q == 0 || errno == EINVAL || errno == EIDRM)
                        report->ipc_removed++;
                else
                        report->ipc_left++;
        }
        if (seteuid(saved) < 0)
                abort(); /* never go on with the wrong identity */
}

int uid_ipc_remove(const char *root, uid_t uid, bool remove, struct uid_cleanup_report *report) {
        _cleanup_free_ int *ids = calloc(IPC_IDS_MAX, sizeof(int));
        int total = 0;

        if (!ids)
                return -ENOMEM;
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                struct ipc_ids l = { .uid = uid, .ids = ids, .max = IPC_IDS_MAX };
                int r = ipc_read(root, kinds[k], list_one, &l);
                if (r < 0)
                        return r;
                total += (int) l.n;
                if (remove && l.n > 0)
                        remove_ids(k, uid, ids, l.n, report);
        }
        return total;
}

/* One object: its owner and creator marked. */
static int mark_one(long long id, long long uid, long long cuid, void *userdata) {
        struct uid_marks *m = userdata;

        (void) id;
        uid_mark(m, (unsigned long long) uid);
        uid_mark(m, (unsigned long long) cuid);
        return 0;
}

int uid_ipc_mark(const char *root, struct uid_marks *m) {
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                int r = ipc_read(root, kinds[k], mark_one, m);
                if (r < 0)
                        return r;
        }
        return 0;
}
