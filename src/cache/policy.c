/*
 * policy -- the caching rules of a shared HTTP cache as pure functions
 * over parsed message heads.
 *
 * Data flow. When a response arrives from an origin the cache role calls
 * cache_meta_from_response, which reads everything caching depends on
 * (status, Date, Age, Expires, Last-Modified, ETag, Vary, Set-Cookie,
 * Cache-Control and the targeted CDN-Cache-Control) into a struct
 * cache_meta. cache_storable then says whether the response may be stored,
 * cache_lifetime how long it stays fresh, and cache_vary_key builds the
 * secondary key. On a later request cache_vary_key_from selects the
 * variant, cache_serve decides between serving, revalidating and serving
 * stale while revalidating, cache_stale_if_error_ok covers origin failures,
 * and cache_not_modified and cache_range shape the answer to the client.
 *
 * Specifications implemented:
 *   - RFC 9111 (HTTP Caching) as a shared cache: 3 and 3.5 (storing,
 *     Authorization), 4.1 (Vary), 4.2.1-4.2.4 (freshness lifetime,
 *     heuristics, age, serving stale), 4.3.2 (validation requests from
 *     clients), 5.1 (Age), 5.2 (Cache-Control directives).
 *   - RFC 9213 (Targeted HTTP Cache Control): a valid targeted field
 *     replaces Cache-Control and Expires for this cache.
 *   - RFC 5861 (stale-while-revalidate, stale-if-error).
 *   - RFC 9110: 5.6 (lists, tokens, quoted strings), 7.6.1 (hop-by-hop
 *     fields), 8.8.3 (entity-tags and weak comparison), 13.1.2-13.1.3 and
 *     13.2.2 (If-None-Match, If-Modified-Since and their precedence), 14
 *     (Range requests).
 *
 * Ferry policy beyond the RFCs, chosen to keep a shared cache from leaking
 * or wasting entries: only GET responses are stored; 206 and 304 are never
 * stored as entries (no partial-content storage yet; a 304 only refreshes
 * an entry); a response that sets a cookie is stored only when it says
 * public or s-maxage; a heuristically cacheable response with neither a
 * freshness lifetime nor a validator is not stored, since every later
 * request would have to fetch it whole anyway.
 *
 * Everything here is pure: no globals, no clocks (callers pass times), and
 * no allocation except the buf appends of the Vary key builders. All input
 * comes from the network, so every parser here is total: malformed input
 * degrades to "absent", "stale" or "ignore", never to an assert.
 */
#include "cache/policy.h"

#include <string.h>

#include "http/date.h"

/* RFC 9111 1.2.2: delta-seconds that overflow are sent as 2^31. */
#define CC_DELTA_CAP INT64_C(2147483648)

/* ---------------------------------------------------------------------
 * Small character and arithmetic helpers.
 */

static int ascii_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int is_ows(int c)
{
    return c == ' ' || c == '\t';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* tchar of RFC 9110 5.6.2. */
static int is_tchar(int c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* ASCII case-insensitive comparison of s[0..n) with a NUL-terminated lit. */
static int ieq(const char *s, size_t n, const char *lit)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (lit[i] == '\0' || ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)lit[i]))
            return 0;
    }
    return lit[n] == '\0';
}

/* ASCII case-insensitive comparison of two counted strings. */
static int ieq2(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return 0;
    for (size_t i = 0; i < an; i++) {
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return 0;
    }
    return 1;
}

/* Saturating arithmetic: times and ages come partly from peers, and a
 * wrapped sum would turn a huge age into a negative (= fresh) one. */
static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    if (b < 0 && a > INT64_MAX + b)
        return INT64_MAX;
    if (b > 0 && a < INT64_MIN + b)
        return INT64_MIN;
    return a - b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/*
 * Parses delta-seconds (RFC 9111 1.2.2) from s[0..n). When quoted, s is
 * the inside of a quoted-string and quoted-pairs are unescaped first
 * (RFC 9111 5.2 asks recipients to accept the quoted form). Returns the
 * value capped at 2^31, or -1 unless the text is one or more digits.
 */
static int64_t parse_delta(const char *s, size_t n, int quoted)
{
    int64_t v = 0;
    size_t digits = 0;

    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];

        if (quoted && c == '\\' && i + 1 < n)
            c = (unsigned char)s[++i];
        if (!is_digit(c))
            return -1;
        /* Keep accumulating past the cap only to validate the digits. */
        if (v < CC_DELTA_CAP)
            v = v * 10 + (c - '0');
        digits++;
    }
    if (digits == 0)
        return -1;
    return v > CC_DELTA_CAP ? CC_DELTA_CAP : v;
}

/* Moves *pp to the next comma that is not inside a quoted string. */
static void skip_element(const char **pp, const char *end)
{
    const char *p = *pp;
    int in_q = 0;

    while (p < end) {
        if (in_q) {
            if (*p == '\\' && p + 1 < end)
                p++;
            else if (*p == '"')
                in_q = 0;
        } else if (*p == '"') {
            in_q = 1;
        } else if (*p == ',') {
            break;
        }
        p++;
    }
    *pp = p;
}

/*
 * Iterates the plain-token members of a comma-separated list (RFC 9110
 * 5.6.1): skips empty members and OWS. Returns 1 with the member in
 * [*ms, *ms + *mn), or 0 at the end. Used for lists whose members cannot
 * contain commas (field names, connection options).
 */
static int next_member(const char **pp, const char *end, const char **ms, size_t *mn)
{
    const char *p = *pp, *s, *e;

    while (p < end && (is_ows((unsigned char)*p) || *p == ','))
        p++;
    if (p == end) {
        *pp = p;
        return 0;
    }
    s = p;
    while (p < end && *p != ',')
        p++;
    e = p;
    while (e > s && is_ows((unsigned char)e[-1]))
        e--;
    *pp = p;
    *ms = s;
    *mn = (size_t)(e - s);
    return 1;
}

/* ---------------------------------------------------------------------
 * Cache-Control (RFC 9111 5.2) and targeted fields (RFC 9213).
 */

void cc_init(struct cc *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = -1;
    cc->s_maxage = -1;
    cc->max_stale = -1;
    cc->min_fresh = -1;
    cc->stale_while_revalidate = -1;
    cc->stale_if_error = -1;
}

/* The directives that take delta-seconds, and where their values go. */
enum cc_delta { CD_MAX_AGE, CD_S_MAXAGE, CD_MAX_STALE, CD_MIN_FRESH, CD_SWR, CD_SIE, CD_NONE };

static enum cc_delta delta_kind(const char *name, size_t n)
{
    if (ieq(name, n, "max-age"))
        return CD_MAX_AGE;
    if (ieq(name, n, "s-maxage"))
        return CD_S_MAXAGE;
    if (ieq(name, n, "max-stale"))
        return CD_MAX_STALE;
    if (ieq(name, n, "min-fresh"))
        return CD_MIN_FRESH;
    if (ieq(name, n, "stale-while-revalidate"))
        return CD_SWR;
    if (ieq(name, n, "stale-if-error"))
        return CD_SIE;
    return CD_NONE;
}

static int64_t *delta_slot(struct cc *cc, enum cc_delta k)
{
    switch (k) {
    case CD_MAX_AGE:
        return &cc->max_age;
    case CD_S_MAXAGE:
        return &cc->s_maxage;
    case CD_MAX_STALE:
        return &cc->max_stale;
    case CD_MIN_FRESH:
        return &cc->min_fresh;
    case CD_SWR:
        return &cc->stale_while_revalidate;
    case CD_SIE:
        return &cc->stale_if_error;
    case CD_NONE:
        break;
    }
    return NULL;
}

/*
 * Records one directive. bad tells that the element around it was
 * malformed (unterminated quote, empty or trailing junk after the value).
 */
static void cc_apply(struct cc *cc, const char *name, size_t nlen, int has_arg, const char *arg,
                     size_t alen, int quoted, int bad)
{
    enum cc_delta k = delta_kind(name, nlen);

    if (k != CD_NONE) {
        int64_t *slot = delta_slot(cc, k);
        int64_t v;

        if (k == CD_MAX_STALE && !has_arg && !bad)
            v = INT64_MAX; /* bare max-stale: any staleness (5.2.1.2) */
        else
            v = (has_arg && !bad) ? parse_delta(arg, alen, quoted) : -1;
        if (v < 0) {
            cc->invalid = 1;
            /* RFC 9111 4.2.1: an invalid freshness value means stale.
             * The other directives only loosen or tighten a request, so
             * dropping them is the safe reading. */
            if (k == CD_MAX_AGE || k == CD_S_MAXAGE)
                v = 0;
        }
        /* RFC 9111 4.2.1: with several values for one directive, use the
         * first occurrence. */
        if (v >= 0 && *slot < 0)
            *slot = v;
        return;
    }

    if (bad)
        cc->invalid = 1;
    /* Flag directives. A malformed element still sets its flag: a broken
     * "no-store" is far more likely meant than not. Arguments of no-cache
     * and private (field names, 5.2.2.4, 5.2.2.7) are ignored, which makes
     * them unqualified: Ferry does not store responses minus some fields,
     * so the whole response is treated as the directive says. */
    if (ieq(name, nlen, "no-store"))
        cc->no_store = 1;
    else if (ieq(name, nlen, "no-cache"))
        cc->no_cache = 1;
    else if (ieq(name, nlen, "private"))
        cc->private_ = 1;
    else if (ieq(name, nlen, "public"))
        cc->public_ = 1;
    else if (ieq(name, nlen, "must-revalidate"))
        cc->must_revalidate = 1;
    else if (ieq(name, nlen, "proxy-revalidate"))
        cc->proxy_revalidate = 1;
    else if (ieq(name, nlen, "must-understand"))
        cc->must_understand = 1;
    else if (ieq(name, nlen, "only-if-cached"))
        cc->only_if_cached = 1;
    else if (ieq(name, nlen, "no-transform"))
        cc->no_transform = 1;
    else if (ieq(name, nlen, "immutable"))
        cc->immutable = 1;
    /* Unknown extensions are ignored (5.2.3). */
}

void cc_parse(struct cc *cc, const char *value, size_t len)
{
    const char *p = value, *end = value + len;

    /* Grammar (RFC 9111 5.2): Cache-Control = #cache-directive,
     * cache-directive = token [ "=" ( token / quoted-string ) ]. */
    for (;;) {
        const char *name, *arg = NULL;
        size_t nlen, alen = 0;
        int has_arg = 0, quoted = 0, bad = 0;

        while (p < end && (is_ows((unsigned char)*p) || *p == ','))
            p++;
        if (p == end)
            break;
        /* Only a line with some directive in it counts as present, so that
         * an empty targeted field cannot switch off Cache-Control. */
        cc->present = 1;

        name = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        nlen = (size_t)(p - name);
        if (nlen == 0) {
            cc->invalid = 1;
            skip_element(&p, end);
            continue;
        }
        if (p < end && *p == '=') {
            p++;
            has_arg = 1;
            if (p < end && *p == '"') {
                const char *q = ++p;

                while (q < end && *q != '"') {
                    if (*q == '\\' && q + 1 < end)
                        q++;
                    q++;
                }
                if (q >= end) {
                    bad = 1;
                    p = end;
                } else {
                    arg = p;
                    alen = (size_t)(q - p);
                    quoted = 1;
                    p = q + 1;
                }
            } else {
                arg = p;
                while (p < end && is_tchar((unsigned char)*p))
                    p++;
                alen = (size_t)(p - arg);
                if (alen == 0)
                    bad = 1;
            }
        }
        while (p < end && is_ows((unsigned char)*p))
            p++;
        if (p < end && *p != ',') {
            /* "max-age = 5", "max-age=5 6", "max-age=-5": not a directive
             * this grammar allows. */
            bad = 1;
            skip_element(&p, end);
        }
        cc_apply(cc, name, nlen, has_arg, arg, alen, quoted, bad);
    }
}

void cc_from_msg(struct cc *cc, const struct http1_msg *msg, const char *name)
{
    size_t nlen = strlen(name);

    cc_init(cc);
    /* Several field lines form one list (RFC 9110 5.3). */
    for (size_t i = 0; i < msg->n_hdrs; i++) {
        const struct http1_hdr *h = &msg->hdrs[i];

        if (ieq2(h->name, h->name_len, name, nlen))
            cc_parse(cc, h->value, h->value_len);
    }
}

/* ---------------------------------------------------------------------
 * Response metadata.
 */

/*
 * Age (RFC 9111 5.1): the first member of a list is used, and a value that
 * is not a non-negative integer is ignored (0).
 */
static int64_t parse_age(const char *v, size_t n)
{
    const char *p = v, *end = v + n, *s;
    size_t mn;
    int64_t a;

    if (!next_member(&p, end, &s, &mn))
        return 0;
    a = parse_delta(s, mn, 0);
    return a < 0 ? 0 : a;
}

/* Parses an HTTP-date field; -1 when the field is absent, else -2 when invalid. */
static int64_t date_field(const struct http1_msg *msg, const char *name)
{
    const struct http1_hdr *h = http1_find(msg, name);
    int64_t t;

    if (h == NULL)
        return -1;
    t = http_date_parse(h->value, h->value_len);
    return t < 0 ? -2 : t;
}

void cache_meta_from_response(struct cache_meta *m, const struct http1_msg *resp,
                              int64_t request_time, int64_t response_time, const char *targeted)
{
    const struct http1_hdr *h;
    int64_t t;

    memset(m, 0, sizeof(*m));
    m->status = resp->status;
    m->request_time = request_time;
    m->response_time = response_time;

    /* A recipient with a clock dates a message that has no valid Date
     * (RFC 9110 6.6.1); the first field line wins over later ones. */
    t = date_field(resp, "date");
    m->date = t >= 0 ? t : response_time;

    h = http1_find(resp, "age");
    m->age_value = h ? parse_age(h->value, h->value_len) : 0;

    /* RFC 9111 5.3: an invalid Expires, "0" included, means already
     * expired. */
    t = date_field(resp, "expires");
    m->expires = t == -1 ? -1 : t == -2 ? 0 : t;

    t = date_field(resp, "last-modified");
    m->last_modified = t >= 0 ? t : -1;

    m->has_etag = http1_find(resp, "etag") != NULL;
    m->has_set_cookie = http1_find(resp, "set-cookie") != NULL;

    for (size_t i = 0; i < resp->n_hdrs; i++) {
        const char *p, *end, *s;
        size_t mn;

        h = &resp->hdrs[i];
        if (!ieq(h->name, h->name_len, "vary"))
            continue;
        p = h->value;
        end = p + h->value_len;
        while (next_member(&p, end, &s, &mn)) {
            m->has_vary = 1;
            if (mn == 1 && s[0] == '*')
                m->vary_star = 1;
        }
    }

    cc_from_msg(&m->cc, resp, "cache-control");
    if (targeted != NULL)
        cc_from_msg(&m->tcc, resp, targeted);
    else
        cc_init(&m->tcc);
    /* RFC 9213 2.2: the targeted field is used when it is present with a
     * valid value; otherwise the cache falls back to Cache-Control. */
    m->use_tcc = m->tcc.present && !m->tcc.invalid;
}

const struct cc *cache_meta_cc(const struct cache_meta *m)
{
    return m->use_tcc ? &m->tcc : &m->cc;
}

/* ---------------------------------------------------------------------
 * Storing (RFC 9111 3).
 */

/* Status codes heuristically cacheable by default (RFC 9110 15.1). */
static int heuristic_status(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 206: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return 1;
    default:
        return 0;
    }
}

/*
 * Whether Ferry understands a status code's caching requirements, for
 * must-understand (RFC 9111 5.2.2.3): the final codes RFC 9110 defines,
 * minus 206 and 304 which Ferry never stores as entries.
 */
static int understood_status(int status)
{
    if ((status >= 200 && status <= 205) || (status >= 300 && status <= 303) ||
        status == 307 || status == 308 || (status >= 400 && status <= 417) || status == 421 ||
        status == 422 || status == 426 || (status >= 500 && status <= 505))
        return 1;
    return 0;
}

enum store_verdict cache_storable(const struct cache_meta *m, const struct cc *req_cc,
                                  int has_auth, int is_get)
{
    const struct cc *c = cache_meta_cc(m);
    int shared_ok;

    if (!is_get)
        return STORE_NO_METHOD;
    /* RFC 9111 3: only final responses. 206 would need range merging
     * (3.3), which Ferry does not do yet, and a 304 only freshens an
     * entry (4.3.4). */
    if (m->status < 200 || m->status == 206 || m->status == 304)
        return STORE_NO_STATUS;
    if (c->must_understand && !understood_status(m->status))
        return STORE_NO_STATUS;
    if (req_cc != NULL && req_cc->no_store)
        return STORE_NO_STORE;
    /* must-understand with an understood status overrides no-store
     * (5.2.2.3): the origin used no-store as the fallback for caches that
     * do not know the status code. */
    if (c->no_store && !c->must_understand)
        return STORE_NO_STORE;
    if (c->private_)
        return STORE_PRIVATE;
    shared_ok = c->public_ || c->s_maxage >= 0;
    /* RFC 9111 3.5: a shared cache stores a response to a request with
     * Authorization only when the response explicitly allows it. */
    if (has_auth && !shared_ok && !c->must_revalidate)
        return STORE_AUTHORIZATION;
    if (m->vary_star)
        return STORE_VARY_STAR;
    /* Ferry policy: a cookie set for one user must not be replayed to the
     * next one unless the origin says the response is shared. */
    if (m->has_set_cookie && !shared_ok)
        return STORE_SET_COOKIE;
    /* RFC 9111 3: explicit freshness, or a status that may get heuristic
     * freshness (public makes any status so, 5.2.2.9). Ferry also wants a
     * validator or Last-Modified in the heuristic case, since otherwise the
     * stored copy is stale at once and cannot be revalidated. */
    if (c->s_maxage >= 0 || c->max_age >= 0 || (!m->use_tcc && m->expires >= 0))
        return STORE_OK;
    if ((c->public_ || heuristic_status(m->status)) && (m->has_etag || m->last_modified >= 0))
        return STORE_OK;
    return STORE_NO_FRESHNESS;
}

const char *cache_verdict_str(enum store_verdict v)
{
    switch (v) {
    case STORE_OK:
        return "ok";
    case STORE_NO_METHOD:
        return "method";
    case STORE_NO_STATUS:
        return "status";
    case STORE_NO_STORE:
        return "no-store";
    case STORE_PRIVATE:
        return "private";
    case STORE_AUTHORIZATION:
        return "authorization";
    case STORE_NO_FRESHNESS:
        return "no-freshness";
    case STORE_VARY_STAR:
        return "vary-star";
    case STORE_SET_COOKIE:
        return "set-cookie";
    }
    return "unknown";
}

/* ---------------------------------------------------------------------
 * Freshness (RFC 9111 4.2).
 */

/* pct percent of d, without overflow, rounded down. */
static int64_t percent_of(int64_t d, int pct)
{
    int64_t whole = d / 100, part = d % 100;

    if (whole > INT64_MAX / pct)
        return INT64_MAX;
    return sat_add(whole * pct, part * pct / 100);
}

int64_t cache_lifetime(const struct cache_meta *m, int heuristic_pct, int64_t heuristic_max)
{
    const struct cc *c = cache_meta_cc(m);
    int64_t d, h;

    /* 4.2.1: a shared cache takes s-maxage over max-age over Expires. */
    if (c->s_maxage >= 0)
        return c->s_maxage;
    if (c->max_age >= 0)
        return c->max_age;
    /* RFC 9213 2.2: a valid targeted field replaces Expires as well. */
    if (!m->use_tcc && m->expires >= 0)
        return max64(0, sat_sub(m->expires, m->date));

    /* 4.2.2: heuristic freshness, only without an explicit expiration,
     * for heuristically cacheable statuses or explicitly public
     * responses, from Last-Modified as the 10% rule suggests. */
    if (!c->public_ && !heuristic_status(m->status))
        return 0;
    if (m->last_modified < 0 || heuristic_pct <= 0 || heuristic_max <= 0)
        return 0;
    d = sat_sub(m->date, m->last_modified);
    if (d <= 0)
        return 0;
    h = percent_of(d, heuristic_pct);
    return h < heuristic_max ? h : heuristic_max;
}

int64_t cache_age(const struct cache_meta *m, int64_t now)
{
    int64_t apparent_age, response_delay, corrected_age_value, corrected_initial_age;
    int64_t resident_time;

    /* RFC 9111 4.2.3, with the clock differences clamped at zero so that
     * a skewed or reordered clock can only make the response older. */
    apparent_age = max64(0, sat_sub(m->response_time, m->date));
    response_delay = max64(0, sat_sub(m->response_time, m->request_time));
    corrected_age_value = sat_add(max64(0, m->age_value), response_delay);
    corrected_initial_age = max64(apparent_age, corrected_age_value);
    resident_time = max64(0, sat_sub(now, m->response_time));
    return sat_add(corrected_initial_age, resident_time);
}

/*
 * Whether the response's own directives forbid serving it stale: the
 * revalidation directives (5.2.2.2, 5.2.2.8), no-cache (5.2.2.4), and
 * s-maxage, which implies proxy-revalidate for a shared cache (5.2.2.10).
 */
static int stale_forbidden(const struct cc *c)
{
    return c->must_revalidate || c->proxy_revalidate || c->no_cache || c->s_maxage >= 0;
}

enum serve_verdict cache_serve(const struct cache_meta *m, int64_t lifetime, int64_t now,
                               const struct cc *req_cc)
{
    const struct cc *c = cache_meta_cc(m);
    int64_t age = cache_age(m, now);
    int64_t staleness;

    /* 5.2.2.4: no-cache in the response means validate on every use. */
    if (c->no_cache)
        return SERVE_REVALIDATE;
    if (req_cc != NULL) {
        /* 5.2.1.4: the client does not want a stored response unvalidated. */
        if (req_cc->no_cache)
            return SERVE_REVALIDATE;
        /* 5.2.1.1: max-age=0 is the usual "reload"; otherwise a response
         * older than the client accepts is validated first. */
        if (req_cc->max_age == 0 || (req_cc->max_age > 0 && age > req_cc->max_age))
            return SERVE_REVALIDATE;
        /* 5.2.1.3: the response must stay fresh for min-fresh more. */
        if (req_cc->min_fresh >= 0 && sat_sub(lifetime, age) < req_cc->min_fresh)
            return SERVE_REVALIDATE;
    }
    /* 4.2: fresh while freshness_lifetime > current_age. */
    if (lifetime > age)
        return SERVE_FRESH;
    /* 4.2.4: stale responses only where a directive allows it and none
     * forbids it. */
    if (stale_forbidden(c))
        return SERVE_REVALIDATE;
    staleness = sat_sub(age, lifetime);
    /* RFC 5861 3: within the window serve stale and refresh behind. */
    if (c->stale_while_revalidate >= 0 && staleness <= c->stale_while_revalidate)
        return SERVE_STALE_REVALIDATE;
    /* 5.2.1.2: the client accepts this much staleness. */
    if (req_cc != NULL && req_cc->max_stale >= 0 && staleness <= req_cc->max_stale)
        return SERVE_FRESH;
    return SERVE_REVALIDATE;
}

int cache_stale_if_error_ok(const struct cache_meta *m, int64_t lifetime, int64_t now,
                            int64_t default_sie)
{
    const struct cc *c = cache_meta_cc(m);
    int64_t staleness = sat_sub(cache_age(m, now), lifetime);
    int64_t window;

    if (staleness < 0)
        return 1; /* still fresh: nothing stale about serving it */
    /* RFC 5861 4 allows stale-if-error "regardless of other freshness
     * information", but RFC 9111 5.2.2.2 is later and stricter: a cache
     * MUST NOT serve a must-revalidate response stale even when
     * disconnected; the same holds for its shared-cache forms. */
    if (stale_forbidden(c))
        return 0;
    window = c->stale_if_error >= 0 ? c->stale_if_error : default_sie;
    return window > 0 && staleness <= window;
}

/* ---------------------------------------------------------------------
 * Vary (RFC 9111 4.1).
 */

/*
 * Appends a request field value to out with the whitespace around list
 * commas removed, leaving quoted strings untouched (their spaces are
 * data). The parser has already trimmed the value's ends.
 */
static void append_normalised(struct buf *out, const char *v, size_t n)
{
    char *w;
    size_t o = 0, ws = 0;
    int in_q = 0, after_comma = 1;

    if (n == 0)
        return;
    w = buf_reserve(out, n); /* the output is never longer than the input */

    for (size_t i = 0; i < n; i++) {
        char c = v[i];

        if (in_q) {
            w[o++] = c;
            if (c == '\\' && i + 1 < n)
                w[o++] = v[++i];
            else if (c == '"')
                in_q = 0;
            continue;
        }
        if (is_ows((unsigned char)c)) {
            ws++;
            continue;
        }
        /* Whitespace inside an element is kept; around a comma it goes. */
        if (ws > 0 && c != ',' && !after_comma) {
            memcpy(w + o, v + i - ws, ws);
            o += ws;
        }
        ws = 0;
        w[o++] = c;
        after_comma = c == ',';
        if (c == '"')
            in_q = 1;
    }
    buf_commit(out, o);
}

/* Appends "name:value\n" (or "name\n" when req lacks the field). */
static void vary_append(struct buf *out, const char *name, size_t nlen,
                        const struct http1_msg *req)
{
    char *w = buf_reserve(out, nlen);
    int found = 0, have_value = 0;

    for (size_t i = 0; i < nlen; i++)
        w[i] = (char)ascii_lower((unsigned char)name[i]);
    buf_commit(out, nlen);
    /* The request's field lines combine into one list (RFC 9110 5.3); an
     * empty line adds no member. */
    for (size_t i = 0; i < req->n_hdrs; i++) {
        const struct http1_hdr *h = &req->hdrs[i];

        if (!ieq2(h->name, h->name_len, name, nlen))
            continue;
        if (!found)
            buf_append(out, ":", 1);
        found = 1;
        if (h->value_len == 0)
            continue;
        if (have_value)
            buf_append(out, ",", 1);
        have_value = 1;
        append_normalised(out, h->value, h->value_len);
    }
    buf_append(out, "\n", 1);
}

static int vary_has_star(const char *v, size_t n)
{
    const char *p = v, *s;
    size_t mn;

    while (next_member(&p, v + n, &s, &mn)) {
        if (mn == 1 && s[0] == '*')
            return 1;
    }
    return 0;
}

static void vary_append_list(struct buf *out, const char *v, size_t n, const struct http1_msg *req)
{
    const char *p = v, *s;
    size_t mn;

    while (next_member(&p, v + n, &s, &mn))
        vary_append(out, s, mn, req);
}

int cache_vary_key(const struct http1_msg *resp, const struct http1_msg *req, struct buf *out)
{
    /* Look for "*" first so that nothing is appended for a response
     * that can never match (4.1). */
    for (size_t i = 0; i < resp->n_hdrs; i++) {
        const struct http1_hdr *h = &resp->hdrs[i];

        if (ieq(h->name, h->name_len, "vary") && vary_has_star(h->value, h->value_len))
            return -1;
    }
    for (size_t i = 0; i < resp->n_hdrs; i++) {
        const struct http1_hdr *h = &resp->hdrs[i];

        if (ieq(h->name, h->name_len, "vary"))
            vary_append_list(out, h->value, h->value_len, req);
    }
    return 0;
}

int cache_vary_key_from(const char *vary, size_t vary_len, const struct http1_msg *req,
                        struct buf *out)
{
    if (vary_has_star(vary, vary_len))
        return -1;
    vary_append_list(out, vary, vary_len, req);
    return 0;
}

/* ---------------------------------------------------------------------
 * Hop-by-hop fields (RFC 9110 7.6.1).
 */

int http_hop_by_hop(const char *name, size_t len, const char *conn_value, size_t conn_len)
{
    /* Connection-specific fields, plus the proxy authentication pair,
     * which concern the next hop only (RFC 9110 11.7.1, 11.7.2), and
     * Proxy-Connection and Keep-Alive, which old agents send in its
     * place (RFC 9112 9.6, 9.3 and RFC 9110 7.6.1). */
    static const char *const fixed[] = {
        "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding",
        "upgrade", "trailer", "proxy-authenticate", "proxy-authorization",
    };

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (ieq(name, len, fixed[i]))
            return 1;
    }
    if (conn_value != NULL) {
        const char *p = conn_value, *s;
        size_t mn;

        /* Connection options name further hop-by-hop fields (7.6.1). */
        while (next_member(&p, conn_value + conn_len, &s, &mn)) {
            if (ieq2(s, mn, name, len))
                return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Conditional requests (RFC 9110 13).
 */

static int method_is(const struct http1_msg *req, const char *m)
{
    size_t n = strlen(m);

    /* Methods are case-sensitive (RFC 9110 9.1). */
    return req->method != NULL && req->method_len == n && memcmp(req->method, m, n) == 0;
}

/* Drops the weak indicator "W/" (case-sensitive, RFC 9110 8.8.3). */
static void strip_weak(const char **s, size_t *n)
{
    if (*n >= 2 && (*s)[0] == 'W' && (*s)[1] == '/') {
        *s += 2;
        *n -= 2;
    }
}

/*
 * Whether the If-None-Match value v[0..n) matches the stored etag by weak
 * comparison (RFC 9110 8.8.3.2): opaque-tags equal, weakness ignored.
 * Members are parsed as entity-tags, whose opaque part may contain commas.
 */
static int inm_matches(const char *v, size_t n, const char *etag, size_t etag_len)
{
    const char *p = v, *end = v + n;

    if (etag != NULL)
        strip_weak(&etag, &etag_len);
    for (;;) {
        const char *s, *q;

        while (p < end && (is_ows((unsigned char)*p) || *p == ','))
            p++;
        if (p == end)
            return 0;
        if (*p == '*') {
            /* "*" matches any current representation (13.1.2), and we
             * hold one. */
            return 1;
        }
        s = p;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if (p < end && *p == '"') {
            q = memchr(p + 1, '"', (size_t)(end - p - 1));
            if (q != NULL) {
                size_t tl = (size_t)(q + 1 - p);

                if (etag != NULL && tl == etag_len && memcmp(p, etag, tl) == 0)
                    return 1;
                p = q + 1;
                continue;
            }
        }
        /* Not an entity-tag: skip the member. */
        p = s;
        while (p < end && *p != ',')
            p++;
    }
}

int cache_not_modified(const struct http1_msg *req, const char *etag, size_t etag_len,
                       int64_t last_modified)
{
    const struct http1_hdr *ims = NULL;
    int has_inm = 0, n_ims = 0;
    int64_t t;

    /* 304 is defined for GET and HEAD only (13.1.2, 13.1.3). */
    if (!method_is(req, "GET") && !method_is(req, "HEAD"))
        return 0;
    for (size_t i = 0; i < req->n_hdrs; i++) {
        const struct http1_hdr *h = &req->hdrs[i];

        if (ieq(h->name, h->name_len, "if-none-match")) {
            has_inm = 1;
            if (inm_matches(h->value, h->value_len, etag, etag_len))
                return 1;
        } else if (ieq(h->name, h->name_len, "if-modified-since")) {
            ims = h;
            n_ims++;
        }
    }
    /* 13.2.2 step 3-4: If-None-Match, when present, decides alone. */
    if (has_inm)
        return 0;
    /* 13.1.3: ignore a date that is invalid or given more than once. */
    if (n_ims != 1 || last_modified < 0)
        return 0;
    t = http_date_parse(ims->value, ims->value_len);
    if (t < 0)
        return 0;
    return last_modified <= t;
}

/* ---------------------------------------------------------------------
 * Range (RFC 9110 14).
 */

/* Parses 1*DIGIT at *pp, saturating; returns 0 if there is no digit. */
static int parse_u64(const char **pp, const char *end, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;

    if (p == end || !is_digit((unsigned char)*p))
        return 0;
    while (p < end && is_digit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p - '0');

        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        p++;
    }
    *pp = p;
    *out = v;
    return 1;
}

int cache_range(const struct http1_msg *req, uint64_t total, uint64_t *first, uint64_t *last)
{
    const struct http1_hdr *h = NULL;
    const char *p, *end, *unit;
    uint64_t a = 0, b = 0;
    int n_ranges = 0, suffix = 0, has_last = 0, n_fields = 0;

    /* 14.2: range handling is defined for GET only. */
    if (!method_is(req, "GET"))
        return 0;
    for (size_t i = 0; i < req->n_hdrs; i++) {
        const struct http1_hdr *f = &req->hdrs[i];

        if (ieq(f->name, f->name_len, "range")) {
            h = f;
            n_fields++;
        } else if (ieq(f->name, f->name_len, "if-range")) {
            /* 13.1.5: evaluating If-Range needs the stored validators,
             * which this function does not have; answering with the whole
             * representation is always correct. */
            return 0;
        }
    }
    if (n_fields != 1)
        return 0;

    p = h->value;
    end = p + h->value_len;
    /* ranges-specifier = range-unit "=" range-set; units compare
     * case-insensitively (14.1). */
    unit = p;
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (!ieq(unit, (size_t)(p - unit), "bytes") || p == end || *p != '=')
        return 0;
    p++;

    /* range-set = 1#range-spec, empty members allowed (RFC 9110 5.6.1). */
    for (;;) {
        while (p < end && (is_ows((unsigned char)*p) || *p == ','))
            p++;
        if (p == end)
            break;
        if (++n_ranges > 1)
            return 0; /* Ferry serves single ranges only; the rest get 200 */
        if (*p == '-') {
            p++;
            suffix = 1;
            if (!parse_u64(&p, end, &b))
                return 0;
        } else {
            if (!parse_u64(&p, end, &a) || p == end || *p != '-')
                return 0;
            p++;
            has_last = parse_u64(&p, end, &b);
        }
        while (p < end && is_ows((unsigned char)*p))
            p++;
        if (p < end && *p != ',')
            return 0;
    }
    if (n_ranges == 0)
        return 0;

    /* 14.1.1: satisfiability and clamping. */
    if (suffix) {
        if (b == 0)
            return -1;
        if (total == 0)
            return 0; /* nothing to select; the empty whole is the answer */
        *first = b >= total ? 0 : total - b;
        *last = total - 1;
        return 1;
    }
    if (has_last && b < a)
        return 0; /* invalid range-spec: ignore the field (14.2) */
    if (a >= total)
        return -1;
    *first = a;
    *last = (!has_last || b >= total) ? total - 1 : b;
    return 1;
}

int cache_vary_matches(const char *vary, const char *vkey, size_t vkey_len,
                       const struct http1_msg *req, struct buf *scratch)
{
    if (vary == NULL)
        return 1;
    buf_reset(scratch);
    if (cache_vary_key_from(vary, strlen(vary), req, scratch) < 0)
        return 0;
    return buf_avail(scratch) == vkey_len &&
           (vkey_len == 0 || memcmp(buf_head(scratch), vkey, vkey_len) == 0);
}
