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
#include "transport.h"

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
               "  --userdb-dir PATH    where records go (default " VMUSER_USERDB_DIR ")\n"
               "  --state-dir PATH     agent state (default " VMUSER_STATE_DIR ")\n"
               "  --cleanup-root PATH  look for a detached UID's leftovers below PATH (default /; tests)\n"
               "  -h --help            show this help\n"
               "     --version         show the version\n",
               VMUSER_UID_MIN_DEFAULT, VMUSER_UID_MAX_DEFAULT, USERDB_RESERVE_PERCENT_DEFAULT,
               USERDB_RESERVE_PERCENT_MAX);
}

static char **split_commas(const char *s) {
        size_t n = 1;
        for (const char *p = s; *p; p++)
                n += *p == ',';
        char **v = calloc(n + 1, sizeof(char *));
        char *copy = strdup(s), *save = NULL;
        size_t i = 0;
        if (!v || !copy) {
                free(v);
                free(copy);
                return NULL;
        }
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                v[i++] = strdup(tok);
        free(copy);
        return v;
}

static void strv_freep(char ***v) {
        for (char **p = *v; p && *p; p++)
                free(*p);
        free(*v);
}

int main(int argc, char *argv[]) {
        enum { ARG_DEVICE = 0x100, ARG_LISTEN, ARG_STDIO, ARG_UID_MIN, ARG_UID_MAX, ARG_ALLOW, ARG_BLOCK,
               ARG_HOST_MOUNTS, ARG_USERDB_DIR, ARG_STATE_DIR, ARG_CLEANUP_ROOT, ARG_VERSION, ARG_RUN_RESERVE };
        static const struct option options[] = {
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
                { "cleanup-root", required_argument, NULL, ARG_CLEANUP_ROOT },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        struct agent_config config = {
                .userdb_dir = VMUSER_USERDB_DIR,
                .state_dir = VMUSER_STATE_DIR,
                .range = { VMUSER_UID_MIN_DEFAULT, VMUSER_UID_MAX_DEFAULT },
                .reserve_percent = USERDB_RESERVE_PERCENT_DEFAULT,
        };
        _cleanup_(strv_freep) char **allow = NULL, **block = NULL;
        _cleanup_(transport_freep) struct transport *transport = NULL;
        sd_event *event = NULL;
        enum transport_kind kind = TRANSPORT_DEVICE;
        const char *path = VMUSER_AGENT_PORT;
        struct agent agent = {};
        int c, r, transports = 0;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_DEVICE:
                        kind = TRANSPORT_DEVICE;
                        path = optarg;
                        transports++;
                        break;
                case ARG_LISTEN:
                        kind = TRANSPORT_LISTEN;
                        path = optarg;
                        transports++;
                        break;
                case ARG_STDIO:
                        kind = TRANSPORT_STDIO;
                        path = NULL;
                        transports++;
                        break;
                case ARG_UID_MIN:
                case ARG_UID_MAX: {
                        uint32_t v;
                        if (id_parse(optarg, &v) < 0 || id_is_special(v)) {
                                fprintf(stderr, "vmuser-agent: invalid %s '%s'\n",
                                        c == ARG_UID_MIN ? "--uid-min" : "--uid-max", optarg);
                                return 2;
                        }
                        if (c == ARG_UID_MIN)
                                config.range.min = v;
                        else
                                config.range.max = v;
                        break;
                }
                case ARG_ALLOW:
                        allow = split_commas(optarg);
                        config.allow_rpcs = allow;
                        break;
                case ARG_BLOCK:
                        block = split_commas(optarg);
                        config.block_rpcs = block;
                        break;
                case ARG_RUN_RESERVE: {
                        char *end;
                        unsigned long v;
                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (errno || end == optarg || *end || *optarg == '-' || v > USERDB_RESERVE_PERCENT_MAX) {
                                fprintf(stderr, "vmuser-agent: invalid --run-reserve '%s' (a percentage, 0-%u)\n", optarg,
                                        USERDB_RESERVE_PERCENT_MAX);
                                return 2;
                        }
                        config.reserve_percent = (unsigned) v;
                        break;
                }
                case ARG_HOST_MOUNTS:
                        config.host_mounts = true;
                        break;
                case ARG_USERDB_DIR:
                        config.userdb_dir = optarg;
                        break;
                case ARG_STATE_DIR:
                        config.state_dir = optarg;
                        break;
                case ARG_CLEANUP_ROOT:
                        config.cleanup_root = optarg;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("vmuser-agent " VMUSER_VERSION "\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "vmuser-agent: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }
        if (transports > 1) {
                fprintf(stderr, "vmuser-agent: --device, --listen and --stdio are exclusive\n");
                return 2;
        }
        if (config.range.min > config.range.max) {
                fprintf(stderr, "vmuser-agent: --uid-min %u is above --uid-max %u\n", config.range.min,
                        config.range.max);
                return 2;
        }
        for (char **p = allow; p && *p; p++)
                if (!agent_command_find(*p)) {
                        fprintf(stderr, "vmuser-agent: --allow-rpcs: unknown command '%s'\n", *p);
                        return 2;
                }
        for (char **p = block; p && *p; p++)
                if (!agent_command_find(*p)) {
                        fprintf(stderr, "vmuser-agent: --block-rpcs: unknown command '%s'\n", *p);
                        return 2;
                }

        signal(SIGPIPE, SIG_IGN);

        r = agent_init(&agent, &config);
        if (r < 0) {
                fprintf(stderr, SD_ERR "Failed to open '%s' and '%s': %s\n", config.userdb_dir, config.state_dir,
                        strerror(-r));
                return 1;
        }
        r = userdb_recover(agent.db);
        if (r < 0)
                fprintf(stderr, SD_WARNING "Failed to finish an interrupted change: %s\n", strerror(-r));
        else if (r > 0)
                fprintf(stderr, SD_NOTICE "Finished %d change(s) interrupted by a crash\n", r);

        r = sd_event_default(&event);
        if (r < 0)
                goto fail;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if ((r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL)) < 0 ||
            (r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL)) < 0)
                goto fail;

        r = transport_new(event, &agent, kind, path, &transport);
        if (r < 0) {
                fprintf(stderr, SD_ERR "Failed to set up %s '%s': %s\n",
                        kind == TRANSPORT_DEVICE ? "device" : kind == TRANSPORT_LISTEN ? "socket" : "stdio",
                        path ? path : "stdin", strerror(-r));
                goto fail_logged;
        }

        (void) sd_notify(0, "READY=1\nSTATUS=Serving requests");
        r = sd_event_loop(event);
        (void) sd_notify(0, "STOPPING=1");
        if (r < 0)
                goto fail;

        transport = transport_free(transport);
        sd_event_unref(event);
        agent_done(&agent);
        return 0;

fail:
        fprintf(stderr, SD_ERR "vmuser-agent: %s\n", strerror(-r));
fail_logged:
        transport = transport_free(transport);
        sd_event_unref(event);
        agent_done(&agent);
        return 1;
}
