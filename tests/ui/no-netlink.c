/*
 * Preloaded into Chromium by the browser tests (scripts/test-ui.sh builds it).
 *
 * Chromium watches the host's addresses over a NETLINK_ROUTE socket and, when
 * one appears or goes, ends every HTTP/2 connection with ERR_NETWORK_CHANGED.
 * Docker adds and removes addresses whenever a container network is created
 * or removed on the engine the tests share (ours and anyone else's), so pages
 * served over HTTP/2 (nginx in front) lost requests at random. Refusing that
 * one kind of socket makes Chromium take the network as never changing; it
 * keeps working without the watcher.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
    static int (*next)(int, int, int);
    if (domain == AF_NETLINK && protocol == NETLINK_ROUTE) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (!next) next = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    return next ? next(domain, type, protocol) : (errno = ENOSYS, -1);
}
