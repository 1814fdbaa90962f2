/*
 * date -- HTTP dates (RFC 9110 section 5.6.7). The parser is hand-written
 * and locale-free: recipients must accept IMF-fixdate, the obsolete RFC 850
 * form and asctime, and nothing looser.
 */
#include "http/date.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const day_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const long_days[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                        "Thursday", "Friday", "Saturday"};
static const char *const mon_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

const char *http_date(int64_t t, char *out)
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    int year = tm.tm_year + 1900;
    if (year < 0 || year > 9999)
        year = year < 0 ? 0 : 9999;
    snprintf(out, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", day_names[tm.tm_wday % 7],
             tm.tm_mday % 100, mon_names[tm.tm_mon % 12], year, tm.tm_hour % 100,
             tm.tm_min % 100, tm.tm_sec % 100);
    return out;
}

/* Reads exactly n digits at *p. */
static int digits(const char **p, const char *end, int n, int *out)
{
    int v = 0;
    if (end - *p < n)
        return -1;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int lit(const char **p, const char *end, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(end - *p) < n || memcmp(*p, s, n) != 0)
        return -1;
    *p += n;
    return 0;
}

static int month(const char **p, const char *end, int *mon)
{
    for (int i = 0; i < 12; i++) {
        if (lit(p, end, mon_names[i]) == 0) {
            *mon = i;
            return 0;
        }
    }
    return -1;
}

static int hms(const char **p, const char *end, struct tm *tm)
{
    if (digits(p, end, 2, &tm->tm_hour) < 0 || lit(p, end, ":") < 0 ||
        digits(p, end, 2, &tm->tm_min) < 0 || lit(p, end, ":") < 0 ||
        digits(p, end, 2, &tm->tm_sec) < 0)
        return -1;
    return tm->tm_hour > 23 || tm->tm_min > 59 || tm->tm_sec > 60 ? -1 : 0;
}

static int64_t finish(const struct tm *in)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    struct tm tm = *in;
    if (tm.tm_mday < 1 || tm.tm_mday > mdays[tm.tm_mon])
        return -1;
    return (int64_t)timegm(&tm);
}

int64_t http_date_parse(const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    struct tm tm;
    int v;

    memset(&tm, 0, sizeof(tm));
    /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
    for (int d = 0; d < 7; d++) {
        p = s;
        if (lit(&p, end, day_names[d]) == 0 && lit(&p, end, ", ") == 0) {
            if (digits(&p, end, 2, &tm.tm_mday) < 0 || lit(&p, end, " ") < 0 ||
                month(&p, end, &tm.tm_mon) < 0 || lit(&p, end, " ") < 0 ||
                digits(&p, end, 4, &v) < 0 || lit(&p, end, " ") < 0 || hms(&p, end, &tm) < 0 ||
                lit(&p, end, " GMT") < 0 || p != end)
                return -1;
            tm.tm_year = v - 1900;
            return finish(&tm);
        }
    }
    /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT (two-digit years: RFC 9110
     * says to read them as the most recent past year with those digits;
     * for cache dates the 1970-2069 window is that rule in practice). */
    for (int d = 0; d < 7; d++) {
        p = s;
        if (lit(&p, end, long_days[d]) == 0 && lit(&p, end, ", ") == 0) {
            if (digits(&p, end, 2, &tm.tm_mday) < 0 || lit(&p, end, "-") < 0 ||
                month(&p, end, &tm.tm_mon) < 0 || lit(&p, end, "-") < 0 ||
                digits(&p, end, 2, &v) < 0 || lit(&p, end, " ") < 0 || hms(&p, end, &tm) < 0 ||
                lit(&p, end, " GMT") < 0 || p != end)
                return -1;
            tm.tm_year = v < 70 ? v + 100 : v;
            return finish(&tm);
        }
    }
    /* asctime: Sun Nov  6 08:49:37 1994 */
    for (int d = 0; d < 7; d++) {
        p = s;
        if (lit(&p, end, day_names[d]) == 0 && lit(&p, end, " ") == 0) {
            if (month(&p, end, &tm.tm_mon) < 0 || lit(&p, end, " ") < 0)
                return -1;
            if (p < end && *p == ' ') {
                p++;
                if (digits(&p, end, 1, &tm.tm_mday) < 0)
                    return -1;
            } else if (digits(&p, end, 2, &tm.tm_mday) < 0) {
                return -1;
            }
            if (lit(&p, end, " ") < 0 || hms(&p, end, &tm) < 0 || lit(&p, end, " ") < 0 ||
                digits(&p, end, 4, &v) < 0 || p != end)
                return -1;
            tm.tm_year = v - 1900;
            return finish(&tm);
        }
    }
    return -1;
}
