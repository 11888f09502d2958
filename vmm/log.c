// SPDX-License-Identifier: MIT
/*
 * log.c - the VMM's two message channels.
 *
 * Why its own file: every vmm/ file reports through these, and the CLI
 * and tests want one place that decides the prefix and the stream.  A
 * message is formatted into one buffer and written with one write(2), so
 * lines from concurrent vCPU threads never interleave mid-line and no
 * stdio lock is held across threads.  Errors always go to stderr; info is
 * for progress notes the user may want (trap path chosen, probe results).
 * Nothing here allocates, so it is usable from any thread at any time
 * except signal handlers (vsnprintf is not async-signal-safe).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm.h"

static void log_emit(const char *prefix, const char *fmt, va_list ap)
{
	char buf[1024];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", prefix);

	vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	n = strlen(buf);
	if (n == 0 || buf[n - 1] != '\n') {
		buf[n++] = '\n';
		buf[n] = '\0';
	}
	if (write(STDERR_FILENO, buf, n) < 0)
		return;
}

void vmm_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit("vmpoke: error: ", fmt, ap);
	va_end(ap);
}

void vmm_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit("vmpoke: ", fmt, ap);
	va_end(ap);
}

/*
 * Guest text (console lines, check labels) reaches the user's terminal:
 * a hostile guest must not drive it with escape sequences.  Every byte
 * that is not printable ASCII, newline or tab becomes '?'.
 */
void vmm_sanitize_text(char *s, size_t len)
{
	for (size_t i = 0; i < len && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\n' && c != '\t') || c >= 0x7f)
			s[i] = '?';
	}
}
