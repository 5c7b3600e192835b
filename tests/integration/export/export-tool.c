/* export-tool.c: a thin command line over home-export.h, for the end-to-end test on a real guest
 * (vm-e2e) until the host tool calls the library itself. Not installed.
 *
 *   export-tool export VMDIR USER HOSTUID HOSTGID GUESTUID GUESTGID SOURCE [--read-only]
 *       prints "TAG BUS"
 *   export-tool unexport VMDIR USER [--force] [--timeout MS]
 *   export-tool list VMDIR
 *       one line per user: USER TAG BUS PHASE VIRTIOFSD-STATE MOUNTED
 *
 * Exit status: 0, or the errno of the failure (the message goes to stderr); 1 for usage errors;
 * unexport with --force exits 3 when QEMU still holds the device. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "home-export.h"
#include "macro.h"

static int fail(int r, const struct verr *e) {
        fprintf(stderr, "export-tool: %s\n", verr_text(e, r));
        return r < 0 && -r < 126 ? -r : 125;
}

static int parse_id(const char *s, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || !*s || v > 0xfffffffful)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

static int usage(void) {
        fprintf(stderr, "usage: export-tool export VMDIR USER HOSTUID HOSTGID GUESTUID GUESTGID SOURCE [--read-only]\n"
                        "       export-tool unexport VMDIR USER [--force] [--timeout MS]\n"
                        "       export-tool list VMDIR\n");
        return 1;
}

int main(int argc, char *argv[]) {
        struct verr e = {};
        int r;

        if (argc < 3)
                return usage();

        if (streq(argv[1], "export") && (argc == 9 || argc == 10)) {
                unsigned ids[4];
                struct home_export_info info;
                for (int i = 0; i < 4; i++)
                        if (parse_id(argv[4 + i], &ids[i]) < 0)
                                return usage();
                struct home_export_params p = {
                        .vm_dir = argv[2],
                        .user = argv[3],
                        .host_uid = ids[0],
                        .host_gid = ids[1],
                        .guest_uid = ids[2],
                        .guest_gid = ids[3],
                        .source_dir = argv[8],
                        .read_only = argc == 10 && streq(argv[9], "--read-only"),
                };
                if (argc == 10 && !p.read_only)
                        return usage();
                r = home_export(&p, &info, NULL, &e);
                if (r < 0)
                        return fail(r, &e);
                printf("%s %s\n", info.tag, info.bus);
                return 0;
        }

        if (streq(argv[1], "unexport") && argc >= 4) {
                struct home_unexport_params p = { .vm_dir = argv[2], .user = argv[3] };
                for (int i = 4; i < argc; i++) {
                        unsigned ms;
                        if (streq(argv[i], "--force"))
                                p.flags |= HOME_UNEXPORT_FORCE;
                        else if (streq(argv[i], "--timeout") && i + 1 < argc && parse_id(argv[i + 1], &ms) == 0)
                                p.unplug_timeout_ms = (int) ms, i++;
                        else
                                return usage();
                }
                r = home_unexport(&p, &e);
                if (r < 0)
                        return fail(r, &e);
                return r == 1 ? 3 : 0;
        }

        if (streq(argv[1], "list") && argc == 3) {
                _cleanup_free_ struct home_export_info *list = NULL;
                size_t n;
                r = home_export_list(argv[2], &list, &n, &e);
                if (r < 0)
                        return fail(r, &e);
                for (size_t i = 0; i < n; i++)
                        printf("%s %s %s %s %s %s\n", list[i].user, list[i].tag, list[i].bus, list[i].phase,
                               virtiofsd_state_to_string(list[i].virtiofsd_state),
                               list[i].staging_mounted ? "mounted" : "unmounted");
                return 0;
        }
        return usage();
}
