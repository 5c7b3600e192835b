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
/* Largest reply the host tool accepts. */
#define PROTO_MAX_REPLY_SIZE (16u * 1024u * 1024u)

#define PROTO_DELIMITER 0xFF

struct proto_reader;

int proto_reader_new(size_t max_frame_size, struct proto_reader **ret);
struct proto_reader *proto_reader_free(struct proto_reader *r);
void proto_reader_freep(struct proto_reader **r);
/* Drops any partial frame and the skip state: the next byte starts a fresh frame. */
void proto_reader_reset(struct proto_reader *r);
/* True when the reader holds part of a frame. */
bool proto_reader_in_frame(const struct proto_reader *r);

/* Called once per complete frame (obj set, error 0; the callback takes no reference, obj is
 * freed after it returns) or once per bad frame (obj NULL, error -EMSGSIZE, -EBADMSG or -ELOOP).
 * A negative return stops feeding and is passed up. */
typedef int (*proto_frame_handler)(json_object *obj, int error, void *userdata);

int proto_reader_feed(struct proto_reader *r, const void *buf, size_t len, proto_frame_handler handler,
                      void *userdata);

/* Formats {"return": value[, "id": id]} or {"error": {"class","desc"}[, "id"]}, followed by a
 * newline, into a malloc'ed string. value and id are borrowed. */
int proto_format_return(json_object *value, json_object *id, char **ret);
int proto_format_error(const char *error_class, const char *desc, json_object *id, char **ret);

/* Writes all of buf to fd, waiting for POLLOUT up to timeout_ms in total (fd may be
 * non-blocking). -ETIMEDOUT when the peer does not take the data in time. */
int proto_write_all(int fd, const void *buf, size_t len, int timeout_ms);
