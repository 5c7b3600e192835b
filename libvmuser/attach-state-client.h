/* attach-state-client.h: asking vmuser-agent for a user's attach state over varlink
 * (io.vmuser.GetAttachState on the agent's userdb socket, doc/PROTOCOL.txt section 9).
 *
 * With --userdb=varlink the agent keeps no users/NAME.json: pam_vmuser asks it instead. One
 * connection per question: connect (deadline), the server must be root (SO_PEERCRED), one call,
 * one reply of at most ATTACH_STATE_REPLY_MAX bytes, scanned for its bounds before it is parsed,
 * read by the deadline (socket activation may be starting the agent meanwhile). */
#pragma once

#include "attach-state.h"
#include "verr.h"

#define ATTACH_STATE_REPLY_MAX (64u * 1024u)
/* How long a question may take, connect and agent start-up included. */
#define ATTACH_STATE_TIMEOUT_MSEC 10000

/* The state of user from the agent behind socket_path into *ret ("detaching" as the agent says).
 * -ENOENT when the user is not attached (io.vmuser.NoSuchUser) or nothing listens there (no
 * socket file, or a refused connection); any other failure -errno with the reason in e. */
int attach_state_query(const char *socket_path, const char *user, int timeout_msec, struct attach_state *ret,
                       struct verr *e);

/* users/NAME.json below state_dir_fd when it exists (--userdb=dropin, or an older agent), else
 * the agent behind socket_path. Returns as attach_state_read() and attach_state_query(); the
 * reason of a failure of the latter in e. */
int attach_state_lookup(int state_dir_fd, const char *socket_path, const char *user, struct attach_state *ret,
                        struct verr *e);
