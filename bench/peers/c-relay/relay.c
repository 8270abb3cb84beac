/* The relay the homework's text describes, as a student would write it in C:
 * a pthread per connection, plus one for the second direction; each
 * direction a blocking read()/write() loop on an 8 KiB buffer; end of
 * stream passed on with shutdown(SHUT_WR). TCP_NODELAY is on for both
 * sockets, as httpserver has it; with a fourth argument `nagle` it is left
 * off, as a naive relay leaves it (bench/RESULTS.md measures both). A bench
 * peer only: no timeouts, no limits.
 *
 * Usage: c-relay LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT [nagle]
 */
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *upstream_host;
static const char *upstream_port;
static int nodelay = 1;

struct pipe_ends {
  int from;
  int to;
};

/* Copies from one socket to the other until end of stream or an error. */
static void copy(int from, int to) {
  char buf[8192];
  for (;;) {
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
      break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(to, buf + off, (size_t)(n - off));
      if (w <= 0)
        goto done;
      off += w;
    }
  }
done:
  shutdown(to, SHUT_WR);
}

static void *upstream_to_client(void *arg) {
  struct pipe_ends *p = arg;
  copy(p->from, p->to);
  return NULL;
}

static int connect_upstream(void) {
  struct addrinfo hints = {0}, *res, *ai;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(upstream_host, upstream_port, &hints, &res) != 0)
    return -1;
  int fd = -1;
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
      continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
      break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

static void *handle_connection(void *arg) {
  int client = (int)(long)arg;
  int upstream = connect_upstream();
  if (upstream >= 0) {
    if (nodelay) {
      int one = 1;
      setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    struct pipe_ends back = {upstream, client};
    pthread_t second;
    if (pthread_create(&second, NULL, upstream_to_client, &back) == 0) {
      copy(client, upstream);
      pthread_join(second, NULL);
    }
    close(upstream);
  }
  close(client);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "nagle") != 0)) {
    fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT [nagle]\n", argv[0]);
    return 2;
  }
  nodelay = argc == 4;
  upstream_host = argv[2];
  upstream_port = argv[3];
  signal(SIGPIPE, SIG_IGN);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons((unsigned short)atoi(argv[1]));
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 1024) < 0) {
    perror("c-relay: listen");
    return 1;
  }
  for (;;) {
    int client = accept(listener, NULL, NULL);
    if (client < 0)
      continue;
    pthread_t t;
    if (pthread_create(&t, NULL, handle_connection, (void *)(long)client) == 0)
      pthread_detach(t);
    else
      close(client);
  }
}
