/* userdb-service.c: the agent's io.systemd.UserDatabase service (--userdb=varlink).
 *
 * Start: build the user index from the record store and state files userdb.c keeps, then serve it on
 * the socket handed over by systemd (socket activation) or on --varlink-socket. After every
 * attach or detach the command calls agent_userdb_changed(), which re-reads that one user.
 * The agent's own NSS lookups (userdb.c's conflict checks) must not ask this service: the agent
 * is single-threaded and would wait for itself, so the service (and the multiplexer, which would
 * ask it on the agent's behalf) goes into $SYSTEMD_BYPASS_USERDB before it serves. */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "agent.h"
#include "macro.h"
#include "record-store.h"
#include "user-index.h"
#include "varlink.h"

/* The socket systemd handed over, if any: one listening AF_UNIX stream socket. */
static int listen_fd_from_systemd(void) {
        int n = sd_listen_fds(true);
        if (n <= 0)
                return -ENOENT;
        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
                if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0)
                        return fd;
        return -ENOENT;
}

/* The agent's own NSS lookups skip its service, and the multiplexer that would ask it for them.
 * The variable holds ':'-separated service names. */
static int bypass_own_service(const char *service) {
        const char *old = getenv("SYSTEMD_BYPASS_USERDB");
        _cleanup_free_ char *v = NULL;

        if (strchr(service, ':'))
                return -EINVAL;
        if (asprintf(&v, "%s%sio.systemd.Multiplexer:%s", old && *old ? old : "", old && *old ? ":" : "", service) < 0)
                return -ENOMEM;
        return setenv("SYSTEMD_BYPASS_USERDB", v, 1) < 0 ? negative_errno() : 0;
}

static int mkdir_parents(const char *path) {
        char buf[sizeof(((struct sockaddr_un *) NULL)->sun_path)];
        if (snprintf(buf, sizeof(buf), "%s", path) >= (int) sizeof(buf))
                return -ENAMETOOLONG;
        for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
                *p = '/';
        }
        return 0;
}

int agent_userdb_service_start(struct agent *a, sd_event *event, struct varlink_server **ret) {
        _cleanup_(varlink_server_freep) struct varlink_server *server = NULL;
        const char *path = a->config.varlink_socket, *service;
        struct sockaddr_un sa = {};
        socklen_t sa_len = sizeof(sa);
        unsigned failed = 0;
        int r, fd;

        /* A socket from systemd names the service by where it is bound, whatever the option says. */
        fd = listen_fd_from_systemd();
        if (fd >= 0 && getsockname(fd, (struct sockaddr *) &sa, &sa_len) >= 0 &&
            sa_len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0] == '/' &&
            memchr(sa.sun_path, '\0', sizeof(sa.sun_path)))
                path = sa.sun_path;
        service = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        if (!*service)
                return -EINVAL;
        r = bypass_own_service(service);
        if (r < 0)
                return r;
        r = user_index_new(service, &a->index);
        if (r < 0)
                return r;
        /* --userdb=dropin with the socket unit installed: an empty service (nss-systemd would
         * otherwise wait on a socket nobody answers); the users are in the drop-ins. */
        r = userdb_store(a->db) ? user_index_load_all(a->index, userdb_store(a->db), userdb_state_fd(a->db), &failed) : 0;
        if (r < 0) {
                agent_userdb_service_stop(a);
                return r;
        }
        if (failed > 0)
                fprintf(stderr, SD_WARNING "userdb service: %u attached user(s) have unreadable records, not served\n",
                        failed);

        r = varlink_server_new(event, user_index_methods, user_index_n_methods, a->index, &server);
        if (r < 0)
                goto fail;
        if (fd >= 0)
                r = varlink_server_listen_fd(server, fd);
        else if ((r = mkdir_parents(path)) >= 0)
                r = varlink_server_listen(server, path);
        if (r < 0)
                goto fail;
        fprintf(stderr, SD_INFO "Serving %zu attached user(s) as userdb service '%s' on %s%s\n",
                user_index_count(a->index), service, fd >= 0 ? "the socket from systemd for " : "", path);
        *ret = TAKE_PTR(server);
        return 0;
fail:
        agent_userdb_service_stop(a);
        return r;
}

bool agent_userdb_socket_from_systemd(void) {
        int n = sd_listen_fds(false);
        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
                if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0)
                        return true;
        return false;
}

void agent_userdb_changed(struct agent *a, const char *name) {
        int r;

        if (!a->index || !userdb_store(a->db))
                return;
        r = user_index_refresh(a->index, record_store_get(userdb_store(a->db), name), userdb_state_fd(a->db), name);
        if (r < 0)
                fprintf(stderr, SD_WARNING "userdb service: records of '%s' unreadable, not served: %s\n", name,
                        strerror(-r));
}

void agent_userdb_service_stop(struct agent *a) {
        if (!a->index)
                return;
        a->index = user_index_free(a->index);
}
