#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROXY_MAX_PAIRS 64

struct bd_proxy {
    int lfd, wake[2];
    uint16_t port, target;
    atomic_int mode;
    atomic_bool stop;
    pthread_t th;
    int a[PROXY_MAX_PAIRS], b[PROXY_MAX_PAIRS]; /* client side, target side; -1: free */
};

static void close_pair(bd_proxy_t *p, int i)
{
    close(p->a[i]);
    close(p->b[i]);
    p->a[i] = p->b[i] = -1;
}

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Copy what is readable from `from` to `to`; false when the pair must close. */
static bool pump(int from, int to)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof(buf));
    if (n <= 0)
        return false;
    for (ssize_t off = 0; off < n;) { /* blocking write: loopback, small test traffic */
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            return false;
        off += w;
    }
    return true;
}

static void *run(void *arg)
{
    bd_proxy_t *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd fds[2 + 2 * PROXY_MAX_PAIRS];
        int map[2 + 2 * PROXY_MAX_PAIRS];
        int nf = 0, mode = atomic_load(&p->mode);
        fds[nf++] = (struct pollfd){p->wake[0], POLLIN, 0};
        fds[nf++] = (struct pollfd){p->lfd, POLLIN, 0};
        if (mode == BD_PROXY_CUT)
            for (int i = 0; i < PROXY_MAX_PAIRS; i++)
                if (p->a[i] >= 0)
                    close_pair(p, i);
        for (int i = 0; i < PROXY_MAX_PAIRS && mode == BD_PROXY_PASS; i++) {
            if (p->a[i] < 0)
                continue;
            map[nf] = i;
            fds[nf++] = (struct pollfd){p->a[i], POLLIN, 0};
            map[nf] = i;
            fds[nf++] = (struct pollfd){p->b[i], POLLIN, 0};
        }
        if (poll(fds, (nfds_t)nf, 200) <= 0)
            continue;
        if (fds[0].revents) {
            char c[16];
            if (read(p->wake[0], c, sizeof(c)) < 0 && errno != EAGAIN)
                break;
        }
        if (fds[1].revents & POLLIN) {
            int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0) {
                int slot = -1;
                for (int i = 0; i < PROXY_MAX_PAIRS && slot < 0; i++)
                    if (p->a[i] < 0)
                        slot = i;
                int t = mode == BD_PROXY_CUT || slot < 0 ? -1 : dial(p->target);
                if (t < 0) {
                    close(c);
                } else {
                    p->a[slot] = c;
                    p->b[slot] = t;
                }
            }
        }
        for (int k = 2; k < nf; k++) {
            int i = map[k];
            if (p->a[i] < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            bool from_a = fds[k].fd == p->a[i];
            if (!pump(fds[k].fd, from_a ? p->b[i] : p->a[i]))
                close_pair(p, i);
        }
    }
    return NULL;
}

int bd_proxy_start(uint16_t target_port, bd_proxy_t **out, bd_err_t *err)
{
    bd_proxy_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    for (int i = 0; i < PROXY_MAX_PAIRS; i++)
        p->a[i] = p->b[i] = -1;
    p->target = target_port;
    p->wake[0] = p->wake[1] = -1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(p->lfd, 64) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&sa, &sl) != 0 || pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        goto fail;
    p->port = ntohs(sa.sin_port);
    if (pthread_create(&p->th, NULL, run, p) != 0)
        goto fail;
    *out = p;
    return BD_OK;
fail:
    bd_err_set(err, BD_EIO, "proxy: %s", strerror(errno));
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->wake[0] >= 0) {
        close(p->wake[0]);
        close(p->wake[1]);
    }
    free(p);
    return BD_EIO;
}

uint16_t bd_proxy_port(const bd_proxy_t *p)
{
    return p->port;
}

void bd_proxy_set_mode(bd_proxy_t *p, bd_proxy_mode_t mode)
{
    atomic_store(&p->mode, (int)mode);
    if (write(p->wake[1], "x", 1) < 0) {
        /* the pipe is full: the thread is awake already */
    }
}

void bd_proxy_stop(bd_proxy_t *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stop, true);
    bd_proxy_set_mode(p, BD_PROXY_CUT);
    pthread_join(p->th, NULL);
    for (int i = 0; i < PROXY_MAX_PAIRS; i++)
        if (p->a[i] >= 0)
            close_pair(p, i);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    free(p);
}
