/* ssh-key.h: one OpenSSH public key line (authorized_keys or id_*.pub format), checked the way
 * sshd reads it, and its fingerprint.
 *
 * A line is [OPTIONS ]TYPE BASE64[ COMMENT]. OPTIONS is sshd's comma-separated list (quoted
 * values may hold spaces and commas; unknown option names are refused as sshd refuses them);
 * TYPE is a key type OpenSSH knows; BASE64 is strict RFC 4648 base64 (padding included, as
 * OpenSSH writes it) of a key blob whose first SSH string is TYPE again and whose fields fill the
 * blob exactly. Anything else is refused with a short reason. A private key's armour line
 * ("-----BEGIN ... PRIVATE KEY-----") has its own verdict, so a caller can say what went wrong.
 *
 * The fingerprint is what `ssh-keygen -l` prints by default: "SHA256:" + base64 of the SHA-256
 * of the blob, without padding (nettle's SHA-256; nettle is the smallest Debian library that has
 * it, and GnuTLS, which most hosts have installed, is built on it). */
#pragma once

#include <stddef.h>

/* Longest key line handled (the agent accepts up to RECORDS_MAX_SSH_KEY_LEN). */
#define SSH_KEY_LINE_MAX 16384u
/* "SHA256:" + 43 base64 characters + NUL. */
#define SSH_KEY_FINGERPRINT_MAX 51u

enum ssh_key_verdict {
        SSH_KEY_VALID = 0,
        SSH_KEY_INVALID = -1,     /* *ret_reason says why */
        SSH_KEY_PRIVATE = -2,     /* the armour line of a private key */
};

struct ssh_key {
        const char *type;         /* static: the key type name */
        unsigned char *blob;      /* decoded key blob (malloc) */
        size_t blob_len;
};

void ssh_key_done(struct ssh_key *k);

/* Parses one line (no newline; leading/trailing blanks allowed). ret may be NULL. Returns an
 * ssh_key_verdict; on SSH_KEY_INVALID *ret_reason (static text) says why; -ENOMEM on allocation
 * failure. */
int ssh_key_parse(const char *line, struct ssh_key *ret, const char **ret_reason);

/* True for a line that starts a private key's armour (PEM, OpenSSH, PuTTY). */
int ssh_key_line_is_private(const char *line);

/* "SHA256:..." of a parsed key into buf (SSH_KEY_FINGERPRINT_MAX bytes). */
void ssh_key_fingerprint(const struct ssh_key *k, char buf[static SSH_KEY_FINGERPRINT_MAX]);

/* The same, straight from a line; -EINVAL when the line is not a valid key. */
int ssh_key_line_fingerprint(const char *line, char buf[static SSH_KEY_FINGERPRINT_MAX]);
