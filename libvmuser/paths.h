/* paths.h: where vmuser keeps its state in the guest (see doc/PROTOCOL.txt, section 5).
 *
 * Code opens these directories once and works relative to the directory fds, so tests and the
 * fuzzer can point a whole component at a scratch tree. */
#pragma once

#define VMUSER_USERDB_DIR "/run/userdb"
#define VMUSER_STATE_DIR "/run/vmuser"
#define VMUSER_USERS_SUBDIR "users"
#define VMUSER_PENDING_SUBDIR "pending"
#define VMUSER_SESSIONS_SUBDIR "sessions"
#define VMUSER_LOCK_FILE "lock"

#define VMUSER_AGENT_PORT "/dev/virtio-ports/org.vmuser.agent.0"
#define VMUSER_DEFAULT_HOME_ROOT "/run/vmhost/home"

/* Largest state file or record vmuser reads back. */
#define VMUSER_STATE_FILE_MAX (256u * 1024u)

/* --userdb=varlink (doc/PROTOCOL.txt section 9): the records go to one file in the state
 * directory (record-store.h), and the agent answers io.systemd.UserDatabase on this socket, whose
 * file name is the "service" every served record carries. */
#define VMUSER_VARLINK_SOCKET "/run/systemd/userdb/io.vmuser"
