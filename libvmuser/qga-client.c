/* qga-client.c: the host end of the agent protocol (see qga-client.h).
 *
 * Bytes read from the socket are split at 0xFF before they reach the frame reader: a 0xFF resets
 * the reader and marks the next frame as "delimited", which is what a sync reply must be. The
 * frame callback then acts on what the client is waiting for: during a sync only a delimited
 * {"return": <sync id>} counts and everything else is stale; during a request the frame with
 * the request's id is the reply, frames with other ids are stale, and a malformed frame ends the
 * request (the channel is re-synced before the next one).
 *
 * Pipelining: qga_client_send() puts a request on the wire and records it as pending (its id,
 * its command and its deadline); qga_client_receive() reads until the reply to one pending
 * request has come. A frame with the id of another pending request is kept for it, so replies
 * may come in any order; a frame that names no pending id is stale. What cannot be told apart
 * by id (a malformed frame, an error object without id) is charged to the oldest request still
 * waiting, and the channel is marked for a re-sync, which only happens once nothing is in flight
 * (a sync discards every reply before its own). qga_client_call() is a send and its receive.
 *
 * What a frame may hold is set on the reader for what the client waits for (qga-limits.c,
 * derived in doc/PROTOCOL.txt): while it waits for a sync reply only a frame the size of
 * {"return": ID} is parsed and everything larger is skipped unparsed; a reply gets the limits
 * of its command. A frame over a limit never reaches json-c, and it, or a reply still unfinished
 * when the call's deadline passes, ends the connection: such an agent is broken or hostile. */
#include "qga-client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "macro.h"
#include "proto.h"
#include "qga-limits.h"
#include "socket-util.h"
#include "time-util.h"

/* Ids stay below 2^53 so any JSON implementation on the other side represents them exactly. */
#define QGA_ID_MASK ((UINT64_C(1) << 53) - 1)

/* A request on the wire whose reply has not been handed out. */
struct qga_pending {
        int64_t id;
        char command[64];
        int64_t deadline;
        int timeout_ms;         /* what it was sent with, for the messages */
        bool queued;            /* in the cork queue, not written yet */
        size_t queue_end;       /* where its frame ends in the queue: after its '}' (the agent
                                 * acts on a frame then, before the newline) */
        int send_error;         /* writing it failed */
        bool done;              /* its reply (or frame_error) is here */
        json_object *reply;
        int frame_error;
};

enum qga_wait {
        QGA_WAIT_NOTHING,
        QGA_WAIT_SYNC,
        QGA_WAIT_REPLY,
};

struct qga_client {
        int fd;
        struct proto_reader *reader;
        bool synced;            /* the channel is known to be clean */
        bool dead;              /* closed by the peer, broken, or silent: no further I/O */
        const char *dead_reason;
        int dead_error;         /* what killed it, for the requests still in flight */
        bool read_done;         /* nothing more is read (closed, broken, over a limit); after a
                                 * failed write the replies already sent are still read */
        int64_t next_id;

        struct qga_pending pending[QGA_CLIENT_MAX_IN_FLIGHT]; /* oldest first */
        size_t n_pending;

        /* What on_frame() is looking for, and what it found. */
        enum qga_wait wait;
        int64_t wait_id;
        bool after_delimiter;   /* a 0xFF arrived and no frame since */
        bool done;

        /* Corked requests not written yet (qga_client_cork). */
        bool corked;
        char *out;
        size_t out_len, out_size, out_n;
        int out_timeout_ms;

        unsigned char buf[64 * 1024];
};

static int64_t random_id(void) {
        uint64_t v = 0;
        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t) sizeof(v)) {
                /* No entropy yet (early boot): a clock-based id still differs between runs. */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                v = (uint64_t) ts.tv_nsec * UINT64_C(6364136223846793005) ^ (uint64_t) ts.tv_sec ^
                    (uint64_t) getpid() << 32;
        }
        v &= QGA_ID_MASK;
        return (int64_t) (v ? v : 1);
}

/* "5 s", "1.5 s", "250 ms": for messages. */
static const char *format_timeout(int timeout_ms, char *buf, size_t size) {
        if (timeout_ms < 1000)
                snprintf(buf, size, "%d ms", timeout_ms);
        else
                snprintf(buf, size, "%g s", timeout_ms / 1000.0);
        return buf;
}

struct qga_client *qga_client_free(struct qga_client *c) {
        if (!c)
                return NULL;
        closep(&c->fd);
        proto_reader_free(c->reader);
        for (size_t i = 0; i < c->n_pending; i++)
                json_object_put(c->pending[i].reply);
        if (c->out)
                explicit_bzero(c->out, c->out_size);
        free(c->out);
        free(c);
        return NULL;
}

void qga_client_freep(struct qga_client **c) {
        qga_client_free(*c);
}

int qga_client_connect(const char *path, int timeout_ms, struct qga_client **ret, struct verr *e) {
        _cleanup_close_ int fd = -1, dir_fd = -1;
        struct qga_client *c;
        struct sockaddr_un sa;
        char t[32];
        int r;

        r = sockaddr_un_from_path(path, &sa, &dir_fd);
        if (r < 0)
                return verr_set(e, r, "cannot address the socket '%s': %s", path, strerror(-r));

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return verr_set(e, negative_errno(), "cannot create a socket: %m");

        r = connect_unix_deadline(fd, &sa, now_ms() + timeout_ms);
        if (r == -ETIMEDOUT)
                return verr_set(e, r, "connecting to '%s' did not complete within %s (the listener does not accept)",
                                path, format_timeout(timeout_ms, t, sizeof(t)));
        if (r < 0)
                return verr_set(e, r, "cannot connect to '%s': %s", path, strerror(-r));

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = TAKE_FD(fd);
        c->next_id = random_id();
        r = proto_reader_new(PROTO_MAX_REPLY_SIZE, &c->reader);
        if (r < 0) {
                qga_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* {"return": id} and nothing else. */
static bool frame_is_sync_reply(json_object *obj, int64_t id) {
        json_object *v;

        if (!json_object_is_type(obj, json_type_object) || json_object_object_length(obj) != 1)
                return false;
        if (!json_object_object_get_ex(obj, "return", &v) || !json_object_is_type(v, json_type_int))
                return false;
        return json_object_get_int64(v) == id;
}

static struct qga_pending *find_pending(struct qga_client *c, int64_t id) {
        for (size_t i = 0; i < c->n_pending; i++)
                if (c->pending[i].id == id)
                        return &c->pending[i];
        return NULL;
}

static struct qga_pending *oldest_waiting(struct qga_client *c) {
        for (size_t i = 0; i < c->n_pending; i++)
                if (!c->pending[i].done)
                        return &c->pending[i];
        return NULL;
}

static void pending_drop(struct qga_client *c, struct qga_pending *p) {
        size_t i = (size_t) (p - c->pending);
        json_object_put(p->reply);
        memmove(p, p + 1, (c->n_pending - i - 1) * sizeof(*p));
        c->n_pending--;
}

static int on_frame(json_object *obj, int error, void *userdata) {
        struct qga_client *c = userdata;
        bool delimited = c->after_delimiter;
        json_object *id;

        c->after_delimiter = false;

        switch (c->wait) {
        case QGA_WAIT_SYNC:
                /* Garbage and old replies are expected here: that is what the sync is for. */
                if (error == 0 && delimited && frame_is_sync_reply(obj, c->wait_id)) {
                        c->done = true;
                        c->wait = QGA_WAIT_NOTHING;
                }
                return 0;

        case QGA_WAIT_REPLY: {
                struct qga_pending *p = NULL;
                if (error == 0 && json_object_is_type(obj, json_type_object) && json_object_object_get_ex(obj, "id", &id)) {
                        if (!json_object_is_type(id, json_type_int))
                                return 0; /* not one of ours: stale */
                        p = find_pending(c, json_object_get_int64(id));
                        if (!p || p->done)
                                return 0; /* an answer to an earlier request: stale */
                } else {
                        /* After a sync the next reply is ours, and ours carries our id; only an
                         * error about a request the agent could not read may lack it. Which
                         * request it is about is a guess: the oldest, and the channel is
                         * re-synced before the next request. */
                        p = oldest_waiting(c);
                        if (!p)
                                return 0;
                        if (error < 0)
                                p->frame_error = error;
                        else if (!(json_object_is_type(obj, json_type_object) &&
                                   json_object_object_get_ex(obj, "error", NULL)))
                                p->frame_error = -EPROTO;
                        if (c->n_pending > 1)
                                c->synced = false;
                }
                p->done = true;
                if (p->frame_error == 0)
                        p->reply = json_object_get(obj);
                /* Still waiting for replies: the frames after this one in the same read may be
                 * answers to the other requests in flight. */
                if (p->id == c->wait_id)
                        c->done = true;
                return 0;
        }

        case QGA_WAIT_NOTHING:
        default:
                return 0;
        }

        c->done = true;
        c->wait = QGA_WAIT_NOTHING;
        return 0;
}

static int client_feed(struct qga_client *c, const unsigned char *p, size_t n) {
        while (n > 0) {
                const unsigned char *d = memchr(p, PROTO_DELIMITER, n);
                size_t segment = d ? (size_t) (d - p) : n;
                int r = proto_reader_feed(c->reader, p, segment, on_frame, c);
                if (r < 0)
                        return r;
                if (!d)
                        break;
                proto_reader_reset(c->reader);
                c->after_delimiter = true;
                p = d + 1;
                n -= segment + 1;
        }
        return 0;
}

/* Reads until on_frame() is done or the deadline passes. What is readable when it passes is
 * still read (a reply that came while the host was busy elsewhere counts), but no more than the
 * largest frame awaited and one buffer: a trickle or a flood does not keep it reading. */
static int client_wait(struct qga_client *c, int64_t deadline) {
        bool late = false;
        size_t late_budget = 0;

        while (!c->done) {
                int64_t left = deadline - now_ms();
                if (left <= 0) {
                        if (!late) {
                                late = true;
                                late_budget = proto_reader_get_limits(c->reader)->max_bytes + sizeof(c->buf);
                        } else if (late_budget == 0)
                                return -ETIMEDOUT;
                        left = 0;
                }

                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                int k = poll(&p, 1, (int) (left > INT_MAX ? INT_MAX : left));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0) {
                        if (late)
                                return -ETIMEDOUT;
                        continue;
                }

                ssize_t n = read(c->fd, c->buf, sizeof(c->buf));
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        c->dead = c->read_done = true;
                        c->dead_error = negative_errno();
                        /* A reset (requests were left unread): closed, as far as we can tell. */
                        c->dead_reason = c->dead_error == -ECONNRESET ? "the agent channel was closed"
                                                                      : "reading from the agent channel failed";
                        return c->dead_error;
                }
                if (n == 0) {
                        c->dead = c->read_done = true;
                        c->dead_reason = "the agent channel was closed";
                        c->dead_error = -ECONNRESET;
                        return -ECONNRESET;
                }
                if (late)
                        late_budget = (size_t) n >= late_budget ? 0 : late_budget - (size_t) n;
                int r = client_feed(c, c->buf, (size_t) n);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void client_begin_wait(struct qga_client *c, enum qga_wait what, int64_t id, const struct proto_limits *limits) {
        /* Constant, valid limits: this cannot fail. */
        (void) proto_reader_set_limits(c->reader, limits);
        c->wait = what;
        c->wait_id = id;
        c->done = false;
}

/* The limits while replies are awaited: those of the largest reply in flight. */
static const struct proto_limits *pending_limits(const struct qga_client *c) {
        for (size_t i = 0; i < c->n_pending; i++)
                if (qga_reply_limits(c->pending[i].command) == &qga_list_reply_limits)
                        return &qga_list_reply_limits;
        return &qga_small_reply_limits;
}

static int client_write(struct qga_client *c, const char *buf, size_t len, int timeout_ms, size_t *ret_written) {
        int r = proto_write_all_n(c->fd, buf, len, timeout_ms, ret_written);
        if (r < 0 && r != -ETIMEDOUT) {
                c->dead = true;
                c->dead_reason = "writing to the agent channel failed";
        }
        return r;
}

/* Writes the cork queue. Each request's deadline runs from the write (it waited in the queue
 * while the next ones were prepared). When the write fails, the requests written whole are in flight
 * as any other; the one cut off and those after it fail as a failed write of a single request
 * would: a timeout leaves the channel to be re-synced (the sync's 0xFF ends the cut frame),
 * anything else ends it (client_write). */
static void client_flush(struct qga_client *c) {
        size_t written = 0;

        if (c->out_n == 0)
                return;
        int64_t now = now_ms();
        int r = c->dead ? -ENOTCONN : client_write(c, c->out, c->out_len, c->out_timeout_ms, &written);
        if (r == -ETIMEDOUT)
                c->synced = false;
        for (size_t i = 0; i < c->n_pending; i++) {
                struct qga_pending *p = &c->pending[i];
                if (!p->queued)
                        continue;
                p->queued = false;
                p->deadline = now + p->timeout_ms;
                if (r < 0 && p->queue_end > written) {
                        p->done = true;
                        p->send_error = r;
                }
        }
        explicit_bzero(c->out, c->out_len);
        c->out_len = c->out_n = 0;
}

static int client_queue(struct qga_client *c, const char *text, size_t len, int timeout_ms) {
        if (c->out_len + len > c->out_size) {
                size_t size = c->out_len + len > QGA_CLIENT_CORK_BYTES ? c->out_len + len : QGA_CLIENT_CORK_BYTES + 4096u;
                char *out = malloc(size);
                if (!out)
                        return -ENOMEM;
                if (c->out) {
                        memcpy(out, c->out, c->out_len);
                        explicit_bzero(c->out, c->out_size);
                        free(c->out);
                }
                c->out = out;
                c->out_size = size;
        }
        memcpy(c->out + c->out_len, text, len);
        c->out_len += len;
        c->out_n++;
        c->out_timeout_ms = timeout_ms;
        return 0;
}

void qga_client_cork(struct qga_client *c, bool cork) {
        c->corked = cork;
        if (!cork)
                client_flush(c);
}

int qga_client_sync(struct qga_client *c, int timeout_ms, struct verr *e) {
        int64_t deadline = now_ms() + timeout_ms;
        int64_t id = random_id();
        char request[128], t[32];
        int n, r;

        if (c->dead)
                return verr_set(e, -ENOTCONN, "%s earlier; no further requests are sent", c->dead_reason);
        if (c->n_pending > 0) /* a sync would discard their replies */
                return verr_set(e, -EBUSY, "requests are still in flight: not synchronizing now");

        c->synced = false;
        n = snprintf(request, sizeof(request),
                     "%c{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%" PRId64 "}}\n",
                     (char) PROTO_DELIMITER, id);
        r = client_write(c, request, (size_t) n, timeout_ms, NULL);
        if (r == -ETIMEDOUT) {
                c->dead = true;
                c->dead_reason = "the agent channel took no data";
                return verr_set(e, r, "the agent channel takes no data (guest-sync-delimited not sent within %s): "
                                      "is vmuser-agent running in the guest?",
                                format_timeout(timeout_ms, t, sizeof(t)));
        }
        if (r < 0)
                return verr_set(e, r, "sending guest-sync-delimited failed: %s", strerror(-r));

        client_begin_wait(c, QGA_WAIT_SYNC, id, &qga_sync_limits);
        r = client_wait(c, deadline);
        c->wait = QGA_WAIT_NOTHING;
        if (r == -ETIMEDOUT) {
                /* Waiting again for each later request would multiply the timeout: give up. */
                c->dead = true;
                c->dead_reason = "the agent did not answer guest-sync-delimited";
                return verr_set(e, r, "no reply to guest-sync-delimited within %s: is vmuser-agent running in the "
                                      "guest (and no other client connected to its channel)?",
                                format_timeout(timeout_ms, t, sizeof(t)));
        }
        if (r == -ECONNRESET)
                return verr_set(e, r, "the agent channel was closed while synchronizing");
        if (r < 0)
                return verr_set(e, r, "synchronizing with the agent failed: %s", strerror(-r));

        c->synced = true;
        return 0;
}

/* Checks the envelope of a matched reply and hands out its parts. */
static int parse_reply(json_object *reply, const char *command, json_object **ret_value, struct qga_error *ret_error,
                       struct verr *e) {
        json_object *value = NULL, *error = NULL;
        const char *klass, *desc;

        if (!json_object_is_type(reply, json_type_object))
                return verr_set(e, -EBADMSG, "the reply to '%s' is not a JSON object", command);
        json_object_object_foreach(reply, key, val) {
                (void) val;
                if (!streq(key, "return") && !streq(key, "error") && !streq(key, "id"))
                        return verr_set(e, -EBADMSG, "the reply to '%s' has an unknown member '%.64s'", command, key);
        }
        json_object_object_get_ex(reply, "return", &value);
        json_object_object_get_ex(reply, "error", &error);
        if (!!value == !!error)
                return verr_set(e, -EBADMSG, "the reply to '%s' must have exactly one of 'return' and 'error'",
                                command);

        if (value) {
                *ret_value = json_object_get(value);
                return 0;
        }

        if (json_get_string(error, "class", &klass) < 0 || json_get_string(error, "desc", &desc) < 0)
                return verr_set(e, -EBADMSG, "the error reply to '%s' lacks the strings 'class' and 'desc'", command);
        if (ret_error) {
                snprintf(ret_error->error_class, sizeof(ret_error->error_class), "%s", klass);
                snprintf(ret_error->desc, sizeof(ret_error->desc), "%s", desc);
        }
        return verr_set(e, -EREMOTEIO, "%s", desc);
}

int qga_client_send(struct qga_client *c, const char *command, json_object *args, int timeout_ms, int64_t *ret_id,
                    struct verr *e) {
        _cleanup_json_ json_object *request = NULL;
        _cleanup_erase_free_ char *text = NULL; /* may carry a password hash */
        int64_t id, deadline;
        const char *s;
        size_t len;
        char t[32];
        int r;

        if (c->dead)
                return verr_set(e, -ENOTCONN, "%s earlier; no further requests are sent", c->dead_reason);
        if (c->n_pending >= QGA_CLIENT_MAX_IN_FLIGHT || (!c->synced && c->n_pending > 0))
                return verr_set(e, -EBUSY, "'%s' not sent: %s", command,
                                c->synced ? "too many requests in flight"
                                          : "the channel must be re-synchronized once the requests in flight are answered");
        if (strlen(command) >= sizeof(c->pending[0].command))
                return verr_set(e, -EINVAL, "'%.64s...' is not a command name", command);
        if (!c->synced) {
                r = qga_client_sync(c, timeout_ms, e);
                if (r < 0)
                        return r;
        }

        id = c->next_id;
        c->next_id = (c->next_id + 1) & (int64_t) QGA_ID_MASK;
        request = json_object_new_object();
        if (!request || json_object_object_add(request, "execute", json_object_new_string(command)) < 0 ||
            (args && json_object_object_add(request, "arguments", json_object_get(args)) < 0) ||
            json_object_object_add(request, "id", json_object_new_int64(id)) < 0)
                return -ENOMEM;
        s = json_to_compact(request);
        if (!s)
                return -ENOMEM;
        len = strlen(s);
        text = malloc(len + 2);
        if (!text)
                return -ENOMEM;
        memcpy(text, s, len);
        text[len++] = '\n';
        text[len] = '\0';
        /* The serialization json-c keeps inside the object may hold a hash: wipe it now. */
        explicit_bzero((char *) s, len - 1);

        deadline = now_ms() + timeout_ms;
        if (c->corked) {
                r = client_queue(c, text, len, timeout_ms);
                if (r < 0)
                        return r;
                c->pending[c->n_pending++] = (struct qga_pending) {
                        .id = id, .deadline = deadline, .timeout_ms = timeout_ms, .queued = true,
                        .queue_end = c->out_len - 1 };
                strcpy(c->pending[c->n_pending - 1].command, command);
                *ret_id = id;
                if (c->out_n >= QGA_CLIENT_CORK_REQUESTS || c->out_len >= QGA_CLIENT_CORK_BYTES)
                        client_flush(c);
                return 0;
        }
        r = client_write(c, text, len, timeout_ms, NULL);
        if (r == -ETIMEDOUT) {
                c->synced = false;
                return verr_set(e, r, "the agent did not take the '%s' request within %s",
                                command, format_timeout(timeout_ms, t, sizeof(t)));
        }
        if (r < 0)
                return verr_set(e, r, "sending '%s' failed: %s", command, strerror(-r));

        c->pending[c->n_pending++] = (struct qga_pending) { .id = id, .deadline = deadline, .timeout_ms = timeout_ms };
        strcpy(c->pending[c->n_pending - 1].command, command);
        *ret_id = id;
        return 0;
}

size_t qga_client_in_flight(const struct qga_client *c) {
        return c->n_pending;
}

bool qga_client_needs_sync(const struct qga_client *c) {
        return !c->synced;
}

int qga_client_receive(struct qga_client *c, int64_t id, json_object **ret_value, struct qga_error *ret_error,
                       struct verr *e) {
        _cleanup_json_ json_object *reply = NULL;
        struct qga_pending *p = find_pending(c, id);
        char t[32], command[sizeof(p->command)];
        int timeout_ms, frame_error, r = 0;

        if (!p)
                return verr_set(e, -EINVAL, "no request %" PRId64 " is in flight", id);
        client_flush(c);
        if (!p->done && !c->read_done) {
                client_begin_wait(c, QGA_WAIT_REPLY, id, pending_limits(c));
                r = client_wait(c, p->deadline);
                c->wait = QGA_WAIT_NOTHING;
        }
        /* Taken off the list now: whatever happens below is this request's outcome. */
        strcpy(command, p->command);
        timeout_ms = p->timeout_ms;
        frame_error = p->frame_error;
        int send_error = p->send_error;
        bool done = p->done;
        reply = TAKE_PTR(p->reply);
        pending_drop(c, p);

        if (send_error == -ETIMEDOUT)
                return verr_set(e, send_error, "the agent did not take the '%s' request within %s", command,
                                format_timeout(timeout_ms, t, sizeof(t)));
        if (send_error == -ENOTCONN)
                return verr_set(e, send_error, "'%s' was not sent: %s earlier", command,
                                c->dead_reason ? c->dead_reason : "the agent channel broke");
        if (send_error < 0)
                return verr_set(e, send_error, "sending '%s' failed: %s", command, strerror(-send_error));
        if (r == 0 && !done) {
                /* The connection died while another request was awaited. */
                if (c->dead_error == -ECONNRESET)
                        return verr_set(e, -ECONNRESET, "the agent channel was closed before the reply to '%s'", command);
                return verr_set(e, -ENOTCONN, "%s before the reply to '%s'; whether it took effect is unknown",
                                c->dead_reason ? c->dead_reason : "the agent channel broke", command);
        }
        if (r == -ETIMEDOUT && proto_reader_in_frame(c->reader)) {
                /* Bytes came, but no end of the frame: a trickle that would hold every later
                 * request up just as long. */
                c->dead = c->read_done = true;
                c->dead_reason = "the agent sent a reply that did not end in time";
                c->dead_error = -ETIMEDOUT;
                return verr_set(e, r, "the reply to '%s' did not end within %s; whether it took effect is unknown",
                                command, format_timeout(timeout_ms, t, sizeof(t)));
        }
        if (r == -ETIMEDOUT) {
                c->synced = false;
                return verr_set(e, r, "no reply to '%s' within %s; whether it took effect is unknown", command,
                                format_timeout(timeout_ms, t, sizeof(t)));
        }
        if (r == -ECONNRESET)
                return verr_set(e, r, "the agent channel was closed before the reply to '%s'", command);
        if (r < 0)
                return verr_set(e, r, "reading the reply to '%s' failed: %s", command, strerror(-r));

        if (frame_error < 0) {
                /* The rest of that frame may still be on its way: start clean next time. */
                c->synced = false;
                switch (frame_error) {
                case -EMSGSIZE:
                case -E2BIG:
                case -EOVERFLOW:
                case -ERANGE:
                case -ELOOP: {
                        char why[128], what[64] = "this reply";
                        if (streq(command, "vmuser-list"))
                                snprintf(what, sizeof(what), "a list of %u users", PROTO_LIST_MAX_USERS);
                        c->dead = c->read_done = true;
                        c->dead_reason = "the agent sent a reply over the limits";
                        c->dead_error = -EMSGSIZE;
                        /* The limits the frame was read with: those of the largest reply in flight. */
                        return verr_set(e, -EMSGSIZE, "the reply to '%s' %s (the limit for %s): not parsed, and no "
                                        "further requests are sent", command,
                                        proto_limit_describe(frame_error, proto_reader_get_limits(c->reader), why,
                                                             sizeof(why)), what);
                }
                case -EPROTO:
                        return verr_set(e, -EBADMSG, "the reply to '%s' does not carry the request id", command);
                default:
                        return verr_set(e, -EBADMSG, "the reply to '%s' is not valid JSON", command);
                }
        }

        r = parse_reply(reply, command, ret_value, ret_error, e);
        if (r == -EBADMSG)
                c->synced = false;
        return r;
}

int qga_client_call(struct qga_client *c, const char *command, json_object *args, int timeout_ms,
                    json_object **ret_value, struct qga_error *ret_error, struct verr *e) {
        int64_t id;
        int r;

        r = qga_client_send(c, command, args, timeout_ms, &id, e);
        if (r < 0)
                return r;
        return qga_client_receive(c, id, ret_value, ret_error, e);
}
