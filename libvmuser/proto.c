/* proto.c: QGA framing (see proto.h and doc/PROTOCOL.txt).
 *
 * Bytes flow: proto_reader_feed() resets at 0xFF/control bytes, skips whitespace between
 * frames, and appends each byte to the frame buffer while tracking string state, bracket depth
 * and the counts of struct proto_limits (every limit is checked here, byte by byte, before
 * anything is parsed: a frame over a limit never reaches json-c). When the outermost bracket
 * closes, json-c parses the frame strictly and the object goes to the handler; an error is
 * reported once and the reader skips to the next newline. */
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "macro.h"
#include "time-util.h"

struct proto_reader {
        char *buf;          /* the current frame, up to limits.max_bytes bytes */
        size_t size;
        size_t capacity;
        struct proto_limits limits;
        unsigned depth;     /* open { and [ outside strings */
        size_t values;      /* counts of the current frame (see proto.h) */
        size_t containers;
        size_t token;       /* bytes of the string or bare token being read */
        struct proto_frame_counts emitted; /* of the frame in the handler */
        bool in_string;
        bool escaped;
        bool skipping;      /* after an error: drop bytes until a newline or reset byte */
        bool scan_only;     /* proto_scan(): count, do not parse */
};

size_t proto_frame_cost(const struct proto_frame_counts *c) {
        /* Buffer + string copies (2 per byte), an object per container, a member per value. */
        return 2 * c->bytes + 800 * c->containers + 136 * c->values;
}

static bool byte_is_reset(unsigned char c) {
        return c == PROTO_DELIMITER || (c < 0x20 && c != '\t' && c != '\n' && c != '\r');
}

static bool byte_is_space(unsigned char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int proto_reader_new(size_t max_frame_size, struct proto_reader **ret) {
        struct proto_reader *r;

        if (max_frame_size == 0 || max_frame_size > INT32_MAX)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->limits = (struct proto_limits) {
                .max_bytes = max_frame_size,
                .max_values = SIZE_MAX,
                .max_containers = SIZE_MAX,
                .max_token = SIZE_MAX,
                .max_depth = VMUSER_JSON_MAX_DEPTH,
        };
        *ret = r;
        return 0;
}

int proto_reader_set_limits(struct proto_reader *r, const struct proto_limits *limits) {
        if (limits->max_bytes == 0 || limits->max_bytes > INT32_MAX || limits->max_depth == 0 ||
            limits->max_depth > VMUSER_JSON_MAX_DEPTH)
                return -EINVAL;
        r->limits = *limits;
        return 0;
}

const struct proto_limits *proto_reader_get_limits(const struct proto_reader *r) {
        return &r->limits;
}

const struct proto_frame_counts *proto_reader_frame_counts(const struct proto_reader *r) {
        return &r->emitted;
}

const char *proto_limit_describe(int error, const struct proto_limits *l, char *buf, size_t size) {
        switch (error) {
        case -EMSGSIZE:
                snprintf(buf, size, "is larger than %zu bytes", l->max_bytes);
                break;
        case -E2BIG:
                snprintf(buf, size, "has more than %zu values", l->max_values);
                break;
        case -EOVERFLOW:
                snprintf(buf, size, "has more than %zu objects and arrays", l->max_containers);
                break;
        case -ERANGE:
                snprintf(buf, size, "has a string or number longer than %zu bytes", l->max_token);
                break;
        case -ELOOP:
                snprintf(buf, size, "nests deeper than %u levels", l->max_depth);
                break;
        default:
                snprintf(buf, size, "is not valid JSON");
                break;
        }
        return buf;
}

struct proto_reader *proto_reader_free(struct proto_reader *r) {
        if (!r)
                return NULL;
        if (r->buf)
                explicit_bzero(r->buf, r->capacity);
        free(r->buf);
        free(r);
        return NULL;
}

void proto_reader_freep(struct proto_reader **r) {
        proto_reader_free(*r);
}

static void reader_clear_frame(struct proto_reader *r) {
        r->size = 0;
        r->depth = 0;
        r->values = r->containers = r->token = 0;
        r->in_string = r->escaped = false;
}

void proto_reader_reset(struct proto_reader *r) {
        reader_clear_frame(r);
        r->skipping = false;
}

bool proto_reader_in_frame(const struct proto_reader *r) {
        return r->size > 0;
}

static int reader_fail(struct proto_reader *r, int error, bool skip, proto_frame_handler handler, void *userdata) {
        reader_clear_frame(r);
        r->skipping = skip;
        return handler(NULL, error, userdata);
}

static int reader_append(struct proto_reader *r, char c) {
        if (r->size == r->capacity) {
                size_t n = r->capacity ? r->capacity * 2 : 4096;
                if (n > r->limits.max_bytes)
                        n = r->limits.max_bytes;
                char *b = realloc(r->buf, n);
                if (!b)
                        return -ENOMEM;
                r->buf = b;
                r->capacity = n;
        }
        r->buf[r->size++] = c;
        return 0;
}

/* A complete frame: parse it strictly and hand it over. */
static int reader_emit(struct proto_reader *r, proto_frame_handler handler, void *userdata) {
        _cleanup_json_ json_object *obj = NULL;
        int k = r->scan_only ? 0 : json_parse_strict(r->buf, r->size, &obj);

        r->emitted = (struct proto_frame_counts) { .bytes = r->size, .values = r->values, .containers = r->containers };
        reader_clear_frame(r);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return handler(NULL, k, userdata);
        return handler(obj, 0, userdata);
}

/* One byte that is not a reset byte. The splitter only tracks strings, bracket depth and the
 * counts to find where a frame ends and whether it stays within the limits; json-c judges the
 * frame itself. */
static int reader_feed_byte(struct proto_reader *r, char c, proto_frame_handler handler, void *userdata) {
        const struct proto_limits *l = &r->limits;

        if (r->skipping) {
                if (c == '\n')
                        r->skipping = false;
                return 0;
        }
        if (r->size == 0) {
                if (byte_is_space((unsigned char) c))
                        return 0;
                if (c != '{' && c != '[')
                        return reader_fail(r, -EBADMSG, c != '\n', handler, userdata);
                r->values = 1;
        }
        if (r->size >= l->max_bytes)
                return reader_fail(r, -EMSGSIZE, true, handler, userdata);
        int k = reader_append(r, c);
        if (k < 0)
                return k;

        if (r->in_string) {
                if (++r->token > l->max_token)
                        return reader_fail(r, -ERANGE, true, handler, userdata);
                if (r->escaped)
                        r->escaped = false;
                else if (c == '\\')
                        r->escaped = true;
                else if (c == '"') {
                        r->in_string = false;
                        r->token = 0;
                }
                return 0;
        }
        switch (c) {
        case '"':
                r->in_string = true;
                r->token = 1;
                return 0;
        case '{':
        case '[':
                r->token = 0;
                if (++r->containers > l->max_containers)
                        return reader_fail(r, -EOVERFLOW, true, handler, userdata);
                if (++r->values > l->max_values)
                        return reader_fail(r, -E2BIG, true, handler, userdata);
                if (++r->depth > l->max_depth)
                        return reader_fail(r, -ELOOP, true, handler, userdata);
                return 0;
        case '}':
        case ']':
                r->token = 0;
                if (--r->depth == 0)
                        return reader_emit(r, handler, userdata);
                return 0;
        case ',':
        case ':':
                r->token = 0;
                if (++r->values > l->max_values)
                        return reader_fail(r, -E2BIG, true, handler, userdata);
                return 0;
        case ' ':
        case '\t':
        case '\r':
        case '\n':
                r->token = 0;
                return 0;
        default:
                /* A number or literal: json-c collects it in a buffer of its own. */
                if (++r->token > l->max_token)
                        return reader_fail(r, -ERANGE, true, handler, userdata);
                return 0;
        }
}

int proto_reader_feed(struct proto_reader *r, const void *buf, size_t len, proto_frame_handler handler,
                      void *userdata) {
        const unsigned char *p = buf;

        for (size_t i = 0; i < len; i++) {
                int k;
                if (byte_is_reset(p[i])) {
                        proto_reader_reset(r);
                        continue;
                }
                k = reader_feed_byte(r, (char) p[i], handler, userdata);
                if (k < 0)
                        return k;
        }
        return 0;
}

struct scan_state {
        int error;
        unsigned frames;
};

static int on_scanned(json_object *obj, int error, void *userdata) {
        struct scan_state *st = userdata;
        (void) obj;
        if (error < 0 && st->error == 0)
                st->error = error;
        st->frames++;
        return 0;
}

int proto_scan(const char *text, size_t len, const struct proto_limits *limits, struct proto_frame_counts *ret) {
        _cleanup_(proto_reader_freep) struct proto_reader *r = NULL;
        struct scan_state st = {};
        int k;

        k = proto_reader_new(limits->max_bytes, &r);
        if (k < 0)
                return k;
        k = proto_reader_set_limits(r, limits);
        if (k < 0)
                return k;
        r->scan_only = true;
        /* A reset byte inside would make two frames of one text: not ours to accept. */
        for (size_t i = 0; i < len; i++)
                if (byte_is_reset((unsigned char) text[i]))
                        return -EBADMSG;
        k = proto_reader_feed(r, text, len, on_scanned, &st);
        if (k < 0)
                return k;
        if (st.error < 0)
                return st.error;
        if (st.frames != 1 || proto_reader_in_frame(r))
                return -EBADMSG;
        if (ret)
                *ret = r->emitted;
        return 0;
}

static int format_with_id(json_object *reply, json_object *id, char **ret) {
        const char *s;
        char *out;
        size_t n;

        if (id && json_object_object_add(reply, "id", json_object_get(id)) < 0)
                return -ENOMEM;
        s = json_to_compact(reply);
        if (!s)
                return -ENOMEM;
        n = strlen(s);
        out = malloc(n + 2);
        if (!out)
                return -ENOMEM;
        memcpy(out, s, n);
        out[n] = '\n';
        out[n + 1] = '\0';
        *ret = out;
        return 0;
}

int proto_format_return(json_object *value, json_object *id, char **ret) {
        _cleanup_json_ json_object *reply = json_object_new_object();

        if (!reply)
                return -ENOMEM;
        if (json_object_object_add(reply, "return", value ? json_object_get(value) : json_object_new_object()) < 0)
                return -ENOMEM;
        return format_with_id(reply, id, ret);
}

int proto_format_error(const char *error_class, const char *desc, json_object *id, char **ret) {
        _cleanup_json_ json_object *reply = json_object_new_object();
        json_object *error = json_object_new_object();

        if (!reply || !error) {
                json_object_put(error);
                return -ENOMEM;
        }
        json_object_object_add(reply, "error", error);
        if (json_object_object_add(error, "class", json_object_new_string(error_class)) < 0 ||
            json_object_object_add(error, "desc", json_object_new_string(desc)) < 0)
                return -ENOMEM;
        return format_with_id(reply, id, ret);
}

int proto_write_all(int fd, const void *buf, size_t len, int timeout_ms) {
        return proto_write_all_n(fd, buf, len, timeout_ms, NULL);
}

int proto_write_all_n(int fd, const void *buf, size_t len, int timeout_ms, size_t *ret_written) {
        const char *p = buf;
        int64_t deadline = now_ms() + timeout_ms;
        bool socket = true;

        if (ret_written)
                *ret_written = 0;

        while (len > 0) {
                /* On a socket, a peer gone is -EPIPE and no SIGPIPE (pam_vmuser runs inside sshd
                 * and login, whose handlers are theirs); a virtio-serial port is not a socket. */
                ssize_t n = socket ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
                if (n < 0 && errno == ENOTSOCK) {
                        socket = false;
                        continue;
                }
                if (n > 0) {
                        p += n;
                        len -= (size_t) n;
                        if (ret_written)
                                *ret_written += (size_t) n;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return negative_errno();

                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                if (poll(&pfd, 1, (int) left) < 0 && errno != EINTR)
                        return negative_errno();
        }
        return 0;
}
