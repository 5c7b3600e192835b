/* varlink.c: the varlink server of varlink.h (framing, limits, connections, replies).
 *
 * Every connection owns one input buffer that never exceeds VARLINK_MAX_MESSAGE bytes: a client
 * that sends that many bytes without a NUL, or a message that breaks a count or depth limit, or
 * an envelope that is not a varlink call, is disconnected (there is no way to resynchronize a
 * stream of NUL-terminated JSON that lied once). Replies go to an output queue; while it is not
 * empty the connection is not read, so memory per connection stays one message in and the
 * answers to one call out. Nothing here logs: the server is library code, and a misbehaving
 * client is not an event worth a journal line per connection. */
#include "varlink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "json-util.h"
#include "macro.h"
#include "proto.h"

struct varlink_connection {
        struct varlink_server *server;
        struct varlink_connection *prev, *next;
        int fd;
        uid_t uid;
        sd_event_source *io;
        sd_event_source *timer;
        char *in;
        size_t in_len;
        char *out;
        size_t out_len, out_off, out_cap;
};

struct varlink_server {
        sd_event *event;
        const struct varlink_method *methods;
        size_t n_methods;
        void *userdata;
        int listen_fd;
        sd_event_source *listen_source;
        char *bound_path;
        struct varlink_connection *connections;
        unsigned n_connections;
};

struct varlink_call {
        struct varlink_connection *connection;
        bool more;
        bool oneway;
        bool answered; /* a final reply or an error was queued */
};

static const struct proto_limits message_limits = {
        .max_bytes = VARLINK_MAX_MESSAGE,
        .max_values = VARLINK_MAX_VALUES,
        .max_containers = VARLINK_MAX_CONTAINERS,
        .max_token = VARLINK_MAX_MESSAGE,
        .max_depth = VARLINK_MAX_DEPTH,
};

static void connection_free(struct varlink_connection *c) {
        struct varlink_server *s = c->server;

        if (c->prev)
                c->prev->next = c->next;
        else
                s->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_connections--;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        if (c->fd >= 0)
                close(c->fd);
        free(c->in);
        free(c->out);
        free(c);
}

static int queue_bytes(struct varlink_connection *c, const char *data, size_t len) {
        if (c->out_off > 0 && c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
        if (c->out_len + len > c->out_cap) {
                size_t cap = c->out_cap ? c->out_cap : 4096;
                while (cap < c->out_len + len)
                        cap *= 2;
                char *n = realloc(c->out, cap);
                if (!n)
                        return -ENOMEM;
                c->out = n;
                c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, data, len);
        c->out_len += len;
        return 0;
}

/* Writes what the socket takes now. 1: all out, 0: some left, <0: connection is dead. */
static int flush_output(struct varlink_connection *c) {
        while (c->out_off < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return negative_errno();
                }
                c->out_off += (size_t) n;
        }
        c->out_off = c->out_len = 0;
        if (c->out_cap > 64u * 1024u) {
                /* One big enumeration should not pin its buffer for the connection's life. */
                free(c->out);
                c->out = NULL;
                c->out_cap = 0;
        }
        return 1;
}

bool varlink_call_more(const struct varlink_call *call) {
        return call->more;
}

uid_t varlink_call_peer_uid(const struct varlink_call *call) {
        return call->connection->uid;
}

int varlink_call_reply_text(struct varlink_call *call, const char *parameters_json, bool continues) {
        static const char head[] = "{\"parameters\":", more_tail[] = ",\"continues\":true}", tail[] = "}";
        struct varlink_connection *c = call->connection;
        int r;

        if (call->answered || (continues && !call->more))
                return -EINVAL;
        if (!continues)
                call->answered = true;
        if (call->oneway)
                return 0;
        if ((r = queue_bytes(c, head, sizeof(head) - 1)) < 0 ||
            (r = queue_bytes(c, parameters_json, strlen(parameters_json))) < 0)
                return r;
        return continues ? queue_bytes(c, more_tail, sizeof(more_tail)) : queue_bytes(c, tail, sizeof(tail));
}

int varlink_call_error(struct varlink_call *call, const char *error, json_object *parameters) {
        _cleanup_json_ json_object *obj = json_object_new_object();
        const char *text;

        if (call->answered)
                return -EINVAL;
        call->answered = true;
        if (call->oneway)
                return 0;
        if (!obj || json_object_object_add(obj, "error", json_object_new_string(error)) < 0 ||
            (parameters && json_object_object_add(obj, "parameters", json_object_get(parameters)) < 0))
                return -ENOMEM;
        text = json_to_compact(obj);
        if (!text)
                return -ENOMEM;
        return queue_bytes(call->connection, text, strlen(text) + 1);
}

int varlink_call_invalid_parameter(struct varlink_call *call, const char *name) {
        _cleanup_json_ json_object *p = json_object_new_object();
        if (!p || json_object_object_add(p, "parameter", json_object_new_string(name)) < 0)
                return -ENOMEM;
        return varlink_call_error(call, "org.varlink.service.InvalidParameter", p);
}

/* One message (NUL stripped). <0: protocol violation, the connection ends. */
static int handle_message(struct varlink_connection *c, const char *text, size_t len) {
        struct varlink_server *s = c->server;
        _cleanup_json_ json_object *msg = NULL, *empty = NULL;
        json_object *parameters = NULL;
        const char *method = NULL;
        struct varlink_call call = { .connection = c };
        const struct varlink_method *m = NULL;
        int r;

        r = proto_scan(text, len, &message_limits, NULL);
        if (r < 0)
                return r;
        r = json_parse_strict(text, len, &msg);
        if (r < 0)
                return r;
        if (!json_object_is_type(msg, json_type_object))
                return -EBADMSG;
        json_object_object_foreach(msg, key, value) {
                (void) value;
                if (!streq(key, "method") && !streq(key, "parameters") && !streq(key, "more") && !streq(key, "oneway"))
                        return -EBADMSG;
        }
        if (json_get_string(msg, "method", &method) < 0)
                return -EBADMSG;
        r = json_get_object(msg, "parameters", &parameters);
        if (r == -ENOENT) {
                parameters = empty = json_object_new_object();
                if (!empty)
                        return -ENOMEM;
        } else if (r < 0)
                return -EBADMSG;
        r = json_get_bool(msg, "more", &call.more);
        if (r < 0 && r != -ENOENT)
                return -EBADMSG;
        r = json_get_bool(msg, "oneway", &call.oneway);
        if (r < 0 && r != -ENOENT)
                return -EBADMSG;
        if (call.more && call.oneway)
                return -EBADMSG;

        for (size_t i = 0; i < s->n_methods; i++)
                if (streq(s->methods[i].name, method)) {
                        m = &s->methods[i];
                        break;
                }
        if (!m) {
                _cleanup_json_ json_object *p = json_object_new_object();
                if (!p || json_object_object_add(p, "method", json_object_new_string(method)) < 0)
                        return -ENOMEM;
                return varlink_call_error(&call, "org.varlink.service.MethodNotFound", p);
        }

        r = m->handler(&call, parameters, s->userdata);
        if (!call.answered) {
                /* A method that failed (or forgot to answer) still owes the client an answer;
                 * replies already sent with "continues" are followed by this error. */
                _cleanup_json_ json_object *p = json_object_new_object();
                if (!p || json_object_object_add(p, "errno", json_object_new_int(r < 0 ? -r : EIO)) < 0)
                        return -ENOMEM;
                return varlink_call_error(&call, "io.vmuser.InternalError", p);
        }
        return 0;
}

static int connection_update_events(struct varlink_connection *c) {
        return sd_event_source_set_io_events(c->io, c->out_off < c->out_len ? EPOLLOUT : EPOLLIN);
}

/* Handles every complete message in the input buffer, stopping while replies are pending. */
static int process_input(struct varlink_connection *c) {
        while (c->out_off == c->out_len) {
                char *nul = c->in ? memchr(c->in, '\0', c->in_len) : NULL;
                if (!nul)
                        break;
                size_t len = (size_t) (nul - c->in);
                int r = handle_message(c, c->in, len);
                if (r < 0)
                        return r;
                memmove(c->in, nul + 1, c->in_len - len - 1);
                c->in_len -= len + 1;
                (void) sd_event_source_set_time_relative(c->timer, VARLINK_IDLE_TIMEOUT_USEC);
                r = flush_output(c);
                if (r < 0)
                        return r;
        }
        if (c->in_len == VARLINK_MAX_MESSAGE)
                return -EMSGSIZE; /* a full buffer and no NUL: a message over the limit */
        return connection_update_events(c);
}

static int on_connection_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct varlink_connection *c = userdata;
        int r;

        (void) src;
        if (revents & EPOLLOUT) {
                r = flush_output(c);
                if (r < 0)
                        goto kill;
                if (r > 0 && (r = process_input(c)) < 0)
                        goto kill;
                return 0;
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (!c->in) {
                        c->in = malloc(VARLINK_MAX_MESSAGE);
                        if (!c->in)
                                goto kill;
                }
                ssize_t n = recv(fd, c->in + c->in_len, VARLINK_MAX_MESSAGE - c->in_len, MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n <= 0)
                        goto kill;
                c->in_len += (size_t) n;
                if (process_input(c) < 0)
                        goto kill;
        }
        return 0;
kill:
        connection_free(c);
        return 0;
}

static int on_connection_idle(sd_event_source *src, uint64_t usec, void *userdata) {
        (void) src;
        (void) usec;
        connection_free(userdata);
        return 0;
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct varlink_server *s = userdata;
        _cleanup_close_ int cfd = -1;
        struct ucred cred = {};
        socklen_t cred_len = sizeof(cred);
        unsigned same_uid = 0;
        struct varlink_connection *c;

        (void) src;
        (void) revents;
        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0; /* EAGAIN, ECONNABORTED, EMFILE: the next client gets its turn */
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) < 0)
                return 0;
        if (s->n_connections >= VARLINK_MAX_CONNECTIONS)
                return 0;
        for (c = s->connections; c; c = c->next)
                same_uid += c->uid == cred.uid;
        if (same_uid >= VARLINK_MAX_CONNECTIONS_PER_UID)
                return 0;

        c = calloc(1, sizeof(*c));
        if (!c)
                return 0;
        c->server = s;
        c->fd = -1;
        c->uid = cred.uid;
        c->next = s->connections;
        if (c->next)
                c->next->prev = c;
        s->connections = c;
        s->n_connections++;
        if (sd_event_add_io(s->event, &c->io, cfd, EPOLLIN, on_connection_io, c) < 0 ||
            sd_event_add_time_relative(s->event, &c->timer, CLOCK_MONOTONIC, VARLINK_IDLE_TIMEOUT_USEC, 0,
                                       on_connection_idle, c) < 0) {
                connection_free(c);
                return 0;
        }
        c->fd = TAKE_FD(cfd);
        return 0;
}

int varlink_server_new(sd_event *event, const struct varlink_method *methods, size_t n_methods, void *userdata,
                       struct varlink_server **ret) {
        struct varlink_server *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->methods = methods;
        s->n_methods = n_methods;
        s->userdata = userdata;
        s->listen_fd = -1;
        *ret = s;
        return 0;
}

int varlink_server_listen_fd(struct varlink_server *s, int fd) {
        int r;

        if (s->listen_fd >= 0)
                return -EBUSY;
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
                return negative_errno();
        r = sd_event_add_io(s->event, &s->listen_source, fd, EPOLLIN, on_accept, s);
        if (r < 0)
                return r;
        s->listen_fd = fd;
        return 0;
}

int varlink_server_listen(struct varlink_server *s, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        if (unlink(path) < 0 && errno != ENOENT)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        /* Everyone may look users up; what a peer sees is decided per call (SO_PEERCRED). */
        if (chmod(path, 0666) < 0 || listen(fd, 64) < 0) {
                r = negative_errno();
                (void) unlink(path);
                return r;
        }
        s->bound_path = strdup(path);
        if (!s->bound_path) {
                (void) unlink(path);
                return -ENOMEM;
        }
        r = varlink_server_listen_fd(s, fd);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

struct varlink_server *varlink_server_free(struct varlink_server *s) {
        if (!s)
                return NULL;
        while (s->connections)
                connection_free(s->connections);
        sd_event_source_disable_unref(s->listen_source);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        if (s->bound_path) {
                (void) unlink(s->bound_path);
                free(s->bound_path);
        }
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

void varlink_server_freep(struct varlink_server **s) {
        varlink_server_free(*s);
}

unsigned varlink_server_connections(const struct varlink_server *s) {
        return s->n_connections;
}
