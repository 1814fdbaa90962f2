/*
 * date -- HTTP dates (RFC 9110 section 5.6.7): formatting as IMF-fixdate
 * and parsing the three accepted formats. Pure; no allocation.
 */
#ifndef FERRY_HTTP_DATE_H
#define FERRY_HTTP_DATE_H

#include <stddef.h>
#include <stdint.h>

/* Formats t as an IMF-fixdate into out (at least 32 bytes); returns out. */
const char *http_date(int64_t t, char *out);
/*
 * Parses an HTTP date (IMF-fixdate, RFC 850, asctime) from s[0..n).
 * Returns seconds since the epoch, or -1 if invalid.
 */
int64_t http_date_parse(const char *s, size_t n);

#endif
