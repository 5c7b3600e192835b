/* main.c: the vmuser command line.
 *
 * Flow: the first non-option argument picks the subcommand -> its own getopt table (each with
 * --help) fills an options struct -> the subcommand runs (attach.c, detach.c, list.c, status.c)
 * and returns an outcome -> exit_code() maps it to the exit status documented in vmuser(1).
 * Nothing else happens here: no I/O beyond help texts and usage errors. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "home-spec.h"
#include "macro.h"
#include "names.h"
#include "output.h"
#include "vm-backend.h"
#include "vmuser.h"

/* The documented exit statuses (vmuser(1), EXIT STATUS). Never renumber. */
static int exit_code(enum outcome o) {
        static const int codes[_OUTCOME_MAX] = {
                [OUTCOME_OK] = 0,
                [OUTCOME_FAILED] = 1,
                [OUTCOME_USAGE] = 2,
                [OUTCOME_UNREACHABLE] = 3,
                [OUTCOME_REFUSED] = 4,
                [OUTCOME_BUSY] = 5,
                [OUTCOME_PARTIAL] = 6,
                [OUTCOME_HOST_USER] = 7,
        };
        return o >= 0 && o < _OUTCOME_MAX ? codes[o] : 1;
}

#define COMMON_HELP                                                                                     \
        "  --connect URI      VM is a domain of the libvirt at URI (libvirt:DOMAIN uses\n"              \
        "                     " VM_BACKEND_LIBVIRT_DEFAULT_URI ")\n"                                      \
        "  --agent SOCKET     bare QEMU: the agent socket (default: VM/agent.sock)\n"                   \
        "  --qmp SOCKET       bare QEMU: the QMP socket (default: VM/qmp.sock)\n"                       \
        "  --timeout SECONDS  per-request timeout (default 5)\n"                                        \
        "  --json             machine-readable output, one JSON object per line\n"                      \
        "  -h --help          show this help\n"

static void help_main(void) {
        printf("Usage: vmuser [--version] COMMAND [OPTIONS] VM [USER...]\n\n"
               "Push host users into a running VM, and take them out again.\n\n"
               "Commands:\n"
               "  attach [OPTIONS] VM USER...   push host users and their homes into the running VM\n"
               "  detach [--force] VM USER...   remove them and their home exports again\n"
               "  list [--json] VM              who is attached, home exported/mounted?, sessions\n"
               "  status [--json] VM            agent and QMP reachable?, version, capabilities\n"
               "  apply [OPTIONS] MANIFEST      converge many VMs to the users a manifest declares\n\n"
               "VM is a directory holding agent.sock and qmp.sock, or a name looked up in\n"
               "$VMUSER_VM_DIR (default " VM_BACKEND_QEMU_VM_DIR_DEFAULT "), or libvirt:DOMAIN, a libvirt domain\n"
               "(" VM_BACKEND_LIBVIRT_DEFAULT_URI ", or --connect URI DOMAIN). 'vmuser COMMAND --help' and\n"
               "vmuser(1) tell more.\n");
}

static void help_attach(void) {
        printf("Usage: vmuser attach [OPTIONS] VM USER...\n\n"
               "Push host users (NSS, shadow hash, ~/.ssh/authorized_keys) into the running VM as\n"
               "transient user records, and export each one's host home into the VM (virtio-fs,\n"
               "hot-plugged through QMP, idmapped to the guest UID; the guest mounts it at login).\n"
               "All users share one connection to the guest agent.\n\n"
               "Options:\n"
               "  --uid N            guest UID (and GID) of the one user; must lie in the agent's\n"
               "                     range (default: the agent allocates one)\n"
               "  --home-dir PATH    guest home directory, %%u is the user name\n"
               "                     (default " "/run/vmhost/home/%%u)\n"
               "  --shell no|yes|PATH  login shell: the guest's default (no), the host's (yes),\n"
               "                     or PATH (default no)\n"
               "  --group GROUP      also make the user a member of this guest group (repeatable)\n"
               "  --ssh-key FILE     add the public keys in FILE (repeatable)\n"
               "  --no-authorized-keys  do not copy ~/.ssh/authorized_keys\n"
               "  --no-password      do not copy the password hash\n"
               "  --home-source DIR  export DIR (%%u: user name; owned by the user) instead of\n"
               "                     the host home\n"
               "  --read-only        export the home read-only (and mount it ro in the guest)\n"
               "  --no-home          export no home and send no home spec\n"
               "  --home-tag TAG     export nothing, send a home spec for tag TAG (%%u: user name):\n"
               "                     for shares set up otherwise, and tests\n"
               "  --home-fstype TYPE the --home-tag spec's type: virtiofs (default), tmpfs, bind\n"
               "  --replace          replace a different record already attached under the name\n"
               "  --persistent       libvirt: also add the vmuser channel to the stored domain\n"
               "                     definition (it is hot-plugged into the running domain anyway)\n"
               COMMON_HELP);
}

static void help_detach(void) {
        printf("Usage: vmuser detach [OPTIONS] VM USER...\n\n"
               "Remove attached users from the running VM, then take their home exports away\n"
               "(hot-unplug, virtiofsd stopped). A user with sessions is refused unless --force\n"
               "is given; then the sessions are ended and the home unmounted. A home export whose\n"
               "user the guest no longer knows (see 'vmuser list') is removed as well.\n\n"
               "Options:\n"
               "  --force            end the user's sessions first; remove the host side of the\n"
               "                     export even when the guest does not release the device\n"
               COMMON_HELP);
}

static void help_list(void) {
        printf("Usage: vmuser list [OPTIONS] VM\n\n"
               "Show the users attached to the VM: UIDs, home, whether it is mounted, sessions,\n"
               "and the home exports on this host (tag, virtiofsd), also those the guest forgot.\n\n"
               "Options:\n" COMMON_HELP);
}

static void help_status(void) {
        printf("Usage: vmuser status [OPTIONS] VM\n\n"
               "Tell whether the VM's agent answers, its version, the commands it offers, and\n"
               "whether QEMU's QMP socket answers (needed for home exports); for a libvirt domain\n"
               "also whether it runs, has shared memory and free PCIe root ports.\n\n"
               "Options:\n" COMMON_HELP);
}

static int usage_error(const char *verb, const char *fmt, ...) _printf_(2, 3);
static int usage_error(const char *verb, const char *fmt, ...) {
        char text[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        log_error("%s%s%s (see 'vmuser %s%s--help')", strempty(verb), verb ? ": " : "", text, strempty(verb),
                  verb ? " " : "");
        return exit_code(OUTCOME_USAGE);
}

enum {
        ARG_AGENT = 0x100,
        ARG_QMP,
        ARG_TIMEOUT,
        ARG_JSON,
        ARG_UID,
        ARG_HOME_DIR,
        ARG_SHELL,
        ARG_GROUP,
        ARG_SSH_KEY,
        ARG_NO_AUTHORIZED_KEYS,
        ARG_NO_PASSWORD,
        ARG_HOME_TAG,
        ARG_HOME_FSTYPE,
        ARG_NO_HOME,
        ARG_HOME_SOURCE,
        ARG_READ_ONLY,
        ARG_REPLACE,
        ARG_FORCE,
        ARG_VERSION,
        ARG_CONNECT,
        ARG_PERSISTENT,
        ARG_CHECK,
        ARG_DIFF,
        ARG_JOBS,
        ARG_NO_PRUNE,
};

#define COMMON_OPTIONS                                             \
        { "connect", required_argument, NULL, ARG_CONNECT },       \
        { "agent", required_argument, NULL, ARG_AGENT },           \
        { "qmp", required_argument, NULL, ARG_QMP },               \
        { "timeout", required_argument, NULL, ARG_TIMEOUT },       \
        { "json", no_argument, NULL, ARG_JSON },                   \
        { "help", no_argument, NULL, 'h' }

/* Handles an option every subcommand has: 1 handled, 0 not one of them, <0 invalid. */
static int parse_common(int c, const char *arg, struct common_options *o, const char *verb) {
        switch (c) {
        case ARG_CONNECT:
                if (!*arg)
                        return usage_error(verb, "--connect needs a libvirt URI, e.g. " VM_BACKEND_LIBVIRT_DEFAULT_URI),
                               -EINVAL;
                o->connect_uri = arg;
                return 1;
        case ARG_AGENT:
                o->agent_socket = arg;
                return 1;
        case ARG_QMP:
                o->qmp_socket = arg;
                return 1;
        case ARG_TIMEOUT: {
                char *end;
                errno = 0;
                double s = strtod(arg, &end);
                if (errno != 0 || end == arg || *end != '\0' || !isfinite(s) || s <= 0 || s > 3600)
                        return usage_error(verb, "--timeout '%s' is not a number of seconds from 0.001 to 3600", arg), -EINVAL;
                o->timeout_ms = (int) (s * 1000.0 + 0.5);
                if (o->timeout_ms < 1)
                        o->timeout_ms = 1;
                return 1;
        }
        case ARG_JSON:
                o->json = true;
                return 1;
        default:
                return 0;
        }
}

/* NULL-terminated list with one more entry (argv strings are not copied). */
static int strv_push(char ***v, size_t *n, char *s) {
        char **nv = realloc(*v, (*n + 2) * sizeof(char *));
        if (!nv)
                return -ENOMEM;
        nv[(*n)++] = s;
        nv[*n] = NULL;
        *v = nv;
        return 0;
}

static int parse_bool(const char *s) {
        static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (streq(s, yes[i]))
                        return 1;
                if (streq(s, no[i]))
                        return 0;
        }
        return -EINVAL;
}

/* The --group and --ssh-key values, collected while parsing. */
struct attach_lists {
        char **groups;
        size_t n_groups;
        char **keys;
        size_t n_keys;
};

static void attach_lists_done(struct attach_lists *l) {
        free(l->groups);
        free(l->keys);
}

/* One attach option (not a common one, not -h) into o: 0, or the exit code to leave with. */
static int parse_attach_option(int c, char *arg, struct attach_options *o, struct attach_lists *l) {
        int r;

        switch (c) {
        case ARG_UID:
                if (id_parse(arg, &o->uid) < 0 || id_is_special(o->uid))
                        return usage_error("attach", "--uid '%s' is not a usable UID", arg);
                o->has_uid = true;
                break;
        case ARG_HOME_DIR:
                o->home_dir = arg;
                break;
        case ARG_SHELL:
                r = parse_bool(arg);
                if (r >= 0)
                        o->shell = r ? HOST_USER_SHELL_FROM_HOST : HOST_USER_SHELL_GUEST_DEFAULT;
                else if (path_is_normalized_absolute(arg)) {
                        o->shell = HOST_USER_SHELL_PATH;
                        o->shell_path = arg;
                } else
                        return usage_error("attach", "--shell '%s' is neither yes, no nor an absolute path", arg);
                break;
        case ARG_GROUP:
                if (!name_is_valid(arg))
                        return usage_error("attach", "--group '%s' is not a valid group name", arg);
                if (strv_push(&l->groups, &l->n_groups, arg) < 0)
                        return exit_code(OUTCOME_FAILED);
                break;
        case ARG_SSH_KEY:
                if (strv_push(&l->keys, &l->n_keys, arg) < 0)
                        return exit_code(OUTCOME_FAILED);
                break;
        case ARG_NO_AUTHORIZED_KEYS:
                o->no_authorized_keys = true;
                break;
        case ARG_NO_PASSWORD:
                o->no_password = true;
                break;
        case ARG_HOME_TAG:
                o->home_tag = arg;
                break;
        case ARG_HOME_FSTYPE:
                if (!streq(arg, "virtiofs") && !streq(arg, "tmpfs") && !streq(arg, "bind"))
                        return usage_error("attach", "--home-fstype '%s' is not virtiofs, tmpfs or bind", arg);
                o->home_fstype = arg;
                break;
        case ARG_NO_HOME:
                o->no_home = true;
                break;
        case ARG_HOME_SOURCE:
                if (arg[0] != '/')
                        return usage_error("attach", "--home-source '%s' is not an absolute path", arg);
                o->home_source = arg;
                break;
        case ARG_READ_ONLY:
                o->read_only = true;
                break;
        case ARG_REPLACE:
                o->replace = true;
                break;
        case ARG_PERSISTENT:
                o->persistent = true;
                break;
        default:
                return exit_code(OUTCOME_USAGE);
        }
        return 0;
}

static int run_attach(int argc, char *argv[]) {
        static const struct option options[] = {
                COMMON_OPTIONS,
                { "uid", required_argument, NULL, ARG_UID },
                { "home-dir", required_argument, NULL, ARG_HOME_DIR },
                { "shell", required_argument, NULL, ARG_SHELL },
                { "group", required_argument, NULL, ARG_GROUP },
                { "ssh-key", required_argument, NULL, ARG_SSH_KEY },
                { "no-authorized-keys", no_argument, NULL, ARG_NO_AUTHORIZED_KEYS },
                { "no-password", no_argument, NULL, ARG_NO_PASSWORD },
                { "home-tag", required_argument, NULL, ARG_HOME_TAG },
                { "home-fstype", required_argument, NULL, ARG_HOME_FSTYPE },
                { "no-home", no_argument, NULL, ARG_NO_HOME },
                { "home-source", required_argument, NULL, ARG_HOME_SOURCE },
                { "read-only", no_argument, NULL, ARG_READ_ONLY },
                { "replace", no_argument, NULL, ARG_REPLACE },
                { "persistent", no_argument, NULL, ARG_PERSISTENT },
                {},
        };
        struct attach_options o = { .common.timeout_ms = VMUSER_TIMEOUT_MS_DEFAULT };
        _cleanup_(attach_lists_done) struct attach_lists l = {};
        struct verr e = {};
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                r = parse_common(c, optarg, &o.common, "attach");
                if (r < 0)
                        return exit_code(OUTCOME_USAGE);
                if (r > 0)
                        continue;
                if (c == 'h') {
                        help_attach();
                        return 0;
                }
                r = parse_attach_option(c, optarg, &o, &l);
                if (r != 0)
                        return r;
        }
        if (argc - optind < 2)
                return usage_error("attach", "expected VM and at least one USER");
        if (o.no_home && o.home_tag)
                return usage_error("attach", "--no-home and --home-tag exclude each other");
        if (o.home_fstype && !o.home_tag)
                return usage_error("attach", "--home-fstype needs --home-tag");

        o.common.vm = argv[optind];
        o.users = argv + optind + 1;
        o.n_users = (size_t) (argc - optind - 1);
        o.groups = l.groups;
        o.ssh_key_files = l.keys;

        r = attach_check_options(&o, &e);
        if (r == -ENOMEM)
                return exit_code(OUTCOME_FAILED);
        if (r < 0)
                return usage_error("attach", "%s", verr_text(&e, r));

        return exit_code(attach_run(&o));
}

static int run_detach(int argc, char *argv[]) {
        static const struct option options[] = {
                COMMON_OPTIONS,
                { "force", no_argument, NULL, ARG_FORCE },
                {},
        };
        struct detach_options o = { .common.timeout_ms = VMUSER_TIMEOUT_MS_DEFAULT };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                r = parse_common(c, optarg, &o.common, "detach");
                if (r < 0)
                        return exit_code(OUTCOME_USAGE);
                if (r > 0)
                        continue;
                switch (c) {
                case 'h':
                        help_detach();
                        return 0;
                case ARG_FORCE:
                        o.force = true;
                        break;
                default:
                        return exit_code(OUTCOME_USAGE);
                }
        }
        if (argc - optind < 2)
                return usage_error("detach", "expected VM and at least one USER");
        o.common.vm = argv[optind];
        o.users = argv + optind + 1;
        o.n_users = (size_t) (argc - optind - 1);
        for (size_t i = 0; i < o.n_users; i++)
                if (!name_is_valid(o.users[i]))
                        return usage_error("detach", "'%s' is not a valid user name", o.users[i]);

        return exit_code(detach_run(&o));
}

static void help_apply(void) {
        printf("Usage: vmuser apply [OPTIONS] MANIFEST\n\n"
               "Converge VMs to the users MANIFEST (JSON, see vmuser-apply(5); - reads stdin)\n"
               "declares for them: attach the missing, replace the changed, detach those vmuser\n"
               "attached that are no longer declared. All VMs in parallel, one agent connection\n"
               "each; a change that needs a user to log out first is reported as pending.\n\n"
               "Options:\n"
               "  --check            change nothing; exit 2 when something would change\n"
               "  --diff             show each user that changes (+ added, ~ replaced, - removed,\n"
               "                     ! pending, x failed)\n"
               "  --jobs N           at most N VMs at a time (default 16)\n"
               "  --no-prune         do not detach users the manifest does not declare\n"
               "  --json             one JSON object per VM: added, replaced, removed, unchanged,\n"
               "                     pending, failed, error, changed\n"
               "  --connect URI      libvirt URI for libvirt:PATTERN entries (default\n"
               "                     " VM_BACKEND_LIBVIRT_DEFAULT_URI ")\n"
               "  --timeout SECONDS  per-request timeout (default 5)\n"
               "  -h --help          show this help\n\n"
               "Exit status: 0 done or nothing to do, 1 some VM failed, 2 --check found changes.\n");
}

static int run_apply(int argc, char *argv[]) {
        static const struct option options[] = {
                COMMON_OPTIONS,
                { "check", no_argument, NULL, ARG_CHECK },
                { "diff", no_argument, NULL, ARG_DIFF },
                { "jobs", required_argument, NULL, ARG_JOBS },
                { "no-prune", no_argument, NULL, ARG_NO_PRUNE },
                {},
        };
        struct common_options c = { .timeout_ms = VMUSER_TIMEOUT_MS_DEFAULT };
        struct apply_options o = { .jobs = 16 };
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (ch == ARG_AGENT || ch == ARG_QMP)
                        return usage_error("apply", "--agent and --qmp name one VM's sockets; a manifest names VMs");
                r = parse_common(ch, optarg, &c, "apply");
                if (r < 0)
                        return exit_code(OUTCOME_USAGE);
                if (r > 0)
                        continue;
                switch (ch) {
                case 'h':
                        help_apply();
                        return 0;
                case ARG_CHECK:
                        o.check = true;
                        break;
                case ARG_DIFF:
                        o.diff = true;
                        break;
                case ARG_NO_PRUNE:
                        o.no_prune = true;
                        break;
                case ARG_JOBS: {
                        uint32_t jobs;
                        if (id_parse(optarg, &jobs) < 0 || jobs < 1 || jobs > 1024)
                                return usage_error("apply", "--jobs '%s' is not a number from 1 to 1024", optarg);
                        o.jobs = jobs;
                        break;
                }
                default:
                        return exit_code(OUTCOME_USAGE);
                }
        }
        if (argc - optind != 1)
                return usage_error("apply", "expected exactly one MANIFEST");
        o.manifest = argv[optind];
        o.connect_uri = c.connect_uri;
        o.timeout_ms = c.timeout_ms;
        o.json = c.json;
        return apply_run(&o);
}

/* list and status take the same options and one VM. */
static int run_simple(int argc, char *argv[], const char *verb, void (*help)(void),
                      enum outcome (*run)(const struct common_options *o)) {
        static const struct option options[] = {
                COMMON_OPTIONS,
                {},
        };
        struct common_options o = { .timeout_ms = VMUSER_TIMEOUT_MS_DEFAULT };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                r = parse_common(c, optarg, &o, verb);
                if (r < 0)
                        return exit_code(OUTCOME_USAGE);
                if (r > 0)
                        continue;
                if (c == 'h') {
                        help();
                        return 0;
                }
                return exit_code(OUTCOME_USAGE);
        }
        if (argc - optind != 1)
                return usage_error(verb, "expected exactly one VM");
        o.vm = argv[optind];
        return exit_code(run(&o));
}

static int run_list(int argc, char *argv[]) {
        return run_simple(argc, argv, "list", help_list, list_run);
}

static int run_status(int argc, char *argv[]) {
        return run_simple(argc, argv, "status", help_status, status_run);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        static const struct {
                const char *name;
                int (*run)(int argc, char *argv[]);
        } verbs[] = {
                { "attach", run_attach },
                { "detach", run_detach },
                { "list", run_list },
                { "status", run_status },
                { "apply", run_apply },
        };
        int c;

        /* A guest that closes the channel must give an error, not kill us. */
        signal(SIGPIPE, SIG_IGN);

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help_main();
                        return 0;
                case ARG_VERSION:
                        printf("vmuser " VMUSER_VERSION "\n");
                        return 0;
                default:
                        return exit_code(OUTCOME_USAGE);
                }
        }
        if (optind >= argc)
                return usage_error(NULL, "no command given: attach, detach, list, status or apply");

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[optind], verbs[i].name)) {
                        int sub_argc = argc - optind;
                        char **sub_argv = argv + optind;
                        optind = 0; /* restart getopt on the subcommand's arguments */
                        return verbs[i].run(sub_argc, sub_argv);
                }
        return usage_error(NULL, "unknown command '%s': attach, detach, list, status or apply", argv[optind]);
}
