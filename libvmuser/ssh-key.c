/* ssh-key.c: OpenSSH public key lines (see ssh-key.h).
 *
 * Flow of ssh_key_parse(): skip blanks -> private-key armour? -> is the first word a key type?
 * if not, it is sshd's option list (quotes balanced, every option name known) and the next word
 * must be the type -> strict base64 of the blob -> the blob's SSH strings: the first equals the
 * type, the rest match the type's layout and end exactly at the blob's end. Certificates are
 * checked for their type string only (their layout is long and sshd checks it anyway). */
#include "ssh-key.h"

#include <errno.h>
#include <nettle/base64.h>
#include <nettle/sha2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "macro.h"

/* A key type: its name, the number of SSH strings after the type string, and extra rules. */
struct key_type {
        const char *name;
        int fields;           /* -1: certificate, type checked only */
        const char *curve;    /* ecdsa: the curve name the second string must be */
        size_t first_len;     /* ed25519: the public key's length */
};

static const struct key_type key_types[] = {
        { "ssh-ed25519", 1, NULL, 32 },
        { "sk-ssh-ed25519@openssh.com", 2, NULL, 32 },
        { "ssh-rsa", 2, NULL, 0 },
        { "ssh-dss", 4, NULL, 0 },
        { "ecdsa-sha2-nistp256", 2, "nistp256", 0 },
        { "ecdsa-sha2-nistp384", 2, "nistp384", 0 },
        { "ecdsa-sha2-nistp521", 2, "nistp521", 0 },
        { "sk-ecdsa-sha2-nistp256@openssh.com", 3, "nistp256", 0 },
        { "ssh-ed25519-cert-v01@openssh.com", -1, NULL, 0 },
        { "sk-ssh-ed25519-cert-v01@openssh.com", -1, NULL, 0 },
        { "ssh-rsa-cert-v01@openssh.com", -1, NULL, 0 },
        { "ssh-dss-cert-v01@openssh.com", -1, NULL, 0 },
        { "ecdsa-sha2-nistp256-cert-v01@openssh.com", -1, NULL, 0 },
        { "ecdsa-sha2-nistp384-cert-v01@openssh.com", -1, NULL, 0 },
        { "ecdsa-sha2-nistp521-cert-v01@openssh.com", -1, NULL, 0 },
        { "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com", -1, NULL, 0 },
};

/* sshd's authorized_keys options (sshd(8), AUTHORIZED_KEYS FILE FORMAT); those with '=' take a value. */
static const char *const key_options[] = {
        "agent-forwarding", "cert-authority", "command=", "environment=", "expiry-time=", "from=",
        "no-agent-forwarding", "no-port-forwarding", "no-pty", "no-user-rc", "no-X11-forwarding",
        "no-touch-required", "permitlisten=", "permitopen=", "port-forwarding", "principals=", "pty",
        "restrict", "touch-required", "tunnel=", "user-rc", "verify-required", "X11-forwarding",
};

void ssh_key_done(struct ssh_key *k) {
        if (!k)
                return;
        free(k->blob);
        *k = (struct ssh_key) {};
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

static const struct key_type *key_type_find(const char *word, size_t len) {
        for (size_t i = 0; i < ELEMENTSOF(key_types); i++)
                if (strlen(key_types[i].name) == len && memcmp(key_types[i].name, word, len) == 0)
                        return &key_types[i];
        return NULL;
}

int ssh_key_line_is_private(const char *line) {
        while (is_blank(*line))
                line++;
        if (strncmp(line, "PuTTY-User-Key-File-", 20) == 0)
                return true;
        return strncmp(line, "-----BEGIN ", 11) == 0 && strstr(line, "PRIVATE KEY") != NULL;
}

/* One option name (up to '=' or the end), checked against sshd's list. */
static bool option_known(const char *opt, size_t len) {
        size_t name_len = 0;
        while (name_len < len && opt[name_len] != '=')
                name_len++;
        bool has_value = name_len < len;
        for (size_t i = 0; i < ELEMENTSOF(key_options); i++) {
                size_t l = strlen(key_options[i]);
                bool wants_value = key_options[i][l - 1] == '=';
                if (wants_value)
                        l--;
                if (l == name_len && strncasecmp(key_options[i], opt, l) == 0 && wants_value == has_value)
                        return true;
        }
        return false;
}

/* sshd's option list: ends at the first blank outside quotes; \" inside quotes is a quote. */
static int parse_options(const char *s, const char **ret_end, const char **ret_reason) {
        const char *opt = s;
        bool quoted = false;

        for (;; s++) {
                if (*s == '\\' && s[1] == '"' && quoted) {
                        s++;
                        continue;
                }
                if (*s == '"') {
                        quoted = !quoted;
                        continue;
                }
                if (quoted && !*s)
                        break;
                if (quoted)
                        continue;
                if (*s == ',' || is_blank(*s) || !*s) {
                        if (s == opt || !option_known(opt, (size_t) (s - opt))) {
                                *ret_reason = "unknown key type or unknown sshd option";
                                return SSH_KEY_INVALID;
                        }
                        if (*s != ',')
                                break;
                        opt = s + 1;
                }
        }
        if (quoted) {
                *ret_reason = "unterminated quote in the options";
                return SSH_KEY_INVALID;
        }
        *ret_end = s;
        return 0;
}

static int b64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Strict base64: whole quads, '=' only as the last one or two characters. */
static int b64_decode_strict(const char *s, size_t len, unsigned char **ret, size_t *ret_len) {
        if (len == 0 || len % 4 != 0)
                return -EINVAL;
        _cleanup_free_ unsigned char *out = malloc(len / 4 * 3);
        size_t n = 0;
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i += 4) {
                int v[4], pad = 0;
                for (int j = 0; j < 4; j++) {
                        if (s[i + j] == '=' && i + 4 == len && j >= 2) {
                                v[j] = 0;
                                pad++;
                                continue;
                        }
                        if (pad > 0)
                                return -EINVAL;
                        v[j] = b64_value(s[i + j]);
                        if (v[j] < 0)
                                return -EINVAL;
                }
                uint32_t q = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 | (uint32_t) v[2] << 6 | (uint32_t) v[3];
                out[n++] = (unsigned char) (q >> 16);
                if (pad < 2)
                        out[n++] = (unsigned char) (q >> 8);
                if (pad < 1)
                        out[n++] = (unsigned char) q;
        }
        *ret = TAKE_PTR(out);
        *ret_len = n;
        return 0;
}

/* The next SSH string (uint32 length, bytes) of a blob. */
static bool blob_string(const unsigned char *b, size_t len, size_t *pos, const unsigned char **ret, size_t *ret_len) {
        if (len - *pos < 4)
                return false;
        size_t l = (size_t) b[*pos] << 24 | (size_t) b[*pos + 1] << 16 | (size_t) b[*pos + 2] << 8 | b[*pos + 3];
        *pos += 4;
        if (len - *pos < l)
                return false;
        *ret = b + *pos;
        *ret_len = l;
        *pos += l;
        return true;
}

static const char *check_blob(const struct key_type *t, const unsigned char *b, size_t len) {
        const unsigned char *s;
        size_t pos = 0, l;

        if (!blob_string(b, len, &pos, &s, &l))
                return "the key data is truncated";
        if (l != strlen(t->name) || memcmp(s, t->name, l) != 0)
                return "the key data is of another key type than the line says";
        if (t->fields < 0)
                return NULL;
        for (int i = 0; i < t->fields; i++) {
                if (!blob_string(b, len, &pos, &s, &l))
                        return "the key data is truncated";
                if (i == 0 && t->first_len && l != t->first_len)
                        return "the key data has a public key of the wrong length";
                if (i == 0 && t->curve && (l != strlen(t->curve) || memcmp(s, t->curve, l) != 0))
                        return "the key data names another curve than its type";
        }
        if (pos != len)
                return "the key data has trailing bytes";
        return NULL;
}

int ssh_key_parse(const char *line, struct ssh_key *ret, const char **ret_reason) {
        const struct key_type *t;
        const char *p = line, *word, *reason = NULL;
        _cleanup_free_ unsigned char *blob = NULL;
        size_t len, blob_len;
        int r;

        if (!ret_reason)
                ret_reason = &reason;
        if (strnlen(line, SSH_KEY_LINE_MAX + 1) > SSH_KEY_LINE_MAX) {
                *ret_reason = "the line is too long";
                return SSH_KEY_INVALID;
        }
        if (ssh_key_line_is_private(line)) {
                *ret_reason = "this is a private key";
                return SSH_KEY_PRIVATE;
        }
        while (is_blank(*p))
                p++;
        if (!*p || *p == '#') {
                *ret_reason = "no key on the line";
                return SSH_KEY_INVALID;
        }
        word = p;
        len = strcspn(p, " \t");
        t = key_type_find(word, len);
        if (!t) {
                r = parse_options(word, &p, ret_reason);
                if (r < 0)
                        return r;
                while (is_blank(*p))
                        p++;
                word = p;
                len = strcspn(p, " \t");
                t = key_type_find(word, len);
                if (!t) {
                        *ret_reason = len == 0 ? "options without a key" : "unknown key type";
                        return SSH_KEY_INVALID;
                }
        }
        p = word + len;
        while (is_blank(*p))
                p++;
        len = strcspn(p, " \t");
        if (len == 0) {
                *ret_reason = "no key data after the key type";
                return SSH_KEY_INVALID;
        }
        r = b64_decode_strict(p, len, &blob, &blob_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                *ret_reason = "the key data is not valid base64";
                return SSH_KEY_INVALID;
        }
        reason = check_blob(t, blob, blob_len);
        if (reason) {
                *ret_reason = reason;
                return SSH_KEY_INVALID;
        }
        if (ret)
                *ret = (struct ssh_key) { .type = t->name, .blob = TAKE_PTR(blob), .blob_len = blob_len };
        return SSH_KEY_VALID;
}

void ssh_key_fingerprint(const struct ssh_key *k, char buf[static SSH_KEY_FINGERPRINT_MAX]) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        char b64[BASE64_ENCODE_RAW_LENGTH(SHA256_DIGEST_SIZE) + 1];
        struct sha256_ctx ctx;
        size_t n;

        sha256_init(&ctx);
        sha256_update(&ctx, k->blob_len, k->blob);
        sha256_digest(&ctx, sizeof(digest), digest);
        base64_encode_raw(b64, sizeof(digest), digest);
        n = BASE64_ENCODE_RAW_LENGTH(SHA256_DIGEST_SIZE);
        while (n > 0 && b64[n - 1] == '=')
                n--;
        memcpy(buf, "SHA256:", 7);
        memcpy(buf + 7, b64, n); /* n is 43 */
        buf[7 + n] = '\0';
}

int ssh_key_line_fingerprint(const char *line, char buf[static SSH_KEY_FINGERPRINT_MAX]) {
        struct ssh_key k = {};
        int r = ssh_key_parse(line, &k, NULL);
        if (r == -ENOMEM)
                return r;
        if (r != SSH_KEY_VALID)
                return -EINVAL;
        ssh_key_fingerprint(&k, buf);
        ssh_key_done(&k);
        return 0;
}
