/* proc-util.c: the one /proc/PID/stat reader.
 *
 * A PID alone names no process: it is reused. Who recorded a process (a session entry, a
 * virtiofsd pid file) records its start time too, and asks here later whether the process
 * with that PID still has that start time. The command name (field 2) may hold spaces and
 * parentheses, so the fields are counted from the last ')'. */
#include "proc-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"

/* A decimal number without sign or leading zeros, ending at a space, a newline or the end. */
static int parse_field_u64(const char *s, uint64_t *ret) {
        size_t n = strcspn(s, " \n");
        uint64_t v = 0;

        if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                if (v > (UINT64_MAX - (uint64_t) (s[i] - '0')) / 10)
                        return -EBADMSG;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

int proc_stat_parse(const char *text, char *ret_state, uint64_t *ret_starttime) {
        const char *p = strrchr(text, ')');
        uint64_t starttime;

        if (!p || p[1] != ' ' || !p[2] || p[2] == ' ' || p[2] == '\n')
                return -EBADMSG;
        p += 2;
        char state = *p;

        /* p is at field 3; skip to field 22. */
        for (int field = 3; field < 22; field++) {
                p = strchr(p, ' ');
                if (!p)
                        return -EBADMSG;
                p++;
        }
        if (parse_field_u64(p, &starttime) < 0)
                return -EBADMSG;
        if (ret_state)
                *ret_state = state;
        if (ret_starttime)
                *ret_starttime = starttime;
        return 0;
}

int proc_stat_read(pid_t pid, char *ret_state, uint64_t *ret_starttime) {
        char path[64], buf[1024];
        _cleanup_close_ int fd = -1;
        size_t done = 0;

        if (pid <= 0)
                return -EINVAL;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno == ENOENT || errno == ESRCH)
                        return access("/proc/self/stat", F_OK) < 0 ? -ENOMEDIUM : -ENOENT;
                return negative_errno();
        }
        while (done < sizeof(buf) - 1) {
                ssize_t n = read(fd, buf + done, sizeof(buf) - 1 - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        /* A process that exits while we read. */
                        return errno == ESRCH ? -ENOENT : negative_errno();
                }
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        if (done == 0)
                return -ENOENT;
        buf[done] = '\0';
        return proc_stat_parse(buf, ret_state, ret_starttime);
}

int proc_is_alive(pid_t pid, uint64_t starttime) {
        uint64_t t;
        char state;
        int k = proc_stat_read(pid, &state, &t);

        /* -ENOMEDIUM: without /proc nothing counts as alive. */
        if (k == -ENOENT || k == -ENOMEDIUM)
                return 0;
        if (k < 0)
                return k;
        return t == starttime && !proc_state_is_dead(state);
}
