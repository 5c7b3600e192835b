/* socket-util.c: the one connect() to a UNIX socket with a deadline.
 *
 * The host tool talks to QEMU's QMP socket and to the guest agent's virtio-serial chardev, both
 * UNIX stream sockets named by paths that may be longer than sun_path (deep VM directories):
 * such a path is reached through /proc/self/fd/N/NAME with N an O_PATH fd of its directory.
 * The socket is non-blocking; a listener with a full backlog answers EAGAIN, which is retried
 * every 10 ms until the caller's deadline. */
#include "socket-util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "time-util.h"

int sockaddr_un_from_path(const char *path, struct sockaddr_un *sa, int *ret_dir_fd) {
        size_t n = strlen(path);

        *sa = (struct sockaddr_un) { .sun_family = AF_UNIX };
        *ret_dir_fd = -1;
        if (n == 0)
                return -EINVAL;
        if (n < sizeof(sa->sun_path)) {
                memcpy(sa->sun_path, path, n + 1);
                return 0;
        }

        const char *slash = strrchr(path, '/');
        if (!slash || strlen(slash + 1) > NAME_MAX)
                return -ENAMETOOLONG;
        _cleanup_free_ char *dir = slash == path ? strdup("/") : strndup(path, (size_t) (slash - path));
        if (!dir)
                return -ENOMEM;
        int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return negative_errno();
        int k = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dfd, slash + 1);
        if (k < 0 || (size_t) k >= sizeof(sa->sun_path)) {
                close(dfd);
                return -ENAMETOOLONG;
        }
        *ret_dir_fd = dfd;
        return 0;
}

int connect_unix_deadline(int fd, const struct sockaddr_un *sa, int64_t deadline) {
        for (;;) {
                if (connect(fd, (const struct sockaddr *) sa, sizeof(*sa)) == 0)
                        return 0;
                if (errno == EINTR)
                        continue;
                if (errno == EISCONN)
                        return 0;
                if (errno != EAGAIN && errno != EINPROGRESS && errno != EALREADY)
                        return negative_errno();

                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                if (errno == EAGAIN) {
                        usleep((useconds_t) (left < 10 ? left : 10) * 1000);
                        continue;
                }
                struct pollfd p = { .fd = fd, .events = POLLOUT };
                int k = poll(&p, 1, (int) left);
                if (k < 0 && errno != EINTR)
                        return negative_errno();
                if (k > 0) {
                        int error = 0;
                        socklen_t len = sizeof(error);
                        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                                return negative_errno();
                        return error == 0 ? 0 : -error;
                }
        }
}
