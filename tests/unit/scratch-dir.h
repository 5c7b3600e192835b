/* scratch-dir.h: a fresh directory under /tmp for one unit test (a cmocka set-up and
 * tear-down pair), named after the test program, opened as an O_DIRECTORY fd. */
#pragma once

struct scratch {
        char path[64];
        int fd;
};

/* cmocka set-up: *state becomes a struct scratch with a new, empty directory. */
int scratch_setup(void **state);

/* cmocka tear-down: closes the fd, removes the tree, frees the struct; -1 if rm failed. */
int scratch_teardown(void **state);
