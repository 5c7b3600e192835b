/* socket-util.h: connecting to a UNIX socket by path, with a deadline (see socket-util.c). */
#pragma once

#include <stdint.h>
#include <sys/un.h>

/* Fills sa for path. A path too long for sun_path goes through /proc/self/fd/N/NAME: then
 * *ret_dir_fd is N, an O_PATH fd of the directory the caller closes after connect(), else -1.
 * -EINVAL for an empty path, -ENAMETOOLONG, -ENOMEM, or -errno from opening the directory. */
int sockaddr_un_from_path(const char *path, struct sockaddr_un *sa, int *ret_dir_fd);

/* connect() of the non-blocking socket fd to sa, finished by deadline (a now_ms() value): a full
 * backlog (EAGAIN) is retried, a connect in progress waited for. 0, -ETIMEDOUT, or -errno. */
int connect_unix_deadline(int fd, const struct sockaddr_un *sa, int64_t deadline);
