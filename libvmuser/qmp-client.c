/* qmp-client.c: the QMP client (see qmp-client.h).
 *
 * Bytes flow: client_fill() polls the socket until the call's deadline, reads at most
 * QMP_READ_CHUNK bytes and feeds them to the frame reader, which calls on_frame() once per
 * complete frame. on_frame() sorts frames: the greeting is kept for connect, a reply is kept
 * only when it carries the id of the request in flight, events go to the bounded queue, anything
 * else makes the connection dead. The callers (connect, execute, wait_event) loop on
 * client_fill() until what they wait for has been sorted into place. */
#include "qmp-client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "macro.h"
#include "proto.h"
#include "socket-util.h"
#include "time-util.h"

#define QMP_READ_CHUNK (64u * 1024u)
#define QMP_ID_PREFIX "vmuser-"

/* doc/PROTOCOL.txt section 8 (the counts of qmp-client.h's QMP_MAX_LIST_ENTRIES entries). */
static const struct proto_limits qmp_limits = {
        .max_bytes = QMP_MAX_FRAME_SIZE,
        .max_values = 4096 + QMP_MAX_LIST_ENTRIES * 8,
        .max_containers = 512 + QMP_MAX_LIST_ENTRIES,
        .max_token = 8192, /* a path (PATH_MAX) in a chardev's filename, or a desc */
        .max_depth = VMUSER_JSON_MAX_DEPTH,
};

struct qmp_client {
        int fd;
        struct proto_reader *reader;
        bool dead;
        uint64_t next_id;

        /* Sorting state, filled by on_frame(). */
        bool want_greeting;
        json_object *greeting;
        char want_id[32];    /* id of the request in flight, "" when none */
        json_object *reply;  /* its reply, once it came */
        int frame_error;     /* first malformed frame seen during this read */

        char buf[QMP_READ_CHUNK];

        json_object *events[QMP_MAX_QUEUED_EVENTS];
        size_t event_cost[QMP_MAX_QUEUED_EVENTS];
        size_t n_events;
        size_t queued_cost;
        unsigned dropped_events;

        char version[32];
        uid_t peer_uid;
        gid_t peer_gid;
};

const struct proto_limits *qmp_client_limits(void) {
        return &qmp_limits;
}

struct qmp_client *qmp_client_free(struct qmp_client *c) {
        if (!c)
                return NULL;
        if (c->fd >= 0)
                close(c->fd);
        proto_reader_free(c->reader);
        if (c->greeting)
                json_object_put(c->greeting);
        if (c->reply)
                json_object_put(c->reply);
        for (size_t i = 0; i < c->n_events; i++)
                json_object_put(c->events[i]);
        free(c);
        return NULL;
}

void qmp_client_freep(struct qmp_client **c) {
        qmp_client_free(*c);
}

bool qmp_client_is_dead(const struct qmp_client *c) {
        return !c || c->dead;
}

size_t qmp_client_queued_events(const struct qmp_client *c) {
        return c->n_events;
}

unsigned qmp_client_dropped_events(const struct qmp_client *c) {
        return c->dropped_events;
}

const char *qmp_client_qemu_version(const struct qmp_client *c) {
        return c->version;
}

uid_t qmp_client_peer_uid(const struct qmp_client *c) {
        return c->peer_uid;
}

gid_t qmp_client_peer_gid(const struct qmp_client *c) {
        return c->peer_gid;
}

static json_object *unqueue_event(struct qmp_client *c, size_t i) {
        json_object *event = c->events[i];
        c->queued_cost -= c->event_cost[i];
        memmove(c->events + i, c->events + i + 1, (c->n_events - i - 1) * sizeof(c->events[0]));
        memmove(c->event_cost + i, c->event_cost + i + 1, (c->n_events - i - 1) * sizeof(c->event_cost[0]));
        c->n_events--;
        return event;
}

/* Keeps an event aside; an oversized one is dropped at once, and the oldest go when the queue
 * is full in number or in memory. */
static void queue_event(struct qmp_client *c, json_object *event) {
        const struct proto_frame_counts *n = proto_reader_frame_counts(c->reader);
        size_t cost = proto_frame_cost(n);

        if (n->bytes > QMP_MAX_EVENT_SIZE || n->values > QMP_MAX_EVENT_VALUES ||
            n->containers > QMP_MAX_EVENT_CONTAINERS) {
                c->dropped_events++;
                return;
        }
        while (c->n_events > 0 && (c->n_events == QMP_MAX_QUEUED_EVENTS || c->queued_cost + cost > QMP_MAX_QUEUED_COST)) {
                json_object_put(unqueue_event(c, 0));
                c->dropped_events++;
        }
        c->event_cost[c->n_events] = cost;
        c->queued_cost += cost;
        c->events[c->n_events++] = json_object_get(event);
}

static bool reply_id_matches(const struct qmp_client *c, json_object *frame) {
        json_object *id;

        if (!c->want_id[0])
                return false;
        if (!json_object_object_get_ex(frame, "id", &id) || !json_object_is_type(id, json_type_string))
                return false;
        return streq(json_object_get_string(id), c->want_id);
}

/* Sorts one frame (see the top of the file). A negative return stops the reader. */
static int on_frame(json_object *frame, int error, void *userdata) {
        struct qmp_client *c = userdata;
        json_object *v;

        if (error < 0) {
                if (c->frame_error == 0)
                        c->frame_error = error;
                return error;
        }
        if (!json_object_is_type(frame, json_type_object))
                goto bad;

        if (json_object_object_get_ex(frame, "event", &v)) {
                json_object *data;
                if (!json_object_is_type(v, json_type_string))
                        goto bad;
                if (json_object_object_get_ex(frame, "data", &data) && !json_object_is_type(data, json_type_object))
                        goto bad;
                queue_event(c, frame);
                return 0;
        }

        if (json_object_object_get_ex(frame, "return", &v) || json_object_object_get_ex(frame, "error", &v)) {
                bool has_id = json_object_object_get_ex(frame, "id", NULL);
                bool is_error = json_object_object_get_ex(frame, "error", NULL);

                if (reply_id_matches(c, frame) ||
                    /* QEMU answers a request it could not even parse without an id. We only send
                     * well-formed requests, but if it happens the error belongs to ours. */
                    (!has_id && is_error && c->want_id[0])) {
                        if (c->reply)
                                json_object_put(c->reply);
                        c->reply = json_object_get(frame);
                        c->want_id[0] = '\0';
                }
                /* Otherwise: the late reply to a request that timed out. */
                return 0;
        }

        if (json_object_object_get_ex(frame, "QMP", &v)) {
                if (!c->want_greeting || !json_object_is_type(v, json_type_object))
                        goto bad;
                c->greeting = json_object_get(frame);
                c->want_greeting = false;
                return 0;
        }

bad:
        if (c->frame_error == 0)
                c->frame_error = -EBADMSG;
        return -EBADMSG;
}

/* Reads once (waiting until the deadline) and sorts what came. */
static int client_fill(struct qmp_client *c, int64_t deadline, const char *waiting_for, struct verr *e) {
        ssize_t n;
        int k;

        if (c->dead)
                return verr_set(e, -ENOTCONN, "the QMP connection is closed");

        for (;;) {
                struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
                int left = ms_left(deadline);
                if (left == 0)
                        return verr_set(e, -ETIMEDOUT, "QEMU did not send %s in time", waiting_for);
                k = poll(&pfd, 1, left);
                if (k < 0 && errno != EINTR)
                        return verr_set(e, negative_errno(), "polling the QMP socket failed: %m");
                if (k > 0)
                        break;
        }

        n = read(c->fd, c->buf, sizeof(c->buf));
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                k = negative_errno();
                c->dead = true;
                return verr_set(e, k, "reading from the QMP socket failed: %s", strerror(-k));
        }
        if (n == 0) {
                c->dead = true;
                return verr_set(e, -ECONNRESET, "QEMU closed the QMP connection while we waited for %s",
                                waiting_for);
        }

        c->frame_error = 0;
        k = proto_reader_feed(c->reader, c->buf, (size_t) n, on_frame, c);
        if (k == -ENOMEM)
                return k;
        if (c->frame_error < 0 || k < 0) {
                char why[128];
                k = c->frame_error < 0 ? c->frame_error : k;
                c->dead = true;
                if (k == -EBADMSG)
                        return verr_set(e, k, "QEMU sent a malformed QMP frame while we waited for %s (not a QMP "
                                              "message)", waiting_for);
                return verr_set(e, -EMSGSIZE, "QEMU sent a QMP frame that %s (the limit for QMP) while we waited for "
                                              "%s: not parsed, connection closed",
                                proto_limit_describe(k, &qmp_limits, why, sizeof(why)), waiting_for);
        }
        return 0;
}

/* Writes the request with send(MSG_NOSIGNAL): a QEMU that died must give -EPIPE, not kill the
 * caller with SIGPIPE. */
static int client_send(struct qmp_client *c, json_object *request, int64_t deadline, struct verr *e) {
        const char *s = json_to_compact(request);
        _cleanup_free_ char *line = NULL;
        size_t len, done = 0;

        if (!s)
                return -ENOMEM;
        if (asprintf(&line, "%s\n", s) < 0)
                return -ENOMEM;
        len = strlen(line);
        while (done < len) {
                ssize_t n = send(c->fd, line + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                        done += (size_t) n;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        int k = negative_errno();
                        c->dead = true;
                        return verr_set(e, k, "writing to the QMP socket failed: %s", strerror(-k));
                }
                struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
                int left = ms_left(deadline);
                if (left == 0) {
                        /* Half a request in the stream would garble the next one. */
                        if (done > 0)
                                c->dead = true;
                        return verr_set(e, -ETIMEDOUT, "QEMU did not take our request in time");
                }
                if (poll(&pfd, 1, left) < 0 && errno != EINTR)
                        return verr_set(e, negative_errno(), "polling the QMP socket failed: %m");
        }
        return 0;
}

/* connect() to a UNIX socket, by name or (when the path is too long) through /proc/self/fd. */
static int connect_unix(const char *path, int64_t deadline, int *ret_fd, struct verr *e) {
        struct sockaddr_un sa;
        _cleanup_close_ int fd = -1, dir_fd = -1;
        int k;

        if (!path || path[0] != '/')
                return verr_set(e, -EINVAL, "QMP socket path '%s' is not absolute", strempty(path));
        k = sockaddr_un_from_path(path, &sa, &dir_fd);
        if (k == -ENAMETOOLONG)
                return verr_set(e, k, "QMP socket name '%s' is too long", strrchr(path, '/') + 1);
        if (k < 0)
                return verr_set(e, k, "cannot open the directory of QMP socket '%s': %s", path, strerror(-k));

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return verr_set(e, negative_errno(), "cannot create a socket: %m");
        /* A full backlog: QEMU is busy, try again until the deadline. */
        k = connect_unix_deadline(fd, &sa, deadline);
        if (k == -ETIMEDOUT)
                return verr_set(e, k, "QMP socket '%s' did not accept the connection in time", path);
        if (k < 0)
                return verr_set(e, k, "cannot connect to QMP socket '%s': %s", path, strerror(-k));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int qmp_socket_probe(const char *path) {
        _cleanup_close_ int fd = -1;
        int k = connect_unix(path, now_ms(), &fd, NULL);

        if (k == 0 || k == -ETIMEDOUT) /* accepted, or a full backlog: someone listens */
                return 1;
        if (k == -ECONNREFUSED || k == -ENOENT)
                return 0;
        return k;
}

static void parse_greeting(struct qmp_client *c) {
        json_object *qmp, *version, *qemu;
        uint32_t major, minor, micro;

        if (!json_get_object(c->greeting, "QMP", &qmp) && !json_get_object(qmp, "version", &version) &&
            !json_get_object(version, "qemu", &qemu) && !json_get_uint32(qemu, "major", &major) &&
            !json_get_uint32(qemu, "minor", &minor) && !json_get_uint32(qemu, "micro", &micro))
                snprintf(c->version, sizeof(c->version), "%" PRIu32 ".%" PRIu32 ".%" PRIu32, major, minor, micro);
}

int qmp_client_connect(const char *path, int timeout_ms, struct qmp_client **ret, struct verr *e) {
        _cleanup_qmp_client_ struct qmp_client *c = NULL;
        int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        struct ucred cred;
        socklen_t len = sizeof(cred);
        int k;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->next_id = 1;
        k = proto_reader_new(QMP_MAX_FRAME_SIZE, &c->reader);
        if (k < 0)
                return k;
        k = proto_reader_set_limits(c->reader, &qmp_limits);
        if (k < 0)
                return k;

        k = connect_unix(path, deadline, &c->fd, e);
        if (k < 0)
                return k;
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return verr_set(e, negative_errno(), "cannot get the credentials of the QMP peer: %m");
        c->peer_uid = cred.uid;
        c->peer_gid = cred.gid;

        c->want_greeting = true;
        while (!c->greeting) {
                k = client_fill(c, deadline, "its QMP greeting (is another client using the monitor?)", e);
                if (k < 0)
                        return k;
                if (c->n_events > 0) {
                        c->dead = true;
                        return verr_set(e, -EBADMSG, "QEMU sent an event before its QMP greeting");
                }
        }
        parse_greeting(c);

        k = qmp_client_execute(c, "qmp_capabilities", NULL, ms_left(deadline), NULL, NULL, e);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(c);
        return 0;
}

static int reply_to_error(json_object *reply, const char *command, struct qmp_error *ret_error, struct verr *e) {
        json_object *error;
        const char *cls, *desc;

        if (json_get_object(reply, "error", &error) < 0 || json_get_string(error, "class", &cls) < 0 ||
            json_get_string(error, "desc", &desc) < 0)
                return verr_set(e, -EBADMSG, "QEMU sent a malformed error reply to %s", command);
        if (ret_error) {
                snprintf(ret_error->error_class, sizeof(ret_error->error_class), "%s", cls);
                snprintf(ret_error->desc, sizeof(ret_error->desc), "%s", desc);
        }
        return verr_set(e, -EREMOTEIO, "QEMU refused %s: %s", command, desc);
}

int qmp_client_execute(struct qmp_client *c, const char *command, json_object *args, int timeout_ms,
                       json_object **ret_value, struct qmp_error *ret_error, struct verr *e) {
        _cleanup_json_ json_object *request = NULL, *reply = NULL;
        int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        json_object *value;
        char id[sizeof(c->want_id)];
        int k;

        if (!command || !*command)
                return -EINVAL;
        if (args && !json_object_is_type(args, json_type_object))
                return verr_set(e, -EINVAL, "arguments of %s must be a JSON object", command);
        if (c->dead)
                return verr_set(e, -ENOTCONN, "the QMP connection is closed");

        snprintf(id, sizeof(id), QMP_ID_PREFIX "%" PRIu64, c->next_id++);
        request = json_object_new_object();
        if (!request ||
            json_object_object_add(request, "execute", json_object_new_string(command)) < 0 ||
            (args && json_object_object_add(request, "arguments", json_object_get(args)) < 0) ||
            json_object_object_add(request, "id", json_object_new_string(id)) < 0)
                return -ENOMEM;

        if (c->reply) {
                json_object_put(c->reply);
                c->reply = NULL;
        }
        memcpy(c->want_id, id, sizeof(id));

        k = client_send(c, request, deadline, e);
        while (k >= 0 && !c->reply) {
                char what[128];
                snprintf(what, sizeof(what), "a reply to %s", command);
                k = client_fill(c, deadline, what, e);
        }
        c->want_id[0] = '\0';
        if (k < 0)
                return k;
        reply = TAKE_PTR(c->reply);

        if (json_object_object_get_ex(reply, "error", NULL))
                return reply_to_error(reply, command, ret_error, e);
        if (!json_object_object_get_ex(reply, "return", &value))
                return verr_set(e, -EBADMSG, "QEMU sent a reply to %s without \"return\"", command);
        if (ret_value)
                *ret_value = json_object_get(value);
        return 0;
}

static bool event_matches(json_object *event, const char *name, qmp_event_match match, void *userdata) {
        json_object *v, *data = NULL;

        if (!json_object_object_get_ex(event, "event", &v) || !streq(json_object_get_string(v), name))
                return false;
        if (!json_object_object_get_ex(event, "data", &data))
                data = NULL;
        return !match || match(event, data, userdata);
}

int qmp_client_wait_event(struct qmp_client *c, const char *name, qmp_event_match match, void *userdata,
                          int timeout_ms, json_object **ret_event, struct verr *e) {
        int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        char what[128];

        if (!name || !*name)
                return -EINVAL;
        snprintf(what, sizeof(what), "event %s", name);
        for (;;) {
                for (size_t i = 0; i < c->n_events; i++) {
                        if (!event_matches(c->events[i], name, match, userdata))
                                continue;
                        json_object *event = unqueue_event(c, i);
                        if (ret_event)
                                *ret_event = event;
                        else
                                json_object_put(event);
                        return 0;
                }
                int k = client_fill(c, deadline, what, e);
                if (k < 0)
                        return k;
        }
}

bool qmp_match_data_string(json_object *event, json_object *data, void *userdata) {
        const struct qmp_match_string *m = userdata;
        const char *v;

        return data && json_get_string(data, m->key, &v) == 0 && streq(v, m->value);
}
