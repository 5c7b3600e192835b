/* scratch-dir.c: see scratch-dir.h. The directory is /tmp/PROGRAM.XXXXXX (mkdtemp, 0700); the
 * tear-down removes it with rm -rf, which a test's leftover files or subdirectories do not stop. */
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "scratch-dir.h"

int scratch_setup(void **state) {
        struct scratch *s = calloc(1, sizeof(*s));
        assert_non_null(s);
        snprintf(s->path, sizeof(s->path), "/tmp/%.40s.XXXXXX", program_invocation_short_name);
        assert_non_null(mkdtemp(s->path));
        s->fd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(s->fd >= 0);
        *state = s;
        return 0;
}

int scratch_teardown(void **state) {
        struct scratch *s = *state;
        char cmd[128];
        close(s->fd);
        snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", s->path);
        int r = system(cmd);
        free(s);
        return r == 0 ? 0 : -1;
}
