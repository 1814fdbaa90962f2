/*
 * peer/msg -- the messages of the Ferry peering protocol, version 1
 * (docs/peering-protocol.md): framing, OPEN, UPDATE, NOTIFICATION,
 * KEEPALIVE and ROUTE-REFRESH, their attributes and routes.
 *
 * Pure and socket-free. Decoding never allocates: a decoded UPDATE points
 * into the caller's buffer, and its routes and attributes are walked with
 * iterators, so a million-route table costs no copies here. Encoding writes
 * into a caller's struct buf. Every decoder checks every length against the
 * bytes it was given and reports protocol errors as the NOTIFICATION
 * (code, subcode) the receiver must send.
 */
#ifndef FERRY_PEER_MSG_H
#define FERRY_PEER_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define PEER_VERSION 1
#define PEER_HDR_LEN 6
#define PEER_MAX_MSG_DEFAULT (1u << 20)
#define PEER_MAX_MSG_LIMIT (16u << 20)
#define PEER_MAX_ID 32            /* bytes of a CDN id */
#define PEER_MAX_PATH 32          /* CDN ids in a PATH */
#define PEER_MAX_HOST 253         /* bytes of a publisher name */
#define PEER_MAX_URI 2048         /* bytes of a URI prefix */
#define PEER_MAX_TARGET 512       /* bytes of a hand-off target */
#define PEER_MAX_HANDOFFS 4

enum peer_msg_type {
    PEER_OPEN = 1,
    PEER_UPDATE = 2,
    PEER_NOTIFICATION = 3,
    PEER_KEEPALIVE = 4,
    PEER_ROUTE_REFRESH = 5,
};

/* Attribute flags. */
#define PEER_AF_OPTIONAL 0x80u
#define PEER_AF_TRANSITIVE 0x40u
#define PEER_AF_PARTIAL 0x20u

/* OPEN capabilities. */
enum {
    PEER_CAP_ROUTING_TYPES = 1,
    PEER_CAP_CONTENT_TYPES = 2,
    PEER_CAP_METRICS = 3,
    PEER_CAP_FAMILIES = 4,
    PEER_CAP_ROUTE_REFRESH = 5,
    PEER_CAP_MAX_MESSAGE = 6,
};
#define PEER_RT_DNS 0x01u
#define PEER_RT_HTTP 0x02u
#define PEER_RT_INTERCEPT 0x04u
#define PEER_CT_STATIC 0x01u
#define PEER_CT_STREAMING 0x02u
#define PEER_FAM_AREAS 0x01u      /* as a bit set; on the wire a list of family numbers */
#define PEER_FAM_CONTENT 0x02u

/* UPDATE path attributes. */
enum {
    PEER_ATTR_PATH = 1,
    PEER_ATTR_HANDOFF = 2,
    PEER_ATTR_METRICS = 3,
    PEER_ATTR_CONTENT_TYPES = 4,
    PEER_ATTR_DISTRIBUTION = 5,
    PEER_ATTR_AUTHORITATIVE = 6,
};
enum peer_handoff { PEER_HO_CNAME = 1, PEER_HO_NS = 2, PEER_HO_ECS = 3, PEER_HO_HTTP = 4 };
enum { PEER_METRIC_LOAD = 1, PEER_METRIC_CAPACITY = 2, PEER_METRIC_COST = 3 };

/* Route kinds. */
enum peer_route_kind { PEER_R_AREA4 = 1, PEER_R_AREA6 = 2, PEER_R_PUBLISHER = 3, PEER_R_URI = 4 };

/* NOTIFICATION codes and subcodes (docs/peering-protocol.md section 7). */
enum {
    PEER_ERR_HEADER = 1, PEER_ERR_OPEN = 2, PEER_ERR_UPDATE = 3, PEER_ERR_HOLD = 4,
    PEER_ERR_FSM = 5, PEER_ERR_CEASE = 6,
};
enum { PEER_SUB_BAD_LENGTH = 1, PEER_SUB_BAD_TYPE = 2 };
enum {
    PEER_SUB_VERSION = 1, PEER_SUB_BAD_ID = 2, PEER_SUB_HOLD_TIME = 3, PEER_SUB_CAPABILITY = 4,
    PEER_SUB_AUTH = 5,
};
enum {
    PEER_SUB_ATTR_LIST = 1, PEER_SUB_UNKNOWN_WELL_KNOWN = 2, PEER_SUB_MISSING_WELL_KNOWN = 3,
    PEER_SUB_ATTR_FLAGS = 4, PEER_SUB_ATTR_LENGTH = 5, PEER_SUB_BAD_AREA = 6, PEER_SUB_BAD_PATH = 7,
    PEER_SUB_BAD_CONTENT = 8,
};
enum {
    PEER_SUB_SHUTDOWN = 1, PEER_SUB_RESET = 2, PEER_SUB_REJECTED = 3, PEER_SUB_COLLISION = 4,
    PEER_SUB_TOO_MANY = 5, PEER_SUB_CONFIG = 6,
};

/* A protocol error: the NOTIFICATION to send. */
struct peer_err {
    uint8_t code, subcode;
    const char *what;             /* static text for the log */
};

/* ---- framing ---------------------------------------------------------- */

/*
 * Looks at buf[0..len) for one whole message. Returns its length (> 0) when
 * one is there, 0 when more bytes are needed, or -1 with *err set when the
 * header is bad (length below 6 or above max, unknown type).
 */
long peer_frame(const uint8_t *buf, size_t len, uint32_t max, uint8_t *type, struct peer_err *err);

/* ---- OPEN -------------------------------------------------------------- */

struct peer_open {
    uint8_t version;
    uint16_t hold_time;
    char id[PEER_MAX_ID + 1];
    uint8_t routing_types, content_types, families;
    int route_refresh;
    uint32_t max_message;         /* 0 when not offered */
    uint16_t metrics[16];
    unsigned nmetrics;
};

/* CDN ids: 1-32 of a-z 0-9 -, no leading, trailing or doubled '-'. */
int peer_id_valid(const char *id, size_t len);

void peer_encode_open(struct buf *out, const struct peer_open *o);
/* Decodes an OPEN message (header included). Returns 0 or -1 with *err. */
int peer_decode_open(const uint8_t *msg, size_t len, struct peer_open *o, struct peer_err *err);

/* ---- UPDATE ------------------------------------------------------------ */

struct peer_route {
    enum peer_route_kind kind;
    uint8_t plen;                 /* areas */
    uint8_t addr[16];             /* areas, bits past plen zero */
    uint16_t len;                 /* publisher and URI: bytes of text */
    const char *text;             /* publisher and URI: points into the message, not NUL-terminated */
};

struct peer_handoff_target {
    enum peer_handoff method;
    uint16_t len;
    const char *target;           /* points into the message */
};

/* The attributes of one UPDATE, decoded; pointers into the message. */
struct peer_attrs {
    unsigned npath;
    const uint8_t *path;          /* the PATH value after its count byte */
    unsigned nhandoff;
    struct peer_handoff_target handoff[PEER_MAX_HANDOFFS];
    int has_metrics;
    uint32_t load, capacity, cost; /* UINT32_MAX: not sent */
    uint8_t content_types;        /* PEER_CT_STATIC when absent */
    uint8_t distribution;
    const uint8_t *authoritative; /* CDN id, or NULL */
    uint8_t authoritative_len;
    unsigned nunknown;            /* unknown optional transitive attributes (to carry on) */
};

struct peer_update {
    const uint8_t *withdrawn;     /* encoded routes */
    size_t withdrawn_len;
    const uint8_t *attrs_raw;     /* the attribute block as received */
    size_t attrs_len;
    struct peer_attrs attrs;
    const uint8_t *announced;     /* encoded routes */
    size_t announced_len;
};

/*
 * Decodes and fully checks an UPDATE (header included): every route of
 * both lists and every attribute. Unknown optional transitive attributes
 * are counted in attrs.nunknown; peer_attrs_carry collects them for passing
 * on. Returns 0 or -1 with *err.
 */
int peer_decode_update(const uint8_t *msg, size_t len, struct peer_update *u, struct peer_err *err);

/* Appends the unknown optional transitive attributes of a checked block to out. */
void peer_attrs_carry(const uint8_t *blk, size_t len, struct buf *out);

/* Is this UPDATE End-of-RIB (nothing withdrawn, no attributes, nothing announced)? */
int peer_update_is_eor(const struct peer_update *u);

/* Walks an encoded route list: *pos starts at 0. Returns 1 and fills r, or 0 at the end.
 * The list must have been checked by peer_decode_update. */
int peer_route_next(const uint8_t *list, size_t len, size_t *pos, struct peer_route *r);

/* Walks an attribute block: returns 1 with flags/type/value, 0 at the end. Checked blocks only. */
int peer_attr_next(const uint8_t *blk, size_t len, size_t *pos, uint8_t *flags, uint8_t *type,
                   const uint8_t **val, uint16_t *vlen);

/* The i-th CDN id of a decoded PATH (0 = the advertiser). */
void peer_path_id(const struct peer_attrs *a, unsigned i, const uint8_t **id, uint8_t *len);

/*
 * UPDATE writer. peer_update_begin starts a message; add withdrawals, then
 * attributes (once), then announcements. Each add returns 0, or -1 when the
 * message would exceed `max` bytes (the caller finishes it and starts
 * another). peer_update_end writes the lengths; returns the message size.
 */
struct peer_update_writer {
    struct buf *out;
    size_t start;                 /* offset of the message in out */
    size_t wlen_at, alen_at;      /* offsets of the two length fields */
    int stage;                    /* 0 withdrawals, 1 attributes written, 2 announcements */
    uint32_t max;
};
void peer_update_begin(struct peer_update_writer *w, struct buf *out, uint32_t max);
int peer_update_withdraw(struct peer_update_writer *w, const struct peer_route *r);
/* Writes the attribute block: the PATH (ids, first = advertiser), the hand-offs, metrics etc.
 * `extra` (may be NULL) is a block of attributes to carry on, copied as is. */
int peer_update_attrs(struct peer_update_writer *w, const char *const *path, unsigned npath,
                      const struct peer_handoff_target *ho, unsigned nho, const struct peer_attrs *m,
                      const uint8_t *extra, size_t extra_len);
int peer_update_announce(struct peer_update_writer *w, const struct peer_route *r);
size_t peer_update_end(struct peer_update_writer *w);

/* ---- the small ones ------------------------------------------------------ */

void peer_encode_keepalive(struct buf *out);
void peer_encode_notification(struct buf *out, uint8_t code, uint8_t subcode, const void *data,
                              size_t len);
/* Returns 0 and the fields (data points into msg), or -1 with *err. */
int peer_decode_notification(const uint8_t *msg, size_t len, uint8_t *code, uint8_t *subcode,
                             const uint8_t **data, size_t *dlen, struct peer_err *err);
void peer_encode_route_refresh(struct buf *out, uint8_t family);
int peer_decode_route_refresh(const uint8_t *msg, size_t len, uint8_t *family, struct peer_err *err);
int peer_decode_keepalive(const uint8_t *msg, size_t len, struct peer_err *err);

/* Text for a (code, subcode), for logs and the admin API. */
const char *peer_err_text(uint8_t code, uint8_t subcode);

#endif
