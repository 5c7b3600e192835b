/* libvirt-tool.c: a thin command line over vm-backend.h, for the libvirt suite (libvirt-e2e),
 * until the host tool calls the backend itself. Not installed. Works with either backend.
 *
 *   libvirt-tool [--connect URI] agent VM [--persistent]   prints the agent socket (hot-plugs
 *                                                          the channel into a libvirt domain)
 *   libvirt-tool [--connect URI] describe VM               KEY=VALUE lines
 *   libvirt-tool [--connect URI] attach VM USER GUESTUID [--read-only]
 *       what `vmuser attach` will do: agent channel, host user -> record (guest UID/GID given),
 *       home export, vmuser-attach with the tag; prints "UID TAG BUS"
 *   libvirt-tool [--connect URI] export VM USER HOSTUID HOSTGID GUESTUID GUESTGID SOURCE
 *       the home export alone (no agent); prints "TAG BUS"
 *   libvirt-tool [--connect URI] detach VM USER [--force]
 *       vmuser-detach (the guest unmounts the home), then the unexport
 *   libvirt-tool [--connect URI] unexport VM USER [--force] [--timeout MS]
 *   libvirt-tool [--connect URI] list VM                   USER TAG BUS PHASE VIRTIOFSD MOUNTED
 *   libvirt-tool [--connect URI] monitor VM [--hmp] COMMAND
 *
 * Exit status: 0, or the errno of the failure (message on stderr); 1 for usage errors; unexport
 * and detach with --force exit 3 when the VM still holds the device. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host-user.h"
#include "json-util.h"
#include "macro.h"
#include "qga-client.h"
#include "vm-backend.h"

#define AGENT_TIMEOUT_MS 5000
#define AGENT_WAIT_MS 60000 /* a hot-plugged port: udev starts the agent in the guest */
#define UNPLUG_TIMEOUT_MS 30000

static int fail(int r, const struct verr *e) {
        fprintf(stderr, "libvirt-tool: %s\n", verr_text(e, r));
        return r < 0 && -r < 126 ? -r : 125;
}

static int usage(void) {
        fprintf(stderr, "usage: libvirt-tool [--connect URI] agent|describe|list VM [--persistent]\n"
                        "       libvirt-tool [--connect URI] attach VM USER GUESTUID [--read-only]\n"
                        "       libvirt-tool [--connect URI] export VM USER HOSTUID HOSTGID GUESTUID GUESTGID SOURCE\n"
                        "       libvirt-tool [--connect URI] detach|unexport VM USER [--force] [--timeout MS]\n"
                        "       libvirt-tool [--connect URI] monitor VM [--hmp] COMMAND\n");
        return 1;
}

/* Connects and syncs, retrying while the agent in the guest comes up. */
static int agent_connect(struct vm_backend *b, unsigned flags, struct qga_client **ret, struct verr *e) {
        char path[4096];
        struct timespec start, now;
        int k;

        k = vm_backend_agent_socket(b, flags, path, sizeof(path), e);
        if (k < 0)
                return k;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                _cleanup_qga_client_ struct qga_client *c = NULL;
                struct verr why = {};
                k = qga_client_connect(path, AGENT_TIMEOUT_MS, &c, &why);
                if (k >= 0)
                        k = qga_client_sync(c, 2000, &why);
                if (k >= 0) {
                        *ret = TAKE_PTR(c);
                        return 0;
                }
                clock_gettime(CLOCK_MONOTONIC, &now);
                if ((now.tv_sec - start.tv_sec) * 1000 > AGENT_WAIT_MS)
                        return verr_set(e, k, "no agent answers on '%s': %s", path, verr_text(&why, k));
                struct timespec ts = { .tv_nsec = 500 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
}

static int call(struct qga_client *c, const char *command, json_object *args, json_object **ret, struct verr *e) {
        struct qga_error qerr = {};
        int k = qga_client_call(c, command, args, AGENT_TIMEOUT_MS * 2, ret, &qerr, e);
        if (k == -EREMOTEIO)
                return verr_set(e, k, "the agent refused %s: %s: %s", command, qerr.error_class, qerr.desc);
        return k;
}

static int do_attach(struct vm_backend *b, const char *user, uint32_t guest_uid, bool read_only, struct verr *e) {
        _cleanup_qga_client_ struct qga_client *c = NULL;
        _cleanup_json_ json_object *record = NULL, *args = NULL, *home = NULL, *value = NULL;
        struct host_user *hu = NULL;
        struct home_export_info info;
        uint32_t uid = 0;
        int k;

        k = agent_connect(b, VM_BACKEND_AGENT_HOTPLUG, &c, e);
        if (k < 0)
                return k;
        k = host_user_lookup(user, NULL, &hu, e);
        if (k < 0)
                return k;
        struct host_user_options uo = { .has_uid = true, .uid = guest_uid };
        k = host_user_build_record(hu, &uo, &record, e);
        if (k < 0)
                goto finish;
        struct vm_home_params hp = {
                .user = user,
                .host_uid = hu->uid,
                .host_gid = hu->gid,
                .guest_uid = guest_uid,
                .guest_gid = guest_uid,
                .source_dir = hu->home,
                .read_only = read_only,
        };
        k = vm_backend_export_home(b, &hp, &info, e);
        if (k < 0)
                goto finish;

        home = json_object_new_object();
        args = json_object_new_object();
        if (!home || !args || json_object_object_add(home, "tag", json_object_new_string(info.tag)) < 0 ||
            json_object_object_add(home, "fstype", json_object_new_string("virtiofs")) < 0 ||
            (read_only && json_object_object_add(home, "options", json_object_new_string("ro")) < 0) ||
            json_object_object_add(args, "user", json_object_get(record)) < 0 ||
            json_object_object_add(args, "home", json_object_get(home)) < 0) {
                k = -ENOMEM;
                goto undo;
        }
        k = call(c, "vmuser-attach", args, &value, e);
        if (k < 0)
                goto undo;
        if (json_get_uint32(value, "uid", &uid) < 0 || uid != guest_uid) {
                k = verr_set(e, -EBADMSG, "the agent attached %s as uid %u, not %u", user, uid, guest_uid);
                goto undo;
        }
        printf("%u %s %s\n", uid, info.tag, info.bus);
        k = 0;
        goto finish;
undo: {
        struct verr ignore = {};
        (void) vm_backend_unexport_home(b, user, VM_BACKEND_UNEXPORT_FORCE, UNPLUG_TIMEOUT_MS, &ignore);
}
finish:
        if (record)
                host_user_record_erase(record);
        host_user_free(hu);
        return k;
}

static int do_detach(struct vm_backend *b, const char *user, bool force, struct verr *e) {
        _cleanup_qga_client_ struct qga_client *c = NULL;
        _cleanup_json_ json_object *args = NULL, *value = NULL;
        int k;

        k = agent_connect(b, 0, &c, e);
        if (k < 0)
                return k;
        args = json_object_new_object();
        if (!args || json_object_object_add(args, "userName", json_object_new_string(user)) < 0 ||
            (force && json_object_object_add(args, "force", json_object_new_boolean(true)) < 0))
                return -ENOMEM;
        k = call(c, "vmuser-detach", args, &value, e);
        if (k < 0)
                return k;
        k = vm_backend_unexport_home(b, user, force ? VM_BACKEND_UNEXPORT_FORCE : 0, UNPLUG_TIMEOUT_MS, e);
        return k == -ENOENT ? 0 : k;
}

/* One function per verb: argc/argv as main() got them (argv[1] the verb, argv[2] the VM). */
static int verb_agent(struct vm_backend *b, const char *verb, int argc, char *argv[]) {
        struct verr e = {};
        int k;

        if (argc != 3 && (argc != 4 || !streq(argv[3], "--persistent")))
                return usage();
        char path[4096];
        k = vm_backend_agent_socket(b, VM_BACKEND_AGENT_HOTPLUG | (argc == 4 ? VM_BACKEND_AGENT_PERSISTENT : 0),
                                    path, sizeof(path), &e);
        if (k < 0)
                return fail(k, &e);
        printf("%s\n", path);
        return 0;
}

static int verb_describe(struct vm_backend *b, const char *verb, int argc, char *argv[]) {
        struct verr e = {};
        int k;

        if (argc != 3)
                return usage();
        struct vm_backend_info i;
        k = vm_backend_describe(b, &i, &e);
        if (k < 0)
                return fail(k, &e);
        printf("backend=%s\nname=%s\nuri=%s\nuuid=%s\nrunning=%s\nmachine=%s\nagent_socket=%s\n"
               "state_dir=%s\nshared_memory=%d\nfree_ports=%d\n",
               vm_backend_kind_to_string(i.kind), i.name, i.uri, i.uuid, i.running ? "yes" : "no", i.machine,
               i.agent_socket, i.state_dir, i.shared_memory, i.free_ports);
        return 0;
}

static int verb_attach(struct vm_backend *b, const char *verb, int argc, char *argv[]) {
        struct verr e = {};
        int k;

        if (argc != 5 && argc != 6)
                return usage();
        uint32_t uid;
        bool ro = argc == 6 && streq(argv[5], "--read-only");
        if (id_parse(argv[4], &uid) < 0 || (argc == 6 && !ro))
                return usage();
        k = do_attach(b, argv[3], uid, ro, &e);
        return k < 0 ? fail(k, &e) : 0;
}

static int verb_export(struct vm_backend *b, const char *verb, int argc, char *argv[]) {
        struct verr e = {};
        int k;

        if (argc != 9)
                return usage();
        uint32_t ids[4];
        struct home_export_info info;
        for (int i = 0; i < 4; i++)
                if (id_parse(argv[4 + i], &ids[i]) < 0)
                        return usage();
        struct vm_home_params hp = {
                .user = argv[3],
                .host_uid = ids[0],
                .host_gid = ids[1],
                .guest_uid = ids[2],
                .guest_gid = ids[3],
                .source_dir = argv[8],
        };
        k = vm_backend_export_home(b, &hp, &info, &e);
        if (k < 0)
                return fail(k, &e);
        printf("%s %s\n", info.tag, info.bus);
        return 0;
}

/* detach (the user, then the home) and unexport (the home only). */
static int verb_detach(struct vm_backend *b, const char *verb, int argc, char *argv[]) {
        struct verr e = {};
        int k;

        if (argc < 4)
                return usage();
        bool force = false;
        int timeout = UNPLUG_TIMEOUT_MS;
        for (int i = 4; i < argc; i++) {
                uint32_t ms;
                if (streq(argv[i], "--force"))
                        force = true;
                else if (streq(argv[i], "--timeout") && i + 1 < argc && id_parse(argv[i + 1], &ms) == 0)
                        timeout = (int) ms, i++;
                else
                        return usage();
        }
        if (streq(verb, "detach"))
                k = do_detach(b, argv[3], force, &e);
        else
                k = vm_backend_unexport_home(b, argv[3], force ? VM_BACKEND_UNEXPORT_FORCE : 0, timeout, &e);
        if (k < 0)
                return fail(k, &e);
        return k == 1 ? 3 : 0;
}

static int verb_list(struct vm_backend *b, const char *verb, int argc, char *argv[]) {
        struct verr e = {};
        int k;

        if (argc != 3)
                return usage();
        _cleanup_free_ struct home_export_info *list = NULL;
        size_t n;
        k = vm_backend_list_exports(b, &list, &n, &e);
        if (k < 0)
                return fail(k, &e);
        for (size_t i = 0; i < n; i++)
                printf("%s %s %s %s %s %s\n", list[i].user, list[i].tag, list[i].bus[0] ? list[i].bus : "-",
                       list[i].phase, virtiofsd_state_to_string(list[i].virtiofsd_state),
                       list[i].staging_mounted ? "mounted" : "unmounted");
        return 0;
}

static int verb_monitor(struct vm_backend *b, const char *verb, int argc, char *argv[]) {
        struct verr e = {};
        int k;

        if (argc != 4 && (argc != 5 || !streq(argv[3], "--hmp")))
                return usage();
        _cleanup_free_ char *reply = NULL;
        k = vm_backend_monitor_command(b, argv[argc - 1], argc == 5, &reply, &e);
        if (k < 0)
                return fail(k, &e);
        printf("%s\n", reply);
        return 0;
}

static const struct {
        const char *verb;
        int (*run)(struct vm_backend *b, const char *verb, int argc, char *argv[]);
} verbs[] = {
        { "agent", verb_agent },
        { "describe", verb_describe },
        { "attach", verb_attach },
        { "export", verb_export },
        { "detach", verb_detach },
        { "unexport", verb_detach },
        { "list", verb_list },
        { "monitor", verb_monitor },
};

int main(int argc, char *argv[]) {
        _cleanup_vm_backend_ struct vm_backend *b = NULL;
        struct vm_backend_options o = {};
        struct verr e = {};
        int k;

        if (argc >= 3 && streq(argv[1], "--connect")) {
                o.connect_uri = argv[2];
                argv += 2, argc -= 2;
        }
        if (argc < 3)
                return usage();
        k = vm_backend_open(argv[2], &o, &b, &e);
        if (k < 0)
                return fail(k, &e);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[1], verbs[i].verb))
                        return verbs[i].run(b, argv[1], argc, argv);
        return usage();
}
