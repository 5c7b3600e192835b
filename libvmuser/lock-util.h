/* lock-util.h: taking a file lock with a timeout (see lock-util.c). */
#pragma once

/* flock(operation) on fd (LOCK_EX or LOCK_SH), retried every interval_ms while another holder
 * has it, until timeout_ms have passed (at least one try is made). 0 when locked, -ETIMEDOUT,
 * or -errno from flock(). */
int flock_timeout(int fd, int operation, int timeout_ms, int interval_ms);
