/* Contact-node descriptor passing (rsplib-handoff.h, docs/contact-node.md) against a real
   registrar (address in argv[1]): the three functions' error paths, a plain TCP client passed
   with its first line to a pool element of this process and served there, a pass to a pool
   whose PE does not receive passed sockets, a too-small receive buffer, and the PE's socket
   gone after rspDeletePoolElement. */
#define _GNU_SOURCE
#include <rsplib.h>
#include <rsplib-handoff.h>
#include <stddef.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include "testlib.h"

static const unsigned char POOL[]  = "ContactCPool";
static const unsigned char DEAF[]  = "ContactCDeaf";
#define POOL_LEN (sizeof(POOL) - 1)
#define DEAF_LEN (sizeof(DEAF) - 1)
#define PE_ID    0x0c0ffee1U
#define DEAF_ID  0x0c0ffee2U

static struct PoolElementDescriptor* create_pe(const unsigned char* pool, size_t len, unsigned int id)
{
   struct TagItem tags[4];
   tags[0].Tag = TAG_PoolElement_SocketProtocol; tags[0].Data = IPPROTO_TCP;
   tags[1].Tag = TAG_PoolElement_SocketDomain;   tags[1].Data = AF_INET;
   tags[2].Tag = TAG_PoolElement_Identifier;     tags[2].Data = id;
   tags[3].Tag = TAG_DONE;                       tags[3].Data = 0;
   return rspCreatePoolElement(pool, len, tags);
}

static int is_open(int fd)
{
   return fcntl(fd, F_GETFD) >= 0;
}

/* A connected loopback TCP pair: *client and *server (the contact's accepted socket). */
static int tcp_pair(int* client, int* server)
{
   struct sockaddr_in sin;
   socklen_t          len = sizeof(sin);
   int                l = socket(AF_INET, SOCK_STREAM, 0);
   memset(&sin, 0, sizeof(sin));
   sin.sin_family      = AF_INET;
   sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
   if (l < 0 || bind(l, (struct sockaddr*)&sin, sizeof(sin)) != 0 || listen(l, 1) != 0 ||
       getsockname(l, (struct sockaddr*)&sin, &len) != 0) {
      return -1;
   }
   *client = socket(AF_INET, SOCK_STREAM, 0);
   if (*client < 0 || connect(*client, (struct sockaddr*)&sin, sizeof(sin)) != 0) {
      return -1;
   }
   *server = accept(l, NULL, NULL);
   close(l);
   return (*server >= 0) ? 0 : -1;
}

/* Connects to a PE's abstract socket by its documented name
   "\0rsplib-handoff/<pool handle hex>/<PE id %08x>"; the connect() result (0 or errno). */
static int connect_by_name(const unsigned char* pool, size_t len, unsigned int id)
{
   struct sockaddr_un sun;
   size_t             i, n;
   int                fd, rc;
   memset(&sun, 0, sizeof(sun));
   sun.sun_family = AF_UNIX;
   n = 1 + (size_t)sprintf(sun.sun_path + 1, "rsplib-handoff/");
   for (i = 0; i < len; i++) {
      n += (size_t)sprintf(sun.sun_path + n, "%02x", pool[i]);
   }
   n += (size_t)sprintf(sun.sun_path + n, "/%08x", id);
   fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
   rc = connect(fd, (struct sockaddr*)&sun, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
   rc = (rc == 0) ? 0 : errno;
   close(fd);
   return rc;
}

static ssize_t read_line(int fd, char* buf, size_t len)
{
   size_t got = 0;
   while (got < len - 1) {
      struct pollfd p;
      ssize_t       n;
      p.fd = fd; p.events = POLLIN; p.revents = 0;
      if (poll(&p, 1, 5000) <= 0) {
         break;
      }
      n = recv(fd, buf + got, 1, 0);
      if (n <= 0) {
         break;
      }
      got++;
      if (buf[got - 1] == '\n') {
         break;
      }
   }
   buf[got] = 0;
   return (ssize_t)got;
}

int main(int argc, char** argv)
{
   static char                   big[65537];
   struct PoolElementDescriptor* ped;
   struct PoolElementDescriptor* deaf;
   struct TagItem                tags[2];
   char                          buf[128];
   size_t                        size;
   int                           passFd, client, server, passed, i;
   unsigned int                  pe;

   /* Before rspInitialize: no instance, and NULL descriptors. */
   CHECK(tcp_pair(&client, &server) == 0);
   errno = 0;
   CHECK_EQ(rspPassSocketToPool(POOL, POOL_LEN, server, "x\n", 2, NULL), 0);
   CHECK_EQ(errno, EINVAL);
   CHECK(is_open(server));
   errno = 0;
   CHECK_EQ(rspPoolElementAcceptPassedSockets(NULL), -1);
   CHECK_EQ(errno, EINVAL);
   size = sizeof(buf);
   errno = 0;
   CHECK_EQ(rspPoolElementReceivePassedSocket(NULL, buf, &size, NULL), -1);
   CHECK_EQ(errno, EINVAL);

   if (argc < 2) {
      fprintf(stderr, "usage: %s REGISTRAR\n", argv[0]);
      return 1;
   }
   CHECK_EQ(rspInitialize(NULL), RSPERR_OKAY);
   CHECK_EQ(rspAddStaticRegistrar(argv[1]), RSPERR_OKAY);

   /* Bad arguments to rspPassSocketToPool: each an error, the socket still ours. */
   errno = 0;
   CHECK_EQ(rspPassSocketToPool(NULL, 4, server, NULL, 0, NULL), 0);
   CHECK_EQ(errno, EINVAL);
   errno = 0;
   CHECK_EQ(rspPassSocketToPool(POOL, 0, server, NULL, 0, NULL), 0);
   CHECK_EQ(errno, EINVAL);
   memset(big, 'x', sizeof(big));
   errno = 0;
   CHECK_EQ(rspPassSocketToPool((const unsigned char*)big, 33, server, NULL, 0, NULL), 0);
   CHECK_EQ(errno, EINVAL);
   errno = 0;
   CHECK_EQ(rspPassSocketToPool(POOL, POOL_LEN, server, NULL, 5, NULL), 0);
   CHECK_EQ(errno, EINVAL);
   errno = 0;
   CHECK_EQ(rspPassSocketToPool(POOL, POOL_LEN, server, big, sizeof(big), NULL), 0);
   CHECK_EQ(errno, EMSGSIZE);
   errno = 0;
   CHECK_EQ(rspPassSocketToPool(POOL, POOL_LEN, -1, NULL, 0, NULL), 0);
   CHECK_EQ(errno, EBADF);
   /* A pool nobody registered in. */
   errno = 0;
   CHECK_EQ(rspPassSocketToPool((const unsigned char*)"NoSuchPool", 10, server, "x\n", 2, NULL), 0);
   CHECK_EQ(errno, ENOENT);
   CHECK(is_open(server));

   /* The worker PE. */
   ped = create_pe(POOL, POOL_LEN, PE_ID);
   CHECK(ped != NULL);
   if (ped == NULL) {
      rspCleanUp();
      return TEST_SUMMARY();
   }
   CHECK_EQ(connect_by_name(POOL, POOL_LEN, PE_ID), ECONNREFUSED);  /* not yet receiving */
   passFd = rspPoolElementAcceptPassedSockets(ped);
   CHECK(passFd >= 0);
   CHECK_EQ(rspPoolElementAcceptPassedSockets(ped), passFd);         /* the same descriptor */
   /* Nothing passed yet: a zero timeout says so. */
   tags[0].Tag = TAG_RspIO_Timeout; tags[0].Data = 0;
   tags[1].Tag = TAG_DONE;          tags[1].Data = 0;
   size = sizeof(buf);
   errno = 0;
   CHECK_EQ(rspPoolElementReceivePassedSocket(ped, buf, &size, tags), -1);
   CHECK_EQ(errno, EAGAIN);
   size = 10;
   errno = 0;
   CHECK_EQ(rspPoolElementReceivePassedSocket(ped, NULL, &size, tags), -1);
   CHECK_EQ(errno, EINVAL);
   errno = 0;
   CHECK_EQ(rspPoolElementReceivePassedSocket(ped, buf, NULL, tags), -1);
   CHECK_EQ(errno, EINVAL);

   /* The contact's part: the client's first line was read, then socket and line are passed;
      the client sends more meanwhile. */
   CHECK(send(client, "hello contact\nand more", 22, 0) == 22);
   CHECK(read_line(server, buf, sizeof(buf)) == 14);
   pe = rspPassSocketToPool(POOL, POOL_LEN, server, "hello contact\n", 14, NULL);
   CHECK_EQ(pe, PE_ID);
   CHECK(!is_open(server));  /* the library closed the contact's copy */
   CHECK(send(client, " after the pass\n", 16, 0) == 16);

   /* The worker's part: a too-small buffer first (the client is kept), then the real one. */
   {
      struct pollfd p;
      p.fd = passFd; p.events = POLLIN; p.revents = 0;
      CHECK(poll(&p, 1, 5000) == 1);
   }
   size = 4;
   errno = 0;
   CHECK_EQ(rspPoolElementReceivePassedSocket(ped, buf, &size, tags), -1);
   CHECK_EQ(errno, EMSGSIZE);
   CHECK_EQ(size, 14);
   size = sizeof(buf);
   passed = rspPoolElementReceivePassedSocket(ped, buf, &size, tags);
   CHECK(passed >= 0);
   CHECK_EQ(size, 14);
   CHECK(memcmp(buf, "hello contact\n", 14) == 0);
   if (passed >= 0) {
      CHECK(fcntl(passed, F_GETFD) == FD_CLOEXEC);
      /* The rest of the stream, in order, as the client sent it. */
      CHECK(read_line(passed, buf, sizeof(buf)) == 24);
      CHECK(strcmp(buf, "and more after the pass\n") == 0);
      CHECK(send(passed, "served by the worker\n", 21, 0) == 21);
      CHECK(read_line(client, buf, sizeof(buf)) == 21);
      CHECK(strcmp(buf, "served by the worker\n") == 0);
      close(passed);
   }
   close(client);

   /* A pool whose only PE does not receive passed sockets: refused after a few tries, and the
      socket stays the caller's. */
   deaf = create_pe(DEAF, DEAF_LEN, DEAF_ID);
   CHECK(deaf != NULL);
   CHECK(tcp_pair(&client, &server) == 0);
   errno = 0;
   CHECK_EQ(rspPassSocketToPool(DEAF, DEAF_LEN, server, NULL, 0, NULL), 0);
   CHECK_EQ(errno, ECONNREFUSED);
   CHECK(is_open(server));
   close(server);
   close(client);

   /* Several passes in a row, received in order (each a connection of its own). */
   for (i = 0; i < 5; i++) {
      char line[32];
      int  n = sprintf(line, "client %d\n", i);
      CHECK(tcp_pair(&client, &server) == 0);
      CHECK_EQ(rspPassSocketToPool(POOL, POOL_LEN, server, line, (size_t)n, NULL), PE_ID);
      tags[0].Data = 5000000;
      size = sizeof(buf);
      passed = rspPoolElementReceivePassedSocket(ped, buf, &size, tags);
      CHECK(passed >= 0);
      CHECK(size == (size_t)n && memcmp(buf, line, size) == 0);
      if (passed >= 0) {
         close(passed);
      }
      /* The worker closed the last copy: the client reads end-of-file. */
      CHECK(read_line(client, buf, sizeof(buf)) == 0);
      close(client);
   }

   /* Deleting the PE closes its socket: its name is gone. */
   CHECK_EQ(connect_by_name(POOL, POOL_LEN, PE_ID), 0);
   rspDeletePoolElement(ped, NULL);
   CHECK_EQ(connect_by_name(POOL, POOL_LEN, PE_ID), ECONNREFUSED);
   if (deaf != NULL) {
      rspDeletePoolElement(deaf, NULL);
   }
   rspCleanUp();
   return TEST_SUMMARY();
}
