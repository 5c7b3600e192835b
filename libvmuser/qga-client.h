/* qga-client.h: the host end of the agent protocol (doc/PROTOCOL.txt, sections 1-3).
 *
 * The guest is not trusted by the host, so everything that comes back is bounded and
 * time-limited: replies go through the shared frame reader (proto.h) with the limits of their
 * command (bytes, values, objects and arrays, token length, depth: doc/PROTOCOL.txt section 8;
 * while waiting for a sync reply nothing larger than {"return": ID} is parsed), every phase
 * (connect, sync, request) has its own deadline on the monotonic clock that arriving bytes do
 * not extend, and a reply is only accepted when it carries the id of the request it answers.
 *
 * Flow: qga_client_connect() opens the socket (non-blocking, with a timeout) ->
 * qga_client_call() syncs first when the channel state is unknown (just connected, or the last
 * call timed out or got a malformed reply): 0xFF + guest-sync-delimited with a random id, and
 * everything read is discarded until 0xFF {"return": id} comes back -> the request goes out
 * with its own "id" -> frames are read until the one with that id; stale frames are dropped ->
 * "return" is handed out, or "error" as class + desc.
 *
 * Errors (negative errno, with a sentence in the verr):
 *   -ENOENT, -ECONNREFUSED, -EACCES, ...  connecting failed (socket missing, nobody listening)
 *   -ETIMEDOUT   no sync reply, or no reply to the request, in time; the channel is re-synced
 *                before the next request (a request that timed out may or may not have run),
 *                unless part of a reply had come: then the connection is dead
 *   -EBADMSG     a reply that is not valid JSON or not a valid reply envelope
 *   -EMSGSIZE    a reply over a limit (the verr names it); not parsed, the connection is dead
 *   -ECONNRESET  the agent side closed the connection
 *   -ENOTCONN    an earlier call found the connection closed or broken, or a sync timed out:
 *                the client gives up rather than wait out the timeout again for every request
 *   -EREMOTEIO   the agent answered with an error object; it is in the struct qga_error */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>

#include "verr.h"

/* An error reply of the agent. desc is kept as sent (up to the size of the buffer). */
struct qga_error {
        char error_class[64];
        char desc[1024];
};

struct qga_client;

/* Requests in flight on one connection at most (qga_client_send). */
#define QGA_CLIENT_MAX_IN_FLIGHT 256

/* Connects to the UNIX stream socket at path, waiting at most timeout_ms for a full backlog.
 * Paths longer than sun_path are reached through /proc/self/fd. */
int qga_client_connect(const char *path, int timeout_ms, struct qga_client **ret, struct verr *e);
struct qga_client *qga_client_free(struct qga_client *c);
void qga_client_freep(struct qga_client **c);
#define _cleanup_qga_client_ __attribute__((cleanup(qga_client_freep)))

/* Re-synchronizes the channel (see above). Called by qga_client_call() when needed; exposed for
 * `vmuser status`, which wants to tell "agent not running" from "agent refused". */
int qga_client_sync(struct qga_client *c, int timeout_ms, struct verr *e);

/* Sends {"execute": command, "arguments": args, "id": N} (args may be NULL; it is borrowed)
 * and waits up to timeout_ms for its reply. On success *ret_value holds a reference to the
 * "return" value. The serialized request is erased after sending: it may carry a password
 * hash. */
int qga_client_call(struct qga_client *c, const char *command, json_object *args, int timeout_ms,
                    json_object **ret_value, struct qga_error *ret_error, struct verr *e);

/* Pipelining: the two halves of qga_client_call(), for several requests in flight on one
 * connection (at most QGA_CLIENT_MAX_IN_FLIGHT). qga_client_send() syncs first when needed (only
 * possible with nothing in flight: -EBUSY otherwise, as when the window is full), sends the
 * request and hands out its id; qga_client_receive() waits for the reply to that id until the
 * request's own deadline (send time + timeout_ms), keeping replies to the other requests in
 * flight for them, and returns what qga_client_call() would. Every request sent must be
 * received (or the client freed). When the connection breaks, each request still in flight
 * gets -ECONNRESET (closed) or -ENOTCONN with the reason. After a timeout or a malformed reply
 * the channel needs a sync (qga_client_needs_sync): receive what is in flight first. */
int qga_client_send(struct qga_client *c, const char *command, json_object *args, int timeout_ms, int64_t *ret_id,
                    struct verr *e);
int qga_client_receive(struct qga_client *c, int64_t id, json_object **ret_value, struct qga_error *ret_error,
                       struct verr *e);
size_t qga_client_in_flight(const struct qga_client *c);

/* Corking, for a batch of requests sent back to back: while corked, qga_client_send() queues
 * each request and writes the queue in one write(2) once QGA_CLIENT_CORK_REQUESTS requests or
 * QGA_CLIENT_CORK_BYTES are queued; qga_client_receive() (and so qga_client_call()) writes the
 * queue before it waits, and so does uncorking. A virtio-serial peer then gets several requests
 * per read instead of one. A failed write of the queue fails each request in it, reported by
 * its qga_client_receive(). The queue is wiped once written (it may hold password hashes). */
#define QGA_CLIENT_CORK_REQUESTS 16
#define QGA_CLIENT_CORK_BYTES (16u * 1024u)
void qga_client_cork(struct qga_client *c, bool cork);
bool qga_client_needs_sync(const struct qga_client *c);
