/* varlink.h: a small varlink server on sd-event and json-c (libsystemd 252 exports no varlink API).
 *
 * Wire format (https://varlink.org): each message is one JSON object ended by a NUL byte. A call
 * is {"method": "iface.Method", "parameters": {...}, "more": bool, "oneway": bool}; a reply is
 * {"parameters": {...}[, "continues": true]} or {"error": "iface.Error", "parameters": {...}}.
 *
 * Flow: a listening socket (bound here, or handed over by socket activation) -> accept, subject
 * to a total and a per-UID connection limit -> bytes into a per-connection buffer no larger than
 * one message -> at each NUL: proto_scan() bounds values/containers/depth before json-c parses
 * -> the method table -> the method answers at once through varlink_call_reply*() -> the replies
 * are queued and written as the socket takes them; no further call of that connection is read
 * until its replies are out (so a client that does not read holds one answer, not many).
 * A message that breaks the framing or the limits ends the connection; a call the server cannot
 * serve (unknown method, bad parameters) gets an error reply and the connection goes on. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

/* Largest message read from a client, NUL included: a userdb call is well under 1 KiB. */
#define VARLINK_MAX_MESSAGE (16u * 1024u)
#define VARLINK_MAX_DEPTH 8u
#define VARLINK_MAX_VALUES 256u
#define VARLINK_MAX_CONTAINERS 32u
/* Connections open at once, in total and per peer UID (root is limited like everyone else). */
#define VARLINK_MAX_CONNECTIONS 256u
#define VARLINK_MAX_CONNECTIONS_PER_UID 32u
/* A connection with no complete message for this long is closed. */
#define VARLINK_IDLE_TIMEOUT_USEC (30u * 1000000u)

struct varlink_server;
struct varlink_call;

/* A method answers the call before it returns: with one or more varlink_call_reply*() (all but
 * the last with continues set, which needs varlink_call_more()) or one varlink_call_error().
 * A negative return without an answer is sent as org.varlink.service.InternalError (logged by
 * nobody: the method knows what went wrong and says so in the error reply instead). */
struct varlink_method {
        const char *name;
        int (*handler)(struct varlink_call *call, json_object *parameters, void *userdata);
};

int varlink_server_new(sd_event *event, const struct varlink_method *methods, size_t n_methods, void *userdata,
                       struct varlink_server **ret);
/* Binds path (a stale socket there is replaced), mode 0666, and listens. */
int varlink_server_listen(struct varlink_server *s, const char *path);
/* Serves an already listening socket (socket activation); the server takes the fd. */
int varlink_server_listen_fd(struct varlink_server *s, int fd);
/* Closes every connection, the listening socket, and removes the socket file it bound. */
struct varlink_server *varlink_server_free(struct varlink_server *s);
void varlink_server_freep(struct varlink_server **s);
unsigned varlink_server_connections(const struct varlink_server *s);

/* The caller asked for "more": the method may send several replies. */
bool varlink_call_more(const struct varlink_call *call);
/* The peer's UID from SO_PEERCRED at accept time. */
uid_t varlink_call_peer_uid(const struct varlink_call *call);
/* Queues {"parameters": PARAMETERS_JSON[, "continues": true]}; parameters_json is a complete
 * JSON object text (copied), so callers can answer from preformatted records. */
int varlink_call_reply_text(struct varlink_call *call, const char *parameters_json, bool continues);
/* Queues {"error": error[, "parameters": parameters]} (parameters borrowed, may be NULL). */
int varlink_call_error(struct varlink_call *call, const char *error, json_object *parameters);
/* org.varlink.service.InvalidParameter {"parameter": name}. */
int varlink_call_invalid_parameter(struct varlink_call *call, const char *name);
