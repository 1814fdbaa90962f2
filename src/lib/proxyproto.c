/*
 * proxyproto -- see proxyproto.h.
 */
#include "lib/proxyproto.h"

#include <arpa/inet.h>
#include <string.h>

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

int proxy_v2_parse(const uint8_t *data, size_t len, struct net_addr *src, struct net_addr *dst,
                   int *has_addr)
{
    *has_addr = 0;
    /* Reject as soon as a prefix of the signature is wrong, so a client
     * speaking anything else is refused without waiting. */
    size_t n = len < sizeof(sig) ? len : sizeof(sig);
    if (memcmp(data, sig, n) != 0)
        return -1;
    if (len < 16)
        return 0;
    uint8_t ver_cmd = data[12], fam = data[13];
    size_t body = (size_t)data[14] << 8 | data[15];
    if ((ver_cmd & 0xF0) != 0x20 || ((ver_cmd & 0x0F) != 0 && (ver_cmd & 0x0F) != 1))
        return -1;
    if (16 + body > PROXY_V2_MAX)
        return -1;
    int local = (ver_cmd & 0x0F) == 0;
    size_t need = 0;
    if (fam == 0x11)
        need = 12;
    else if (fam == 0x21)
        need = 36;
    else if (fam != 0x00 && !local)
        return -1; /* UDP, UNIX: not for a TCP service */
    if (body < need)
        return -1;
    if (len < 16 + body)
        return 0;
    if (local || fam == 0x00)
        return (int)(16 + body);
    const uint8_t *a = data + 16;
    memset(src, 0, sizeof(*src));
    memset(dst, 0, sizeof(*dst));
    if (fam == 0x11) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&src->ss, *d4 = (struct sockaddr_in *)&dst->ss;
        s4->sin_family = d4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a, 4);
        memcpy(&d4->sin_addr, a + 4, 4);
        memcpy(&s4->sin_port, a + 8, 2);
        memcpy(&d4->sin_port, a + 10, 2);
        src->len = dst->len = sizeof(struct sockaddr_in);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&src->ss, *d6 = (struct sockaddr_in6 *)&dst->ss;
        s6->sin6_family = d6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a, 16);
        memcpy(&d6->sin6_addr, a + 16, 16);
        memcpy(&s6->sin6_port, a + 32, 2);
        memcpy(&d6->sin6_port, a + 34, 2);
        src->len = dst->len = sizeof(struct sockaddr_in6);
    }
    *has_addr = 1;
    return (int)(16 + body);
}

int proxy_v2_write(const struct net_addr *src, const struct net_addr *dst, uint8_t *out,
                   size_t outlen)
{
    int fam = src->ss.ss_family;
    size_t body = fam == AF_INET ? 12 : fam == AF_INET6 ? 36 : 0;
    if (body == 0 || dst->ss.ss_family != fam || outlen < 16 + body)
        return -1;
    memcpy(out, sig, sizeof(sig));
    out[12] = 0x21;
    out[13] = fam == AF_INET ? 0x11 : 0x21;
    out[14] = 0;
    out[15] = (uint8_t)body;
    uint8_t *a = out + 16;
    if (fam == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&src->ss;
        const struct sockaddr_in *d4 = (const struct sockaddr_in *)&dst->ss;
        memcpy(a, &s4->sin_addr, 4);
        memcpy(a + 4, &d4->sin_addr, 4);
        memcpy(a + 8, &s4->sin_port, 2);
        memcpy(a + 10, &d4->sin_port, 2);
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&src->ss;
        const struct sockaddr_in6 *d6 = (const struct sockaddr_in6 *)&dst->ss;
        memcpy(a, &s6->sin6_addr, 16);
        memcpy(a + 16, &d6->sin6_addr, 16);
        memcpy(a + 32, &s6->sin6_port, 2);
        memcpy(a + 34, &d6->sin6_port, 2);
    }
    return (int)(16 + body);
}
