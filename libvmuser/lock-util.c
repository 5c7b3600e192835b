/* lock-util.c: the one lock-with-timeout loop.
 *
 * Every lock vmuser takes is an flock() on a file it opened itself, and every wait for one is
 * bounded: a stuck holder (a hung login, a crashed attach) must turn into an error the caller
 * can report, never into a hang. flock() has no timeout of its own, so this polls with LOCK_NB
 * against a deadline on the monotonic clock. */
#include "lock-util.h"

#include <errno.h>
#include <sys/file.h>
#include <time.h>

#include "macro.h"
#include "time-util.h"

int flock_timeout(int fd, int operation, int timeout_ms, int interval_ms) {
        int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        struct timespec pause = {
                .tv_sec = interval_ms / 1000,
                .tv_nsec = (long) (interval_ms % 1000) * 1000 * 1000,
        };

        for (;;) {
                if (flock(fd, operation | LOCK_NB) >= 0)
                        return 0;
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return negative_errno();
                if (now_ms() >= deadline)
                        return -ETIMEDOUT;
                nanosleep(&pause, NULL);
        }
}
