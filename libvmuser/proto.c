/* proto.c: QGA framing (see proto.h and doc/PROTOCOL.txt).
 *
 * Bytes flow: proto_reader_feed() resets at 0xFF/control bytes, skips whitespace between
 * frames, and appends each byte to the frame buffer while tracking string state and bracket
 * depth (the size and depth limits are checked here, before anything is parsed). When the
 * outermost bracket closes, json-c parses the frame strictly and the object goes to the
 * handler; an error is reported once and the reader skips to the next newline. */
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "macro.h"

struct proto_reader {
        char *buf;          /* the current frame, up to max_frame_size bytes */
        size_t size;
        size_t capacity;
        size_t max_frame_size;
        unsigned depth;     /* open { and [ outside strings */
        bool in_string;
        bool escaped;
        bool skipping;      /* after an error: drop bytes until a newline or reset byte */
};

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
        r->max_frame_size = max_frame_size;
        *ret = r;
        return 0;
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
                if (n > r->max_frame_size)
                        n = r->max_frame_size;
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
        int k = json_parse_strict(r->buf, r->size, &obj);

        reader_clear_frame(r);
        if (k == -ENOMEM)
                return k;
        if (k < 0)
                return handler(NULL, k, userdata);
        return handler(obj, 0, userdata);
}

/* One byte that is not a reset byte. The splitter only tracks strings and bracket depth to find
 * where a frame ends; json-c judges the frame itself. */
static int reader_feed_byte(struct proto_reader *r, char c, proto_frame_handler handler, void *userdata) {
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
        }
        if (r->size >= r->max_frame_size)
                return reader_fail(r, -EMSGSIZE, true, handler, userdata);
        int k = reader_append(r, c);
        if (k < 0)
                return k;

        if (r->in_string) {
                if (r->escaped)
                        r->escaped = false;
                else if (c == '\\')
                        r->escaped = true;
                else if (c == '"')
                        r->in_string = false;
                return 0;
        }
        switch (c) {
        case '"':
                r->in_string = true;
                return 0;
        case '{':
        case '[':
                if (++r->depth > VMUSER_JSON_MAX_DEPTH)
                        return reader_fail(r, -ELOOP, true, handler, userdata);
                return 0;
        case '}':
        case ']':
                if (--r->depth == 0)
                        return reader_emit(r, handler, userdata);
                return 0;
        case '\n':
                return 0;
        default:
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

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int proto_write_all(int fd, const void *buf, size_t len, int timeout_ms) {
        const char *p = buf;
        int64_t deadline = now_ms() + timeout_ms;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n > 0) {
                        p += n;
                        len -= (size_t) n;
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
