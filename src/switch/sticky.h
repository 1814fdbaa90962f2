/*
 * sticky -- the sticky client table of the patent (FIG 4, FIG 5): which
 * backend each client address was last sent to, kept until a timer runs
 * out. While an entry lives, new connections from that address go to the
 * same backend (if it is up), so a client whose TLS session state sits on
 * one cache keeps coming back to it even when its ClientHello carries no
 * routable identifier.
 *
 * Entries expire `timeout` after the client's last routed connection
 * (each connection refreshes its entry). The table holds at most
 * max_entries; when full, the least recently refreshed entry makes room.
 * Expired entries are dropped when looked up and by sw_sticky_expire,
 * which the switch calls from a timer; both are O(1) per entry because
 * entries sit in a list ordered by last refresh.
 *
 * Shared by every worker thread behind one mutex held for O(1) work. Keys
 * are hashed with SipHash under a random per-table key, since clients
 * choose their addresses.
 */
#ifndef FERRY_SWITCH_STICKY_H
#define FERRY_SWITCH_STICKY_H

#include <stddef.h>
#include <stdint.h>

#define SW_STICKY_KEY_MAX 16 /* an IPv6 address */

struct sw_sticky;

/* Creates a table. max_entries >= 1, timeout_ms >= 1. */
struct sw_sticky *sw_sticky_create(size_t max_entries, int64_t timeout_ms);
void sw_sticky_destroy(struct sw_sticky *st);
/* Changes the limits (reload); a smaller max evicts the oldest entries now. */
void sw_sticky_configure(struct sw_sticky *st, size_t max_entries, int64_t timeout_ms);

/*
 * The backend identity recorded for addr[0..len) (len <= SW_STICKY_KEY_MAX),
 * or 0 when there is none or it expired by now_ms (monotonic ms).
 */
uint64_t sw_sticky_get(struct sw_sticky *st, const void *addr, size_t len, int64_t now_ms);
/* Records (or refreshes) addr -> backend identity id (non-zero) at now_ms. */
void sw_sticky_put(struct sw_sticky *st, const void *addr, size_t len, uint64_t id, int64_t now_ms);
/* Forgets addr. */
void sw_sticky_remove(struct sw_sticky *st, const void *addr, size_t len);
/* Drops every entry expired by now_ms; returns how many. */
size_t sw_sticky_expire(struct sw_sticky *st, int64_t now_ms);
/* Entries now, and entries expired or evicted since creation. */
size_t sw_sticky_count(struct sw_sticky *st);
uint64_t sw_sticky_expired(struct sw_sticky *st);

/*
 * Calls fn for each entry, newest first, up to max entries (for the admin
 * API): the address bytes, the backend identity and the ms left.
 */
void sw_sticky_walk(struct sw_sticky *st, int64_t now_ms, size_t max,
                    void (*fn)(void *arg, const uint8_t *addr, size_t len, uint64_t id,
                               int64_t left_ms),
                    void *arg);

#endif
