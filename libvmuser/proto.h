/* proto.h: the QEMU-guest-agent wire format, both directions (see doc/PROTOCOL.txt).
 *
 * A stream of JSON objects, optionally separated by whitespace. The reader turns bytes into
 * complete objects, enforcing a frame size limit and a nesting limit before anything grows
 * without bound; 0xFF and ASCII control bytes (other than tab, CR, LF) reset it, which is how a
 * client resynchronizes after garbage. After a malformed or oversized frame the reader skips to
 * the next newline or reset byte, reports the error once, and goes on. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* Largest request the agent accepts, in bytes (whitespace before a frame does not count). */
#define PROTO_MAX_REQUEST_SIZE (64u * 1024u)
/* Largest reply the host tool accepts (the bytes of a vmuser-list of PROTO_LIST_MAX_USERS; see
 * qga-client.c for all of the reply limits, doc/PROTOCOL.txt for how they are derived). */
#define PROTO_MAX_REPLY_SIZE (PROTO_SMALL_REPLY_SIZE + PROTO_LIST_MAX_USERS * PROTO_LIST_ENTRY_SIZE)
/* Any reply other than vmuser-list: guest-info, vmuser-attach, vmuser-detach, errors. */
#define PROTO_SMALL_REPLY_SIZE (64u * 1024u)
/* The most users a vmuser-list reply may carry, and what one entry may take at most. */
#define PROTO_LIST_MAX_USERS 4096u
#define PROTO_LIST_ENTRY_SIZE 1536u
#define PROTO_LIST_ENTRY_VALUES 24u
#define PROTO_LIST_ENTRY_CONTAINERS 2u

#define PROTO_DELIMITER 0xFF

struct proto_reader;

/* What one frame may hold, checked byte by byte while the frame arrives, before json-c builds
 * anything (json-c's tree takes up to ~260 bytes of memory per byte of input, so bytes alone do
 * not bound memory). The counts are lexical and cheap:
 *   values      ',' + ':' + '{' + '[' outside strings, + 1: every value, and every object
 *               member's name, counts once (an empty object or array once more)
 *   containers  '{' + '[' outside strings (json-c's most expensive values)
 *   token       the longest string (with its escapes) or bare number/literal, in bytes
 * Exceeding a limit is reported as -EMSGSIZE (bytes), -E2BIG (values), -EOVERFLOW
 * (containers), -ERANGE (token) or -ELOOP (depth). */
struct proto_limits {
        size_t max_bytes;
        size_t max_values;
        size_t max_containers;
        size_t max_token;
        unsigned max_depth;
};

/* The counts of a frame (see above). */
struct proto_frame_counts {
        size_t bytes;
        size_t values;
        size_t containers;
};

/* Conservative estimate of the memory json-c 0.16 takes for a frame with these counts (measured:
 * 792 bytes per empty object, 152 per empty array, 72..104 per number or literal, 88 + length
 * per string, about 130 per object member), plus the frame buffer. */
size_t proto_frame_cost(const struct proto_frame_counts *c);

/* A reader with max_frame_size bytes, VMUSER_JSON_MAX_DEPTH and no count limits. */
int proto_reader_new(size_t max_frame_size, struct proto_reader **ret);
/* Replaces the reader's limits (max_bytes 1..INT32_MAX); they apply from the next byte on. */
int proto_reader_set_limits(struct proto_reader *r, const struct proto_limits *limits);
const struct proto_limits *proto_reader_get_limits(const struct proto_reader *r);
/* The counts of the frame being handed to the handler (valid inside the handler). */
const struct proto_frame_counts *proto_reader_frame_counts(const struct proto_reader *r);
/* Checks that text (len bytes) is exactly one frame within limits, without parsing it: 0, or the
 * reader's error for the first limit crossed (-EBADMSG when it is not one bracketed frame).
 * For JSON that arrives in one piece from elsewhere (libvirt's monitor replies). */
int proto_scan(const char *text, size_t len, const struct proto_limits *limits, struct proto_frame_counts *ret);

/* "is larger than 65536 bytes", "has more than 4096 values", ...: the limit an error of the
 * reader (see struct proto_limits) names, for messages. */
const char *proto_limit_describe(int error, const struct proto_limits *limits, char *buf, size_t size);
struct proto_reader *proto_reader_free(struct proto_reader *r);
void proto_reader_freep(struct proto_reader **r);
/* Drops any partial frame and the skip state: the next byte starts a fresh frame. */
void proto_reader_reset(struct proto_reader *r);
/* True when the reader holds part of a frame. */
bool proto_reader_in_frame(const struct proto_reader *r);

/* Called once per complete frame (obj set, error 0; the callback takes no reference, obj is
 * freed after it returns) or once per bad frame (obj NULL, error -EBADMSG or one of the limit
 * errors above).
 * A negative return stops feeding and is passed up. */
typedef int (*proto_frame_handler)(json_object *obj, int error, void *userdata);

int proto_reader_feed(struct proto_reader *r, const void *buf, size_t len, proto_frame_handler handler,
                      void *userdata);

/* Formats {"return": value[, "id": id]} or {"error": {"class","desc"}[, "id"]}, followed by a
 * newline, into a malloc'ed string. value and id are borrowed. */
int proto_format_return(json_object *value, json_object *id, char **ret);
int proto_format_error(const char *error_class, const char *desc, json_object *id, char **ret);

/* Writes all of buf to fd, waiting for POLLOUT up to timeout_ms in total (fd may be
 * non-blocking). -ETIMEDOUT when the peer does not take the data in time. On a socket it
 * sends with MSG_NOSIGNAL: a closed peer is -EPIPE, never a SIGPIPE. */
int proto_write_all(int fd, const void *buf, size_t len, int timeout_ms);
/* The same, and how many bytes went out (all of them on success, a part on failure). */
int proto_write_all_n(int fd, const void *buf, size_t len, int timeout_ms, size_t *ret_written);
