/* audit-log.c: structured journal entries for the audit trail (see audit-log.h).
 *
 * Every entry has MESSAGE, MESSAGE_ID, PRIORITY and SYSLOG_IDENTIFIER, then the caller's fields
 * in order. Values are single-line (control characters become '?'), so the native protocol
 * carries them as plain KEY=value lines and journalctl shows them as written. */
#include "audit-log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

static void sanitize(char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        *s = '?';
}

/* vasprintf() that leaves NULL on failure (its buffer is undefined then). */
static char *vformat(const char *format, va_list ap) _printf_(1, 0);
static char *vformat(const char *format, va_list ap) {
        char *s;
        return vasprintf(&s, format, ap) < 0 ? NULL : s;
}

static char *format_str(const char *format, ...) _printf_(1, 2);
static char *format_str(const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        char *s = vformat(format, ap);
        va_end(ap);
        return s;
}

char *audit_field(const char *key, const char *format, ...) {
        _cleanup_free_ char *value = NULL;
        va_list ap;

        va_start(ap, format);
        value = vformat(format, ap);
        va_end(ap);
        if (!value)
                return NULL;
        sanitize(value);
        return format_str("%s=%s", key, value);
}

int audit_log(const char *identifier, const char *message_id, int priority, const char *const *fields,
              const char *format, ...) {
        _cleanup_free_ char *message = NULL, *text = NULL, *ident = NULL;
        char id[64], prio[32];
        struct iovec iov[AUDIT_FIELDS_MAX];
        size_t n = 0;
        struct stat st;
        va_list ap;

        /* sd_journal_sendv() reports success when the socket is missing: ask first, so a caller
         * can fall back to syslog. */
        if (stat(AUDIT_JOURNAL_SOCKET, &st) < 0 || !S_ISSOCK(st.st_mode))
                return -ENOENT;
        va_start(ap, format);
        text = vformat(format, ap);
        va_end(ap);
        if (!text)
                return -ENOMEM;
        sanitize(text);
        message = format_str("MESSAGE=%s", text);
        ident = format_str("SYSLOG_IDENTIFIER=%s", identifier);
        if (!message || !ident)
                return -ENOMEM;
        snprintf(id, sizeof(id), "MESSAGE_ID=%s", message_id);
        snprintf(prio, sizeof(prio), "PRIORITY=%d", priority);
        iov[n++] = (struct iovec) { message, strlen(message) };
        iov[n++] = (struct iovec) { id, strlen(id) };
        iov[n++] = (struct iovec) { prio, strlen(prio) };
        iov[n++] = (struct iovec) { ident, strlen(ident) };
        for (const char *const *f = fields; f && *f && n < AUDIT_FIELDS_MAX; f++)
                iov[n++] = (struct iovec) { (void *) *f, strlen(*f) };
        return sd_journal_sendv(iov, (int) n);
}
