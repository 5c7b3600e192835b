/* userdb-service.c: the agent's io.systemd.UserDatabase service (--userdb=varlink).
 *
 * Start: build the user index from the record store userdb.c keeps, then serve it,
 * on a thread of its own (see struct userdb_thread), on
 * the socket handed over by systemd (socket activation) or on --varlink-socket. After every
 * attach or detach the command calls agent_userdb_changed(), which re-reads that one user. The
 * same socket serves io.vmuser.GetAttachState to pam_vmuser; the "detaching" mark it reports is
 * set by a detach through agent_userdb_set_detaching() and lives here only.
 * The agent's own NSS lookups (userdb.c's conflict checks) must not ask this service: the agent
 * is single-threaded and would wait for itself, so the service (and the multiplexer, which would
 * ask it on the agent's behalf) goes into $SYSTEMD_BYPASS_USERDB before it serves. */
#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
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

/* The service runs on a thread of its own with its own event loop, so that lookups are answered
 * while the main thread is busy (a detach waits up to tens of seconds for logind and for a
 * UID's processes, and logind itself may look the user up meanwhile). The index is shared: the
 * main thread changes it after an attach or detach, the service thread reads it, both under
 * the lock. */
struct userdb_thread {
        pthread_t thread;
        bool running;
        pthread_mutex_t lock;
        sd_event *event;
        struct varlink_server *server;
        sd_event_source *stop_source;
        int stop_fd;
        struct user_index *index;
        struct varlink_method methods[4];
};

static int locked_call(void *userdata, size_t k, struct varlink_call *call, json_object *params) {
        struct userdb_thread *t = userdata;
        pthread_mutex_lock(&t->lock);
        int r = user_index_methods[k].handler(call, params, t->index);
        pthread_mutex_unlock(&t->lock);
        return r;
}

static int method0(struct varlink_call *call, json_object *params, void *userdata) {
        return locked_call(userdata, 0, call, params);
}

static int method1(struct varlink_call *call, json_object *params, void *userdata) {
        return locked_call(userdata, 1, call, params);
}

static int method2(struct varlink_call *call, json_object *params, void *userdata) {
        return locked_call(userdata, 2, call, params);
}

static int method3(struct varlink_call *call, json_object *params, void *userdata) {
        return locked_call(userdata, 3, call, params);
}

static int on_stop(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static void *serve(void *userdata) {
        struct userdb_thread *t = userdata;
        int r = sd_event_loop(t->event);
        if (r < 0)
                fprintf(stderr, SD_ERR "userdb service: event loop failed: %s\n", strerror(-r));
        return NULL;
}

static void thread_free(struct userdb_thread *t) {
        if (!t)
                return;
        if (t->running) {
                uint64_t one = 1;
                (void) !write(t->stop_fd, &one, sizeof(one));
                pthread_join(t->thread, NULL);
        }
        t->server = varlink_server_free(t->server);
        t->stop_source = sd_event_source_unref(t->stop_source);
        t->event = sd_event_unref(t->event);
        if (t->stop_fd >= 0)
                close(t->stop_fd);
        user_index_free(t->index);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

int agent_userdb_service_start(struct agent *a) {
        const char *path = a->config.varlink_socket, *service;
        struct userdb_thread *t = NULL;
        struct sockaddr_un sa = {};
        socklen_t sa_len = sizeof(sa);
        unsigned failed = 0;
        int r, fd;

        if (user_index_n_methods != ELEMENTSOF(t->methods))
                return -EINVAL;
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

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->stop_fd = -1;
        pthread_mutex_init(&t->lock, NULL);
        r = user_index_new(service, &t->index);
        if (r < 0)
                goto fail;
        /* --userdb=dropin with the socket unit installed: an empty service (nss-systemd would
         * otherwise wait on a socket nobody answers); the users are in the drop-ins. */
        r = userdb_store(a->db) ? user_index_load_all(t->index, userdb_store(a->db), userdb_state_fd(a->db), &failed) : 0;
        if (r < 0)
                goto fail;
        if (failed > 0)
                fprintf(stderr, SD_WARNING "userdb service: %u attached user(s) have unreadable records, not served\n",
                        failed);

        int (*const handlers[])(struct varlink_call *, json_object *, void *) = { method0, method1, method2, method3 };
        for (size_t k = 0; k < ELEMENTSOF(t->methods); k++)
                t->methods[k] = (struct varlink_method) { user_index_methods[k].name, handlers[k] };
        t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (t->stop_fd < 0) {
                r = negative_errno();
                goto fail;
        }
        if ((r = sd_event_new(&t->event)) < 0 ||
            (r = sd_event_add_io(t->event, &t->stop_source, t->stop_fd, EPOLLIN, on_stop, NULL)) < 0 ||
            (r = varlink_server_new(t->event, t->methods, ELEMENTSOF(t->methods), t, &t->server)) < 0)
                goto fail;
        if (fd >= 0)
                r = varlink_server_listen_fd(t->server, fd);
        else if ((r = mkdir_parents(path)) >= 0)
                r = varlink_server_listen(t->server, path);
        if (r < 0)
                goto fail;
        r = -pthread_create(&t->thread, NULL, serve, t);
        if (r < 0)
                goto fail;
        t->running = true;
        fprintf(stderr, SD_INFO "Serving %zu attached user(s) as userdb service '%s' on %s%s\n",
                user_index_count(t->index), service, fd >= 0 ? "the socket from systemd for " : "", path);
        a->service = t;
        return 0;
fail:
        thread_free(t);
        return r;
}

bool agent_userdb_socket_from_systemd(void) {
        int n = sd_listen_fds(false);
        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
                if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0)
                        return true;
        return false;
}

/* ids: the uid and gid an attach just wrote (the line is indexed without parsing its records),
 * or NULL. */
static void refresh(struct agent *a, const char *name, const uint32_t *ids) {
        struct userdb_thread *t = a->service;
        int r;

        if (!t || !userdb_store(a->db))
                return;
        /* Read before taking the lock: lookups do not wait for the file. */
        const char *line = NULL;
        r = record_store_read(userdb_store(a->db), name, &line);
        if (r < 0 && r != -ENOENT) {
                fprintf(stderr, SD_WARNING "userdb service: records of '%s' unreadable, not served: %s\n", name,
                        strerror(-r));
                line = NULL;
        }
        pthread_mutex_lock(&t->lock);
        r = ids && line ? user_index_refresh_attached(t->index, line, userdb_state_fd(a->db), name, ids[0], ids[1])
                        : user_index_refresh(t->index, line, userdb_state_fd(a->db), name);
        pthread_mutex_unlock(&t->lock);
        if (r < 0)
                fprintf(stderr, SD_WARNING "userdb service: records of '%s' unreadable, not served: %s\n", name,
                        strerror(-r));
}

int agent_userdb_set_detaching(struct agent *a, const char *name) {
        struct userdb_thread *t = a->service;
        int r;

        if (!t)
                return -ESRCH;
        pthread_mutex_lock(&t->lock);
        r = user_index_set_detaching(t->index, name);
        pthread_mutex_unlock(&t->lock);
        return r;
}

void agent_userdb_service_stop(struct agent *a) {
        thread_free(a->service);
        a->service = NULL;
}

void agent_userdb_changed(struct agent *a, const char *name) {
        refresh(a, name, NULL);
}

void agent_userdb_attached(struct agent *a, const char *name, uint32_t uid, uint32_t gid) {
        refresh(a, name, (const uint32_t[]) { uid, gid });
}
