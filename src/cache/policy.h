/*
 * policy -- the rules of RFC 9111 (HTTP caching) and RFC 9213 (targeted
 * cache control) as pure functions over parsed message heads: what may be
 * stored, for how long it is fresh, how old it is, whether a stale
 * response may be served, and the secondary key for Vary.
 *
 * Times are seconds since the epoch (wall clock); durations are seconds.
 * Nothing here allocates, except cache_vary_key* which append to a buf.
 */
#ifndef FERRY_CACHE_POLICY_H
#define FERRY_CACHE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "http/http1.h"
#include "lib/buf.h"

/* Parsed Cache-Control (RFC 9111 5.2) or CDN-Cache-Control (RFC 9213). */
struct cc {
    int64_t max_age;       /* -1 when absent */
    int64_t s_maxage;      /* -1 when absent */
    int64_t max_stale;     /* request; -1 absent; INT64_MAX for a bare max-stale */
    int64_t min_fresh;     /* request; -1 absent */
    int64_t stale_while_revalidate; /* RFC 5861; -1 absent */
    int64_t stale_if_error;         /* RFC 5861; -1 absent */
    unsigned no_store : 1;
    unsigned no_cache : 1;         /* with or without field names: treated as unqualified */
    unsigned private_ : 1;         /* with or without field names: treated as unqualified */
    unsigned public_ : 1;
    unsigned must_revalidate : 1;
    unsigned proxy_revalidate : 1;
    unsigned must_understand : 1;
    unsigned only_if_cached : 1;
    unsigned no_transform : 1;
    unsigned immutable : 1;
    unsigned present : 1;          /* at least one directive was seen (empty lines do not count) */
    unsigned invalid : 1;          /* a directive had a malformed argument or element */
};

/* Sets every field of cc to "absent". */
void cc_init(struct cc *cc);
/*
 * Adds the directives of one field line value[0..len) to cc (a message may
 * carry several lines; they combine). Directive names are case-insensitive;
 * arguments may be quoted. A delta-seconds argument that is not all digits
 * makes that directive count as absent and sets invalid, except that a
 * malformed max-age/s-maxage means "stale" (RFC 9111 4.2.1: treat as 0).
 * An element that does not fit the grammar (no name, unterminated quote,
 * junk after the value) also sets invalid. When a directive repeats, the
 * first occurrence wins (RFC 9111 4.2.1). Values above 2^31 are capped at
 * 2^31 (RFC 9111 1.2.2). Unknown directives are ignored.
 */
void cc_parse(struct cc *cc, const char *value, size_t len);
/* Resets cc (cc_init) and parses every field named name (e.g.
 * "cache-control", case-insensitive) of msg into it. */
void cc_from_msg(struct cc *cc, const struct http1_msg *msg, const char *name);

/* What the cache knows about a stored or incoming response. */
struct cache_meta {
    int status;
    int64_t request_time;   /* when the request that got it was sent */
    int64_t response_time;  /* when it was received */
    int64_t date;           /* Date field, or response_time when absent/invalid */
    int64_t age_value;      /* Age field, 0 when absent/invalid */
    int64_t expires;        /* Expires field; -1 absent; 0 for an invalid date (= already expired) */
    int64_t last_modified;  /* -1 when absent */
    int has_etag;
    int has_vary;
    int vary_star;          /* Vary: * */
    int has_set_cookie;
    struct cc cc;           /* Cache-Control */
    struct cc tcc;          /* the targeted field (CDN-Cache-Control), if present */
    int use_tcc;            /* tcc.present and valid: it replaces cc for this cache */
};

/*
 * Fills meta from a response head. targeted names the targeted field to
 * honour (normally "CDN-Cache-Control"), or NULL. When the targeted field
 * is used (use_tcc), Cache-Control and Expires are ignored for this
 * cache's decisions (RFC 9213 2.2).
 */
void cache_meta_from_response(struct cache_meta *m, const struct http1_msg *resp,
                              int64_t request_time, int64_t response_time, const char *targeted);

/* The directives that govern this cache: the targeted ones when present. */
const struct cc *cache_meta_cc(const struct cache_meta *m);

/* Why a response is not stored (for logs and the X-Cache-Detail field). */
enum store_verdict {
    STORE_OK = 0,
    STORE_NO_METHOD,        /* request method is not GET */
    STORE_NO_STATUS,        /* status not final / not understood / 206 */
    STORE_NO_STORE,         /* no-store in request or response */
    STORE_PRIVATE,          /* private */
    STORE_AUTHORIZATION,    /* request had Authorization and response does not allow sharing */
    STORE_NO_FRESHNESS,     /* no explicit freshness, not heuristically cacheable, no validator */
    STORE_VARY_STAR,        /* Vary: * */
    STORE_SET_COOKIE,       /* Set-Cookie without public/s-maxage (Ferry policy) */
};

/*
 * Decides whether a response may be stored by a shared cache (RFC 9111
 * section 3, 3.5). req_cc is the request's Cache-Control; has_auth tells
 * whether the request carried Authorization; is_get whether the method was
 * GET; req_cc may be NULL. Returns STORE_OK or the first reason against.
 * STORE_NO_FRESHNESS: no explicit freshness (s-maxage, max-age, Expires),
 * and either the status is not heuristically cacheable (nor public) or
 * there is neither ETag nor Last-Modified to revalidate with (Ferry policy).
 */
enum store_verdict cache_storable(const struct cache_meta *m, const struct cc *req_cc,
                                  int has_auth, int is_get);
/* A short static name for v ("ok", "no-store", ...); never NULL. */
const char *cache_verdict_str(enum store_verdict v);

/*
 * Freshness lifetime in seconds (RFC 9111 4.2.1): s-maxage, then max-age,
 * then Expires - Date, then the heuristic: heuristic_pct percent of
 * (Date - Last-Modified), at most heuristic_max seconds, for heuristically
 * cacheable statuses or public responses only (RFC 9111 4.2.2). Expires is
 * skipped when the targeted field is used. 0 when nothing applies.
 */
int64_t cache_lifetime(const struct cache_meta *m, int heuristic_pct, int64_t heuristic_max);

/* Current age at time now (RFC 9111 4.2.3). Never negative. */
int64_t cache_age(const struct cache_meta *m, int64_t now);

/* The decision for a request that found a stored response. */
enum serve_verdict {
    SERVE_FRESH = 0,        /* serve it */
    SERVE_REVALIDATE,       /* send a conditional request first */
    SERVE_STALE_REVALIDATE, /* serve stale now and revalidate in the background (swr) */
};

/*
 * Decides how to use a stored response with lifetime `lifetime` at time
 * now for a request with Cache-Control req_cc (RFC 9111 4, 4.2.4, 5.2.1;
 * RFC 5861 3). no-cache in the response or request, and max-age=0 or
 * min-fresh in the request, force revalidation; must-revalidate and
 * proxy-revalidate (and s-maxage, per 5.2.2.10) forbid serving stale;
 * a request max-stale allows stale within its bound unless forbidden.
 * req_cc may be NULL.
 */
enum serve_verdict cache_serve(const struct cache_meta *m, int64_t lifetime, int64_t now,
                               const struct cc *req_cc);

/*
 * Whether a stale response may be served because the origin failed
 * (stale-if-error, RFC 5861 4), given the configured default window
 * default_sie (seconds, 0 = only when the response says so). Returns 1
 * while still fresh; never 1 when stale serving is forbidden
 * (must-revalidate, proxy-revalidate, s-maxage, no-cache).
 */
int cache_stale_if_error_ok(const struct cache_meta *m, int64_t lifetime, int64_t now,
                            int64_t default_sie);

/*
 * Builds the secondary cache key for a response's Vary field (RFC 9111
 * 4.1): for each field name listed in vary (all Vary lines of resp), the
 * request's values of that field, combined and normalised (lowercase
 * names, whitespace around commas removed), appended to out as
 * "name:value\n", or "name\n" when the request lacks the field (so that a
 * missing field differs from an empty one). Returns 0, or -1 for Vary: *
 * (never matches; nothing is appended then).
 */
int cache_vary_key(const struct http1_msg *resp, const struct http1_msg *req, struct buf *out);
/*
 * Same, from a stored Vary value (the names) and a new request; used on
 * lookup. vary is the comma-joined list as stored.
 */
int cache_vary_key_from(const char *vary, size_t vary_len, const struct http1_msg *req,
                        struct buf *out);

/*
 * Whether req selects the stored variant whose Vary names are vary (NULL
 * when the response had no Vary) and whose secondary key is vkey[0..vkey_len).
 * scratch is a caller's buffer, reset and reused here. Returns 1 or 0.
 */
int cache_vary_matches(const char *vary, const char *vkey, size_t vkey_len,
                       const struct http1_msg *req, struct buf *scratch);

/*
 * Whether a field is hop-by-hop (RFC 9110 7.6.1) or otherwise not stored
 * nor forwarded: Connection, Keep-Alive, Proxy-Connection, TE,
 * Transfer-Encoding, Upgrade, Trailer, Proxy-Authenticate,
 * Proxy-Authorization. conn_value is the message's Connection field value
 * (or NULL); names listed there are hop-by-hop too.
 */
int http_hop_by_hop(const char *name, size_t len, const char *conn_value, size_t conn_len);

/*
 * Evaluates a client's conditional GET/HEAD against a stored response
 * (RFC 9110 13.1.2, 13.1.3, 13.2.2): If-None-Match (weak comparison, "*")
 * takes precedence over If-Modified-Since. etag/last_modified describe the
 * stored response (etag may be NULL; last_modified -1 when absent; pass
 * the stored Date when there is no Last-Modified, RFC 9111 4.3.2).
 * Returns 1 when a 304 should be sent, else 0; always 0 for methods other
 * than GET and HEAD. The caller must not use it for a stored response that
 * is not 2xx (RFC 9110 13.2.1: preconditions are then ignored).
 */
int cache_not_modified(const struct http1_msg *req, const char *etag, size_t etag_len,
                       int64_t last_modified);

/*
 * Parses a Range field for a representation of size total (RFC 9110 14.1):
 * only a single bytes range is honoured. Returns 1 and sets [*first,*last]
 * for a satisfiable single range, 0 when the field should be ignored
 * (absent, not "bytes", several ranges, syntax error, not GET, an
 * If-Range field present -- its validator is not evaluated here -- or a
 * suffix range of an empty representation), -1 when unsatisfiable (send
 * 416).
 */
int cache_range(const struct http1_msg *req, uint64_t total, uint64_t *first, uint64_t *last);

#endif
