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

int main(int argc, char *argv[]) {
        enum { ARG_DEVICE = 0x100, ARG_LISTEN, ARG_STDIO, ARG_UID_MIN, ARG_UID_MAX, ARG_ALLOW, ARG_BLOCK,
               ARG_HOST_MOUNTS, ARG_USERDB_DIR, ARG_STATE_DIR, ARG_CLEANUP_ROOT, ARG_VERSION, ARG_RUN_RESERVE,
               ARG_USERDB, ARG_VARLINK_SOCKET };
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
                { "userdb", required_argument, NULL, ARG_USERDB },
                { "varlink-socket", required_argument, NULL, ARG_VARLINK_SOCKET },
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
                .varlink_socket = VMUSER_VARLINK_SOCKET,
        };
        _cleanup_(strv_freep) char **allow = NULL, **block = NULL;
        _cleanup_(transport_freep) struct transport *transport = NULL;
        _cleanup_(reaper_freep) struct reaper *reaper = NULL;
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
                case ARG_BLOCK: {
                        /* Fail closed: a list that could not be built must not become "no list". */
                        char ***list = c == ARG_ALLOW ? &allow : &block;
                        strv_free(TAKE_PTR(*list));
                        if (strv_split_commas(optarg, list) < 0) {
                                fprintf(stderr, "vmuser-agent: out of memory parsing %s\n",
                                        c == ARG_ALLOW ? "--allow-rpcs" : "--block-rpcs");
                                return 1;
                        }
                        if (c == ARG_ALLOW)
                                config.allow_rpcs = allow;
                        else
                                config.block_rpcs = block;
                        break;
                }
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
                case ARG_USERDB:
                        if (streq(optarg, "dropin"))
                                config.userdb_mode = AGENT_USERDB_DROPIN;
                        else if (streq(optarg, "varlink"))
                                config.userdb_mode = AGENT_USERDB_VARLINK;
                        else {
                                fprintf(stderr, "vmuser-agent: invalid --userdb '%s' (varlink or dropin)\n", optarg);
                                return 2;
                        }
                        break;
                case ARG_VARLINK_SOCKET:
                        config.varlink_socket = optarg;
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

        if (config.userdb_mode != AGENT_USERDB_DROPIN) {
                const char *service = strrchr(config.varlink_socket, '/');
                if (!service || !service[1] || strchr(service, ':')) {
                        fprintf(stderr, "vmuser-agent: invalid --varlink-socket '%s' (an absolute path; its file name, "
                                "the service name, without ':')\n", config.varlink_socket);
                        return 2;
                }
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

        /* Homes of sessions killed without a close (see reaper.c). Without it the agent still
         * serves; such homes then stay mounted until the user's next login or logout. */
        r = reaper_new(event, &agent, &reaper);
        if (r < 0)
                fprintf(stderr, SD_WARNING "Cannot watch sessions; homes of killed sessions stay mounted: %s\n",
                        strerror(-r));
        if (config.userdb_mode != AGENT_USERDB_DROPIN || agent_userdb_socket_from_systemd()) {
                r = agent_userdb_service_start(&agent);
                if (r < 0) {
                        fprintf(stderr, SD_ERR "Failed to serve userdb on '%s': %s\n", config.varlink_socket,
                                strerror(-r));
                        goto fail_logged;
                }
        }

        (void) sd_notify(0, "READY=1\nSTATUS=Serving requests");
        r = sd_event_loop(event);
        (void) sd_notify(0, "STOPPING=1");
        if (r < 0)
                goto fail;

        transport = transport_free(transport);
        reaper = reaper_free(reaper);
        agent_userdb_service_stop(&agent);
        sd_event_unref(event);
        agent_done(&agent);
        return 0;

fail:
        fprintf(stderr, SD_ERR "vmuser-agent: %s\n", strerror(-r));
fail_logged:
        transport = transport_free(transport);
        reaper = reaper_free(reaper);
        agent_userdb_service_stop(&agent);
        sd_event_unref(event);
        agent_done(&agent);
        return 1;
}
