/* The kernel's least cost of a registrar's part in one handle resolution: receiving a 40-byte
 * request and sending a 40-byte answer, over loopback TCP or over SCTP (a one-to-many socket
 * as the registrar uses, the client one-to-one). Client and server run in this one thread, so
 * nobody is woken, and every call is timed with the thread's CPU clock: the figure is a floor
 * for a registrar on this kernel (on one host the send also carries the peer's receive
 * processing, as it does for the registrar). A registrar that hands the kernel many messages
 * per call (recvmmsg, sendmmsg) shares only the cost of entering the kernel, not the
 * protocol's work per message.
 *
 *   floor tcp|sctp ADDRESS [ROUNDS]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IPPROTO_SCTP_ 132
#define SCTP_NODELAY_ 3

static double thread_cpu(void)
{
   struct timespec t;
   clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
   return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fail(const char *what)
{
   perror(what);
   exit(1);
}

int main(int argc, char **argv)
{
   if (argc < 3 || (strcmp(argv[1], "tcp") && strcmp(argv[1], "sctp"))) {
      fprintf(stderr, "usage: %s tcp|sctp ADDRESS [ROUNDS]\n", argv[0]);
      return 2;
   }
   const int sctp = !strcmp(argv[1], "sctp");
   const int rounds = argc > 3 ? atoi(argv[3]) : 20000;
   alarm(120);
   struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
   if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
      fprintf(stderr, "%s: not an IPv4 address\n", argv[2]);
      return 2;
   }
   const int one = 1;
   int listener = socket(AF_INET, sctp ? SOCK_SEQPACKET : SOCK_STREAM, sctp ? IPPROTO_SCTP_ : 0);
   if (listener < 0)
      fail("socket");
   if (sctp)
      setsockopt(listener, IPPROTO_SCTP_, SCTP_NODELAY_, &one, sizeof one);
   if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0)
      fail("bind");
   socklen_t len = sizeof addr;
   getsockname(listener, (struct sockaddr *)&addr, &len);
   if (listen(listener, 8) < 0)
      fail("listen");
   int client = socket(AF_INET, SOCK_STREAM, sctp ? IPPROTO_SCTP_ : 0);
   if (client < 0)
      fail("socket");
   setsockopt(client, sctp ? IPPROTO_SCTP_ : IPPROTO_TCP, sctp ? SCTP_NODELAY_ : TCP_NODELAY,
              &one, sizeof one);
   if (connect(client, (struct sockaddr *)&addr, sizeof addr) < 0)
      fail("connect");
   /* TCP: the accepted connection; SCTP: the one-to-many socket, answering by address. */
   int server = sctp ? listener : accept(listener, NULL, NULL);
   if (server < 0)
      fail("accept");
   if (!sctp)
      setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
   char buf[256];
   memset(buf, 0x42, sizeof buf);
   struct sockaddr_in peer;
   socklen_t peer_len = sizeof peer;
   /* What reading the clock itself adds to each interval. */
   double clock_s = 0;
   for (int i = 0; i < 1000; i++) {
      double t0 = thread_cpu();
      clock_s += thread_cpu() - t0;
   }
   clock_s /= 1000;
   double recv_s = 0, send_s = 0;
   for (int i = -100; i < rounds; i++) { /* 100 rounds of warm-up */
      if (send(client, buf, 40, 0) != 40)
         fail("client send");
      peer_len = sizeof peer;
      double t0 = thread_cpu();
      if (recvfrom(server, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len) != 40)
         fail("server receive");
      double t1 = thread_cpu();
      ssize_t sent = sctp ? sendto(server, buf, 40, 0, (struct sockaddr *)&peer, peer_len)
                          : send(server, buf, 40, 0);
      double t2 = thread_cpu();
      if (sent != 40)
         fail("server send");
      if (recv(client, buf, sizeof buf, 0) != 40)
         fail("client receive");
      if (i >= 0) {
         recv_s += t1 - t0 - clock_s;
         send_s += t2 - t1 - clock_s;
      }
   }
   const double us = 1e6 / rounds;
   printf("%s kernel floor (%s, %d rounds): receive %.2f us + send %.2f us = %.2f us per "
          "resolution = at most %.0f resolutions per CPU-second\n",
          argv[1], argv[2], rounds, recv_s * us, send_s * us, (recv_s + send_s) * us,
          1e6 / ((recv_s + send_s) * us));
   return 0;
}
