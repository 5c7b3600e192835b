/* main.c: vmuser-agent, the guest side of vmuser.
 *
 * Parses the command line, opens the state directories (replaying any change a crash
 * interrupted), sets up one transport on an sd-event loop, tells systemd it is ready, and serves
 * until SIGTERM/SIGINT (or EOF with --stdio). Everything else lives in agent.h's request path
 * and the shared library; this file only wires and translates errors into log lines. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "agent.h"
#include "macro.h"
#include "names.h"
#include "paths.h"
#include "reaper.h"
#include "strv.h"
#include "transport.h"
#include "varlink.h"

static void help(void) {
        printf("Usage: vmuser-agent [OPTIONS]\n\n"
               "Install host-pushed users as transient systemd userdb records.\n\n"
               "Transport (one of):\n"
               "  --device PATH        virtio-serial port (default " VMUSER_AGENT_PORT ")\n"
               "  --listen PATH        UNIX stream socket, one client at a time\n"
               "  --stdio              requests on stdin, replies on stdout\n\n"
               "Options:\n"
               "  --uid-min N          lowest UID/GID to install or allocate (default %u)\n"
               "  --uid-max N          highest UID/GID (default %u)\n"
               "  --allow-rpcs LIST    comma-separated commands to allow (all others disabled)\n"
               "  --block-rpcs LIST    comma-separated commands to disable\n"
               "  --run-reserve PCT    refuse a new user that would leave less than PCT%% of the\n"
               "                       records' file system (blocks or inodes) free (default %u, 0-%u)\n"
               "  --host-mounts        homes are in PID 1's mount namespace: read its mountinfo,\n"
               "                       unmount through systemd\n"
               "  --userdb-dir PATH    drop-in records (default " VMUSER_USERDB_DIR "; with --userdb=varlink\n"
               "                       only read, for users attached as drop-ins before an upgrade)\n"
               "  --state-dir PATH     agent state (default " VMUSER_STATE_DIR ")\n"
               "  --userdb MODE        how NSS finds the users: varlink (the default: the agent's userdb\n"
               "                       varlink service, records in one file in --state-dir) or dropin\n"
               "                       (files in --userdb-dir, read by nss-systemd itself)\n"
               "  --varlink-socket PATH  the service's socket (default " VMUSER_VARLINK_SOCKET ")\n"
               "  --cleanup-root PATH  look for a detached UID's leftovers below PATH (default /; tests)\n"
               "  -h --help            show this help\n"
               "     --version         show the version\n",
               VMUSER_UID_MIN_DEFAULT, VMUSER_UID_MAX_DEFAULT, USERDB_RESERVE_PERCENT_DEFAULT,
               USERDB_RESERVE_PERCENT_MAX);
}

/* What the command line asked for. config.allow_rpcs/block_rpcs point into allow/block. */
struct options {
        struct agent_config config;
        char **allow, **block;
        enum transport_kind kind;
        const char *path; /* NULL with TRANSPORT_STDIO */
};

static void options_done(struct options *o) {
        strv_free(TAKE_PTR(o->allow));
        strv_free(TAKE_PTR(o->block));
        o->config.allow_rpcs = o->config.block_rpcs = NULL;
}

enum {
        ARG_DEVICE = 0x100, ARG_LISTEN, ARG_STDIO, ARG_UID_MIN, ARG_UID_MAX, ARG_ALLOW, ARG_BLOCK,
        ARG_HOST_MOUNTS, ARG_USERDB_DIR, ARG_STATE_DIR, ARG_CLEANUP_ROOT, ARG_VERSION, ARG_RUN_RESERVE,
        ARG_USERDB, ARG_VARLINK_SOCKET
};

static int parse_uid_bound(int c, const char *arg, struct options *o) {
        uint32_t v;

        if (id_parse(arg, &v) < 0 || id_is_special(v)) {
                fprintf(stderr, "vmuser-agent: invalid %s '%s'\n", c == ARG_UID_MIN ? "--uid-min" : "--uid-max",
                        arg);
                return -EINVAL;
        }
        if (c == ARG_UID_MIN)
                o->config.range.min = v;
        else
                o->config.range.max = v;
        return 0;
}

static int parse_rpc_list(int c, const char *arg, struct options *o) {
        /* Fail closed: a list that could not be built must not become "no list". */
        char ***list = c == ARG_ALLOW ? &o->allow : &o->block;

        if (c == ARG_ALLOW)
                o->config.allow_rpcs = NULL;
        else
                o->config.block_rpcs = NULL;
        strv_free(TAKE_PTR(*list));
        if (strv_split_commas(arg, list) < 0) {
                fprintf(stderr, "vmuser-agent: out of memory parsing %s\n",
                        c == ARG_ALLOW ? "--allow-rpcs" : "--block-rpcs");
                return -ENOMEM;
        }
        if (c == ARG_ALLOW)
                o->config.allow_rpcs = o->allow;
        else
                o->config.block_rpcs = o->block;
        return 0;
}

static int parse_run_reserve(const char *arg, struct options *o) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || *arg == '-' || v > USERDB_RESERVE_PERCENT_MAX) {
                fprintf(stderr, "vmuser-agent: invalid --run-reserve '%s' (a percentage, 0-%u)\n", arg,
                        USERDB_RESERVE_PERCENT_MAX);
                return -EINVAL;
        }
        o->config.reserve_percent = (unsigned) v;
        return 0;
}

static int parse_userdb_mode(const char *arg, struct options *o) {
        if (streq(arg, "dropin"))
                o->config.userdb_mode = AGENT_USERDB_DROPIN;
        else if (streq(arg, "varlink"))
                o->config.userdb_mode = AGENT_USERDB_VARLINK;
        else {
                fprintf(stderr, "vmuser-agent: invalid --userdb '%s' (varlink or dropin)\n", arg);
                return -EINVAL;
        }
        return 0;
}

/* The checks that need the whole command line. */
static int check_options(const struct options *o) {
        if (o->config.range.min > o->config.range.max) {
                fprintf(stderr, "vmuser-agent: --uid-min %u is above --uid-max %u\n", o->config.range.min,
                        o->config.range.max);
                return -EINVAL;
        }
        for (char **p = o->allow; p && *p; p++)
                if (!agent_command_find(*p)) {
                        fprintf(stderr, "vmuser-agent: --allow-rpcs: unknown command '%s'\n", *p);
                        return -EINVAL;
                }
        for (char **p = o->block; p && *p; p++)
                if (!agent_command_find(*p)) {
                        fprintf(stderr, "vmuser-agent: --block-rpcs: unknown command '%s'\n", *p);
                        return -EINVAL;
                }
        if (o->config.userdb_mode != AGENT_USERDB_DROPIN) {
                const char *service = strrchr(o->config.varlink_socket, '/');
                if (!service || !service[1] || strchr(service, ':')) {
                        fprintf(stderr, "vmuser-agent: invalid --varlink-socket '%s' (an absolute path; its file name, "
                                "the service name, without ':')\n", o->config.varlink_socket);
                        return -EINVAL;
                }
        }
        return 0;
}

static const struct option long_options[] = {
        { "device", required_argument, NULL, ARG_DEVICE },
        { "listen", required_argument, NULL, ARG_LISTEN },
        { "stdio", no_argument, NULL, ARG_STDIO },
        { "uid-min", required_argument, NULL, ARG_UID_MIN },
        { "uid-max", required_argument, NULL, ARG_UID_MAX },
        { "allow-rpcs", required_argument, NULL, ARG_ALLOW },
        { "block-rpcs", required_argument, NULL, ARG_BLOCK },
        { "host-mounts", no_argument, NULL, ARG_HOST_MOUNTS },
        { "run-reserve", required_argument, NULL, ARG_RUN_RESERVE },
        { "userdb-dir", required_argument, NULL, ARG_USERDB_DIR },
        { "state-dir", required_argument, NULL, ARG_STATE_DIR },
        { "userdb", required_argument, NULL, ARG_USERDB },
        { "varlink-socket", required_argument, NULL, ARG_VARLINK_SOCKET },
        { "cleanup-root", required_argument, NULL, ARG_CLEANUP_ROOT },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, ARG_VERSION },
        {},
};

/* Returns 1 to run, 0 to exit successfully (--help, --version), -ENOMEM (exit 1) or -EINVAL (exit
 * 2, the message printed). */
static int parse_argv(int argc, char *argv[], struct options *o) {
        int c, r = 0, transports = 0;

        while ((c = getopt_long(argc, argv, "h", long_options, NULL)) >= 0) {
                switch (c) {
                case ARG_DEVICE:
                case ARG_LISTEN:
                case ARG_STDIO:
                        o->kind = c == ARG_DEVICE ? TRANSPORT_DEVICE :
                                  c == ARG_LISTEN ? TRANSPORT_LISTEN : TRANSPORT_STDIO;
                        o->path = c == ARG_STDIO ? NULL : optarg;
                        transports++;
                        break;
                case ARG_UID_MIN:
                case ARG_UID_MAX:
                        r = parse_uid_bound(c, optarg, o);
                        break;
                case ARG_ALLOW:
                case ARG_BLOCK:
                        r = parse_rpc_list(c, optarg, o);
                        break;
                case ARG_RUN_RESERVE:
                        r = parse_run_reserve(optarg, o);
                        break;
                case ARG_HOST_MOUNTS:
                        o->config.host_mounts = true;
                        break;
                case ARG_USERDB_DIR:
                        o->config.userdb_dir = optarg;
                        break;
                case ARG_USERDB:
                        r = parse_userdb_mode(optarg, o);
                        break;
                case ARG_VARLINK_SOCKET:
                        o->config.varlink_socket = optarg;
                        break;
                case ARG_STATE_DIR:
                        o->config.state_dir = optarg;
                        break;
                case ARG_CLEANUP_ROOT:
                        o->config.cleanup_root = optarg;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("vmuser-agent " VMUSER_VERSION "\n");
                        return 0;
                default:
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc) {
                fprintf(stderr, "vmuser-agent: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        if (transports > 1) {
                fprintf(stderr, "vmuser-agent: --device, --listen and --stdio are exclusive\n");
                return -EINVAL;
        }
        r = check_options(o);
        return r < 0 ? r : 1;
}

/* Opens the records and the state, and finishes what a crash interrupted. */
static int open_state(struct agent *agent, const struct agent_config *config) {
        int r = agent_init(agent, config);

        if (r < 0) {
                fprintf(stderr, SD_ERR "Failed to open '%s' and '%s': %s\n", config->userdb_dir, config->state_dir,
                        strerror(-r));
                return r;
        }
        r = userdb_recover(agent->db);
        if (r < 0)
                fprintf(stderr, SD_WARNING "Failed to finish an interrupted change: %s\n", strerror(-r));
        else if (r > 0)
                fprintf(stderr, SD_NOTICE "Finished %d change(s) interrupted by a crash\n", r);
        return 0;
}

/* The event loop, with SIGTERM and SIGINT ending it. Logs its own failure. */
static int event_setup(sd_event **ret) {
        sigset_t mask;
        int r;

        r = sd_event_default(ret);
        if (r >= 0) {
                sigemptyset(&mask);
                sigaddset(&mask, SIGTERM);
                sigaddset(&mask, SIGINT);
                sigprocmask(SIG_BLOCK, &mask, NULL);
                if ((r = sd_event_add_signal(*ret, NULL, SIGTERM, NULL, NULL)) >= 0)
                        r = sd_event_add_signal(*ret, NULL, SIGINT, NULL, NULL);
        }
        if (r < 0)
                fprintf(stderr, SD_ERR "vmuser-agent: %s\n", strerror(-r));
        return r;
}

static int transport_setup(sd_event *event, struct agent *agent, const struct options *o,
                           struct transport **ret) {
        int r = transport_new(event, agent, o->kind, o->path, ret);

        if (r < 0)
                fprintf(stderr, SD_ERR "Failed to set up %s '%s': %s\n",
                        o->kind == TRANSPORT_DEVICE ? "device" : o->kind == TRANSPORT_LISTEN ? "socket" : "stdio",
                        o->path ? o->path : "stdin", strerror(-r));
        return r;
}

/* Homes of sessions killed without a close (see reaper.c). Without it the agent still serves;
 * such homes then stay mounted until the user's next login or logout. */
static void reaper_setup(sd_event *event, struct agent *agent, struct reaper **ret) {
        int r = reaper_new(event, agent, ret);

        if (r < 0)
                fprintf(stderr, SD_WARNING "Cannot watch sessions; homes of killed sessions stay mounted: %s\n",
                        strerror(-r));
}

/* The userdb varlink service, unless records are drop-ins and systemd passed no socket. */
static int userdb_service_setup(struct agent *agent) {
        int r;

        if (agent->config.userdb_mode == AGENT_USERDB_DROPIN && !agent_userdb_socket_from_systemd())
                return 0;
        r = agent_userdb_service_start(agent);
        if (r < 0)
                fprintf(stderr, SD_ERR "Failed to serve userdb on '%s': %s\n", agent->config.varlink_socket,
                        strerror(-r));
        return r;
}

/* Serves until SIGTERM/SIGINT (or EOF with --stdio). Returns the exit code. */
static int run(const struct options *o) {
        _cleanup_(transport_freep) struct transport *transport = NULL;
        _cleanup_(reaper_freep) struct reaper *reaper = NULL;
        sd_event *event = NULL;
        struct agent agent = {};
        int r;

        signal(SIGPIPE, SIG_IGN);
        if (open_state(&agent, &o->config) < 0)
                return 1;

        r = event_setup(&event);
        if (r < 0)
                goto finish;
        r = transport_setup(event, &agent, o, &transport);
        if (r < 0)
                goto finish;
        reaper_setup(event, &agent, &reaper);
        r = userdb_service_setup(&agent);
        if (r < 0)
                goto finish;

        (void) sd_notify(0, "READY=1\nSTATUS=Serving requests");
        r = sd_event_loop(event);
        (void) sd_notify(0, "STOPPING=1");
        if (r < 0)
                fprintf(stderr, SD_ERR "vmuser-agent: %s\n", strerror(-r));

finish:
        transport = transport_free(transport);
        reaper = reaper_free(reaper);
        agent_userdb_service_stop(&agent);
        sd_event_unref(event);
        agent_done(&agent);
        return r < 0 ? 1 : 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(options_done) struct options o = {
                .config = {
                        .userdb_dir = VMUSER_USERDB_DIR,
                        .state_dir = VMUSER_STATE_DIR,
                        .range = { VMUSER_UID_MIN_DEFAULT, VMUSER_UID_MAX_DEFAULT },
                        .reserve_percent = USERDB_RESERVE_PERCENT_DEFAULT,
                        .varlink_socket = VMUSER_VARLINK_SOCKET,
                },
                .kind = TRANSPORT_DEVICE,
                .path = VMUSER_AGENT_PORT,
        };
        int r;

        r = parse_argv(argc, argv, &o);
        if (r <= 0)
                return r == 0 ? 0 : r == -ENOMEM ? 1 : 2;
        return run(&o);
}
