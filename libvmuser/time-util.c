/* time-util.c: the one clock every bounded wait in vmuser measures against.
 *
 * A caller computes a deadline once (now_ms() + timeout_ms), then asks ms_left() before each
 * poll() or retry, so a loop of short waits never outlives the caller's timeout. */
#include "time-util.h"

#include <limits.h>
#include <time.h>

int64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ms_left(int64_t deadline) {
        int64_t left = deadline - now_ms();

        if (left <= 0)
                return 0;
        return left > INT_MAX ? INT_MAX : (int) left;
}

void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);
}
