/* loadgen: a small echo load generator for tools/bench_server.py (epoll, non-blocking).
 *
 * Opens N TCP connections to HOST:PORT and keeps exactly one message of S bytes in flight
 * on each: send S bytes, wait until S bytes came back, check them, send the next. Runs a
 * warm-up period, then a measured period, and prints one line of key=value figures:
 *
 *   rt=... secs=... rt_per_s=... bytes_checked=... cpu_s=... srv_cpu_s=... conns=... size=...
 *
 * rt counts the round trips completed inside the measured period; bytes_checked counts
 * every echoed byte compared (warm-up included). Each message carries the connection's
 * number and a round-trip counter in its first 16 bytes and a per-connection pattern
 * after them, so a lost, repeated, reordered or extra byte is caught; any mismatch,
 * early close or error exits with status 1. cpu_s is this program's CPU time in the
 * measured period; with -P PID, srv_cpu_s is the CPU time of process PID in the same
 * period (read from /proc/PID/stat), so the caller can tell which side was saturated.
 *
 * No dependencies beyond libc; the benchmark compiles it at run time with `cc -O2`.
 *
 * -c CPU pins this program to CPU; -k CPU,CPU keeps those CPUs from halting when idle
 * (a SCHED_IDLE busy loop on each, see spinner()).
 *
 * Usage: loadgen -p PORT [-H 127.0.0.1] [-n CONNS] [-s SIZE] [-w WARMUP_S] [-d SECS]
 *                [-c CPU] [-P SERVER_PID] [-k CPU,CPU]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    int idx;
    size_t sent; /* bytes of the current message sent */
    size_t rcvd; /* bytes of the current message echoed back and checked */
    int want_out; /* EPOLLOUT armed */
    uint64_t seq;
    unsigned char *tx;
    unsigned char *rx;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of a process, in seconds; -1 when it cannot be read. */
static double cpu_of(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void die(const char *what, int idx)
{
    if (idx >= 0)
        fprintf(stderr, "loadgen: conn %d: %s: %s\n", idx, what, errno ? strerror(errno) : "");
    else
        fprintf(stderr, "loadgen: %s: %s\n", what, errno ? strerror(errno) : "");
    exit(1);
}

static void stamp(struct conn *c, size_t size)
{
    /* the first 16 bytes: connection number and round-trip counter (as far as they fit) */
    unsigned char hdr[16];
    uint64_t idx = (uint64_t)c->idx;
    memcpy(hdr, &idx, 8);
    memcpy(hdr + 8, &c->seq, 8);
    memcpy(c->tx, hdr, size < 16 ? size : 16);
    c->sent = 0;
    c->rcvd = 0;
}

static void set_out(int ep, struct conn *c, int on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl", c->idx);
    c->want_out = on;
}

static void pump_out(int ep, struct conn *c, size_t size)
{
    while (c->sent < size) {
        ssize_t n = send(c->fd, c->tx + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            die("send", c->idx);
        }
        c->sent += (size_t)n;
    }
    set_out(ep, c, c->sent < size);
}

/* A SCHED_IDLE busy loop pinned to `cpu`, in a child that dies with us. It runs only when
 * the CPU would otherwise be idle and yields to any other task at once, so a CPU never
 * halts between two events: in a VM, waking a halted vCPU costs tens to hundreds of
 * microseconds, which would otherwise dominate every round trip. */
static pid_t spinner(int cpu)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    struct sched_param sp = {.sched_priority = 0};
    if (sched_setaffinity(0, sizeof set, &set) < 0 || sched_setscheduler(0, SCHED_IDLE, &sp) < 0)
        _exit(1);
    for (volatile unsigned long i = 0;; i++)
        ;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, nconns = 1, cpu = -1, srv_pid = 0;
    const char *keep_awake = NULL;
    pid_t spinners[64];
    int nspin = 0;
    size_t size = 128;
    double warm = 0.5, secs = 2.0;
    int opt;
    while ((opt = getopt(argc, argv, "H:p:n:s:w:d:c:P:k:")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'n': nconns = atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 'w': warm = atof(optarg); break;
        case 'd': secs = atof(optarg); break;
        case 'c': cpu = atoi(optarg); break;
        case 'P': srv_pid = atoi(optarg); break;
        case 'k': keep_awake = optarg; break;
        default:
            fprintf(stderr, "usage: %s -p PORT [-H host] [-n conns] [-s size] [-w warmup_s] "
                            "[-d secs] [-c cpu] [-P server_pid] [-k cpu,cpu]\n", argv[0]);
            return 2;
        }
    }
    if (port <= 0 || nconns <= 0 || size == 0 || secs <= 0 || warm < 0) {
        fprintf(stderr, "loadgen: need -p PORT, and positive -n, -s, -d\n");
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0)
            die("sched_setaffinity", -1);
    }

    for (const char *p = keep_awake; p && *p && nspin < 64;) {
        spinners[nspin++] = spinner(atoi(p));
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "loadgen: %s is not an IPv4 address\n", host);
        return 2;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1", -1);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns)
        die("calloc", -1);
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->idx = i;
        c->tx = malloc(size);
        c->rx = malloc(size);
        if (!c->tx || !c->rx)
            die("malloc", i);
        uint32_t x = 2463534242u ^ (uint32_t)(i * 2654435761u); /* xorshift pattern */
        for (size_t k = 0; k < size; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            c->tx[k] = (unsigned char)x;
        }
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            die("socket", i);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) /* blocking: simple */
            die("connect", i);
        int fl = fcntl(c->fd, F_GETFL);
        if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
            die("fcntl O_NONBLOCK", i);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl", i);
    }

    int maxev = nconns < 1024 ? nconns : 1024;
    struct epoll_event *evs = calloc((size_t)maxev, sizeof *evs);
    unsigned long long rt = 0, checked = 0;
    double t_start = now_s();
    double t_meas = t_start + warm, t_end = t_meas + secs;
    double cpu0 = 0, srv0 = -1;
    int measuring = warm <= 0;
    if (measuring) {
        cpu0 = cpu_self();
        srv0 = srv_pid ? cpu_of(srv_pid) : -1;
    }
    for (int i = 0; i < nconns; i++) {
        stamp(&conns[i], size);
        pump_out(ep, &conns[i], size);
    }
    for (;;) {
        double t = now_s();
        if (!measuring && t >= t_meas) {
            measuring = 1;
            t_meas = t;
            t_end = t + secs;
            cpu0 = cpu_self();
            srv0 = srv_pid ? cpu_of(srv_pid) : -1;
        }
        if (measuring && t >= t_end)
            break;
        double left = (measuring ? t_end : t_meas) - t;
        int ms = (int)(left * 1000) + 1;
        int n = epoll_wait(ep, evs, maxev, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait", -1);
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = evs[e].data.ptr;
            uint32_t m = evs[e].events;
            if (m & EPOLLOUT)
                pump_out(ep, c, size);
            if (!(m & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            for (;;) {
                size_t want = c->sent - c->rcvd; /* never more than was sent */
                if (want == 0) {
                    /* nothing owed: any byte now is an extra one */
                    unsigned char extra;
                    ssize_t x = recv(c->fd, &extra, 1, MSG_PEEK);
                    if (x > 0) {
                        fprintf(stderr, "loadgen: conn %d: bytes echoed that were not sent\n",
                                c->idx);
                        exit(1);
                    }
                    if (x == 0) {
                        fprintf(stderr, "loadgen: conn %d: server closed the connection\n",
                                c->idx);
                        exit(1);
                    }
                    break;
                }
                ssize_t r = recv(c->fd, c->rx + c->rcvd, want, 0);
                if (r < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK)
                        break;
                    if (errno == EINTR)
                        continue;
                    die("recv", c->idx);
                }
                if (r == 0) {
                    fprintf(stderr, "loadgen: conn %d: server closed the connection\n", c->idx);
                    exit(1);
                }
                if (memcmp(c->rx + c->rcvd, c->tx + c->rcvd, (size_t)r) != 0) {
                    fprintf(stderr, "loadgen: conn %d: echoed bytes differ at %zu..%zu of "
                                    "round trip %llu\n", c->idx, c->rcvd, c->rcvd + (size_t)r,
                            (unsigned long long)c->seq);
                    exit(1);
                }
                c->rcvd += (size_t)r;
                checked += (unsigned long long)r;
                if (c->rcvd == size) {
                    if (measuring)
                        rt++;
                    c->seq++;
                    stamp(c, size);
                    pump_out(ep, c, size);
                    break; /* one message per event: fair between connections */
                }
            }
        }
    }
    double t_stop = now_s();
    double cpu1 = cpu_self();
    double srv1 = srv_pid ? cpu_of(srv_pid) : -1;
    double dt = t_stop - t_meas;
    printf("rt=%llu secs=%.6f rt_per_s=%.1f bytes_checked=%llu cpu_s=%.3f srv_cpu_s=%.3f "
           "conns=%d size=%zu\n", rt, dt, (double)rt / dt, checked, cpu1 - cpu0,
           (srv0 >= 0 && srv1 >= 0) ? srv1 - srv0 : -1.0, nconns, size);
    fflush(stdout);
    for (int i = 0; i < nspin; i++) {
        kill(spinners[i], SIGKILL);
        waitpid(spinners[i], NULL, 0);
    }
    for (int i = 0; i < nconns; i++)
        close(conns[i].fd);
    return 0;
}
