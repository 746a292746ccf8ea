/* contact-echo: contact-node mode for plain TCP clients on one host (docs/contact-node.md).
 *
 *   contact-echo -contact [-port=PORT] [-address=ADDR] [-registrar=ADDR:PORT]... [-poolhandle=NAME]
 *      the contact: accepts plain TCP clients (telnet, nc: no RSerPool library) on ADDR:PORT
 *      (127.0.0.1:7777; port 0 = any, printed), reads each client's first line and passes the
 *      connected socket together with the bytes read so far to a worker PE of the pool on this
 *      host, chosen by the pool's policy (rspPassSocketToPool). The worker serves the client
 *      directly from then on; the contact has closed its copy.
 *   contact-echo [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-identifier=0xID] [-tcp]
 *      a worker: an Enhanced Mode PE of the pool (rspCreatePoolElement; SCTP where the kernel
 *      has it, -tcp forces TCP) that also accepts passed sockets
 *      (rspPoolElementAcceptPassedSockets). It echoes every line of every plain client,
 *      starting with the line the contact read, prefixed with its PE identifier
 *      ("0123abcd line"), and every message of its RSerPool sessions the same way; many
 *      clients at once, in one thread, with rspSessionSelect (the passed-socket descriptor and
 *      the plain clients go in its read set).
 *
 * Try it (a registrar on 127.0.0.1:3863; RSPLIB_TRANSPORT=tcp where the kernel has no SCTP):
 *   contact-echo -registrar=127.0.0.1:3863 &            (two or three of them)
 *   contact-echo -contact -registrar=127.0.0.1:3863 &
 *   nc 127.0.0.1 7777                                   (type lines; each comes back with the
 *                                                        identifier of the worker serving you)
 *
 * Build: cc contact-echo.c $(pkg-config --cflags --libs rsplib) -o contact-echo
 */
#include <rsplib.h>
#include <rsplib-handoff.h>
#include <arpa/inet.h>
#include <signal.h>

#define MAX_CLIENTS  256  /* plain clients a worker serves at once (and select()'s limit) */
#define MAX_SESSIONS 64   /* RSerPool sessions a worker serves at once */
#define MAX_PENDING  64   /* clients the contact waits for a first line from */
#define LINE_MAX_LEN 4096 /* longest line (first line at the contact, a line at a worker) */

static volatile sig_atomic_t stop = 0;
static void on_signal(int sig) { (void)sig; stop = 1; }

static const char* poolHandle = "ContactEchoPool";

struct Client {
   int    fd;
   size_t len;
   char   buffer[LINE_MAX_LEN];
};

static int send_all(int fd, const char* data, size_t len)
{
   while (len > 0) {
      ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) {
         continue;
      }
      if (n <= 0) {
         return -1;
      }
      data += n;
      len  -= (size_t)n;
   }
   return 0;
}

/* ------------------------------------------------------------------------------ contact */

static int run_contact(const char* address, unsigned short port)
{
   struct Client*     pending;
   size_t             count = 0, i;
   struct sockaddr_in sin;
   socklen_t          sinLen = sizeof(sin);
   int                listener, on = 1;

   memset(&sin, 0, sizeof(sin));
   sin.sin_family = AF_INET;
   sin.sin_port   = htons(port);
   if (inet_pton(AF_INET, address, &sin.sin_addr) != 1) {
      fprintf(stderr, "contact-echo: bad address %s\n", address);
      return 1;
   }
   listener = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
   if (listener < 0 ||
       setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
       bind(listener, (struct sockaddr*)&sin, sizeof(sin)) != 0 ||
       listen(listener, 128) != 0 ||
       getsockname(listener, (struct sockaddr*)&sin, &sinLen) != 0) {
      perror("contact-echo: listening socket");
      return 1;
   }
   pending = (struct Client*)calloc(MAX_PENDING, sizeof(struct Client));
   if (pending == NULL) {
      close(listener);
      return 1;
   }
   printf("[contact] listening on %s:%u for pool \"%s\"\n", address, ntohs(sin.sin_port), poolHandle);
   fflush(stdout);

   while (!stop) {
      struct pollfd fds[MAX_PENDING + 1];
      fds[0].fd = listener; fds[0].events = (count < MAX_PENDING) ? POLLIN : 0; fds[0].revents = 0;
      for (i = 0; i < count; i++) {
         fds[i + 1].fd = pending[i].fd; fds[i + 1].events = POLLIN; fds[i + 1].revents = 0;
      }
      if (poll(fds, (nfds_t)(count + 1), 250) <= 0) {
         continue;
      }
      /* Clients with news: read; a whole first line (or a full buffer, or EOF) ends waiting. */
      for (i = count; i-- > 0; ) {
         struct Client* c = &pending[i];
         int done = 0, closeIt = 0;
         ssize_t n;
         if (!(fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
         }
         n = recv(c->fd, c->buffer + c->len, sizeof(c->buffer) - c->len, 0);
         if (n <= 0) {
            closeIt = 1;
         }
         else {
            c->len += (size_t)n;
            done = (memchr(c->buffer, '\n', c->len) != NULL) || (c->len == sizeof(c->buffer));
         }
         if (done) {
            unsigned int pe = rspPassSocketToPool((const unsigned char*)poolHandle, strlen(poolHandle),
                                                  c->fd, c->buffer, c->len, NULL);
            if (pe != 0) {
               /* The library has closed our copy: the worker owns the client now. */
               printf("[contact] client passed to PE 0x%08x with %u byte(s) already read\n",
                      pe, (unsigned int)c->len);
            }
            else {
               char msg[128];
               snprintf(msg, sizeof(msg), "ERROR: no worker took the connection (%s)\n", strerror(errno));
               printf("[contact] %s", msg);
               send_all(c->fd, msg, strlen(msg));
               closeIt = 1;
            }
         }
         if (closeIt) {
            close(c->fd);
         }
         if (done || closeIt) {
            pending[i] = pending[count - 1];
            count--;
         }
      }
      if (fds[0].revents & POLLIN) {
         int fd = accept(listener, NULL, NULL);
         if (fd >= 0) {
            pending[count].fd  = fd;
            pending[count].len = 0;
            count++;
         }
      }
      fflush(stdout);
   }
   for (i = 0; i < count; i++) {
      close(pending[i].fd);
   }
   free(pending);
   close(listener);
   return 0;
}

/* ------------------------------------------------------------------------------- worker */

/* Echoes the complete lines in c's buffer; keeps the rest. A line longer than the buffer goes
   out in pieces. -1 when the client is gone. */
static int echo_lines(unsigned int identifier, struct Client* c)
{
   char   reply[LINE_MAX_LEN + 16];
   char*  start = c->buffer;
   char*  nl;
   while ((nl = (char*)memchr(start, '\n', c->len - (size_t)(start - c->buffer))) != NULL ||
          (start == c->buffer && c->len == sizeof(c->buffer))) {
      size_t lineLen = (nl != NULL) ? (size_t)(nl - start) + 1 : c->len;
      int    prefix  = snprintf(reply, sizeof(reply), "%08x ", identifier);
      memcpy(reply + prefix, start, lineLen);
      if (send_all(c->fd, reply, (size_t)prefix + lineLen) != 0) {
         return -1;
      }
      start += lineLen;
   }
   c->len -= (size_t)(start - c->buffer);
   memmove(c->buffer, start, c->len);
   return 0;
}

/* Adds data to c's buffer and echoes the lines it completes. -1 when the client is gone. */
static int feed(unsigned int identifier, struct Client* c, const char* data, size_t len)
{
   while (len > 0) {
      size_t part = sizeof(c->buffer) - c->len;
      if (part > len) {
         part = len;
      }
      memcpy(c->buffer + c->len, data, part);
      c->len += part;
      data   += part;
      len    -= part;
      if (echo_lines(identifier, c) != 0) {
         return -1;
      }
   }
   return 0;
}

/* Receives one passed client into c (its socket, and the bytes the contact read, echoed as
   lines). Returns 0, or -1 (errno) when there was none or it failed. */
static int receive_client(struct PoolElementDescriptor* ped, unsigned int identifier, struct Client* c)
{
   struct TagItem tags[2];
   size_t         size = sizeof(c->buffer);
   tags[0].Tag = TAG_RspIO_Timeout; tags[0].Data = 0;
   tags[1].Tag = TAG_DONE;          tags[1].Data = 0;
   c->len = 0;
   c->fd = rspPoolElementReceivePassedSocket(ped, c->buffer, &size, tags);
   if (c->fd < 0 && errno == EMSGSIZE) {
      /* The contact read more than our line buffer holds (up to 64 KiB): take it with a
         buffer of the size the library says, and echo it a buffer at a time. */
      char* big = (char*)malloc(size);
      if (big == NULL) {
         return -1;
      }
      c->fd = rspPoolElementReceivePassedSocket(ped, big, &size, tags);
      if (c->fd >= 0 && feed(identifier, c, big, size) != 0) {
         close(c->fd);
         c->fd = -1;
      }
      free(big);
   }
   else if (c->fd >= 0) {
      c->len = size;
      if (echo_lines(identifier, c) != 0) {
         close(c->fd);
         c->fd = -1;
      }
   }
   if (c->fd >= FD_SETSIZE) {
      close(c->fd);  /* beyond select()'s reach */
      c->fd = -1;
      errno = EMFILE;
   }
   return (c->fd >= 0) ? 0 : -1;
}

static int run_worker(unsigned int identifier, int useTcp)
{
   struct TagItem                tags[6];
   struct PoolElementDescriptor* ped;
   struct SessionDescriptor*     sessions[MAX_SESSIONS];
   unsigned int                  status[MAX_SESSIONS];
   struct Client*                clients;
   size_t                        sessionCount = 0, clientCount = 0, i;
   unsigned long                 passedClients = 0;
   int                           passFd;

   tags[0].Tag = TAG_PoolElement_Identifier;   tags[0].Data = identifier;
   tags[1].Tag = TAG_PoolElement_SocketDomain; tags[1].Data = AF_INET;
   tags[2].Tag = useTcp ? TAG_PoolElement_SocketProtocol : TAG_IGNORE;
   tags[2].Data = IPPROTO_TCP;
   tags[3].Tag = TAG_DONE;                     tags[3].Data = 0;
   ped = rspCreatePoolElement((const unsigned char*)poolHandle, strlen(poolHandle), tags);
   if (ped == NULL) {
      fputs("contact-echo: cannot create the pool element\n", stderr);
      return 1;
   }
   passFd = rspPoolElementAcceptPassedSockets(ped);
   if (passFd < 0) {
      fprintf(stderr, "contact-echo: cannot accept passed sockets: %s\n", strerror(errno));
      rspDeletePoolElement(ped, NULL);
      return 1;
   }
   clients = (struct Client*)calloc(MAX_CLIENTS, sizeof(struct Client));
   if (clients == NULL) {
      rspDeletePoolElement(ped, NULL);
      return 1;
   }
   printf("[worker 0x%08x] serving pool \"%s\", accepting passed sockets\n", identifier, poolHandle);
   fflush(stdout);

   while (!stop) {
      fd_set       readfds;
      int          maxfd = passFd;
      unsigned int pedStatus = RspSelect_Read;
      FD_ZERO(&readfds);
      if (clientCount < MAX_CLIENTS) {
         FD_SET(passFd, &readfds);
      }
      for (i = 0; i < clientCount; i++) {
         FD_SET(clients[i].fd, &readfds);
         if (clients[i].fd > maxfd) {
            maxfd = clients[i].fd;
         }
      }
      for (i = 0; i < sessionCount; i++) {
         status[i] = RspSelect_Read;
      }
      tags[0].Tag = TAG_RspSelect_ReadFDs; tags[0].Data = (tagdata_t)(uintptr_t)&readfds;
      tags[1].Tag = TAG_RspSelect_MaxFD;   tags[1].Data = (tagdata_t)maxfd + 1;
      tags[2].Tag = TAG_DONE;              tags[2].Data = 0;
      if (rspSessionSelect(sessions, status, sessionCount, &ped, &pedStatus, 1, 250000, tags) < 0) {
         continue;
      }

      /* A passed client: its socket and the bytes the contact read (its first line). */
      if (FD_ISSET(passFd, &readfds)) {
         if (receive_client(ped, identifier, &clients[clientCount]) == 0) {
            passedClients++;
            printf("[worker 0x%08x] client #%lu passed\n", identifier, passedClients);
            clientCount++;
         }
         else if (errno != EAGAIN) {
            printf("[worker 0x%08x] receiving a passed client failed: %s\n", identifier, strerror(errno));
         }
      }
      /* Plain clients. */
      for (i = clientCount; i-- > 0; ) {
         struct Client* c = &clients[i];
         ssize_t n;
         if (!FD_ISSET(c->fd, &readfds)) {
            continue;
         }
         n = recv(c->fd, c->buffer + c->len, sizeof(c->buffer) - c->len, 0);
         if (n > 0) {
            c->len += (size_t)n;
         }
         if (n <= 0 || echo_lines(identifier, c) != 0) {
            close(c->fd);
            clients[i] = clients[clientCount - 1];
            clientCount--;
         }
      }
      /* RSerPool sessions: a new one, and messages on the open ones. */
      if ((pedStatus & RspSelect_Read) && sessionCount < MAX_SESSIONS) {
         struct SessionDescriptor* s = rspAcceptSession(ped, NULL);
         if (s != NULL) {
            sessions[sessionCount] = s;
            status[sessionCount] = 0;
            sessionCount++;
         }
      }
      for (i = sessionCount; i-- > 0; ) {
         char    buffer[LINE_MAX_LEN], reply[LINE_MAX_LEN + 16];
         ssize_t n;
         if (!(status[i] & RspSelect_Read)) {
            continue;
         }
         tags[0].Tag = TAG_RspIO_Timeout; tags[0].Data = 0;
         tags[1].Tag = TAG_DONE;          tags[1].Data = 0;
         n = rspSessionRead(sessions[i], buffer, sizeof(buffer), tags);
         if (n > 0) {
            int prefix = snprintf(reply, sizeof(reply), "%08x ", identifier);
            memcpy(reply + prefix, buffer, (size_t)n);
            rspSessionWrite(sessions[i], reply, (size_t)prefix + (size_t)n, NULL);
         }
         else if (n != RspRead_ControlRead && n != RspRead_Timeout) {
            rspDeleteSession(sessions[i], NULL);
            sessions[i] = sessions[sessionCount - 1];
            sessionCount--;
         }
      }
      fflush(stdout);
   }
   for (i = 0; i < clientCount; i++) {
      close(clients[i].fd);
   }
   for (i = 0; i < sessionCount; i++) {
      rspDeleteSession(sessions[i], NULL);
   }
   free(clients);
   rspDeletePoolElement(ped, NULL);  /* also closes passFd */
   printf("[worker 0x%08x] served %lu passed client(s), deregistered\n", identifier, passedClients);
   return 0;
}

int main(int argc, char** argv)
{
   const char*    address = "127.0.0.1";
   unsigned int   identifier = 0;
   unsigned long  port = 7777;
   int            contact = 0, useTcp = 0, rc, i;

   signal(SIGINT, on_signal);
   signal(SIGTERM, on_signal);
   signal(SIGPIPE, SIG_IGN);
   if (rspInitialize(NULL) != RSPERR_OKAY) {
      fputs("contact-echo: rspInitialize failed\n", stderr);
      return 1;
   }
   for (i = 1; i < argc; i++) {
      if (strncmp(argv[i], "-registrar=", 11) == 0) {
         unsigned int e = rspAddStaticRegistrar(argv[i] + 11);
         if (e != RSPERR_OKAY) {
            fprintf(stderr, "contact-echo: bad registrar %s: %s\n", argv[i] + 11, rspGetErrorDescription(e));
            rspCleanUp();
            return 1;
         }
      }
      else if (strncmp(argv[i], "-poolhandle=", 12) == 0) { poolHandle = argv[i] + 12; }
      else if (strncmp(argv[i], "-identifier=", 12) == 0) { identifier = (unsigned int)strtoul(argv[i] + 12, NULL, 0); }
      else if (strncmp(argv[i], "-port=", 6) == 0)        { port = strtoul(argv[i] + 6, NULL, 10); }
      else if (strncmp(argv[i], "-address=", 9) == 0)     { address = argv[i] + 9; }
      else if (strcmp(argv[i], "-contact") == 0)          { contact = 1; }
      else if (strcmp(argv[i], "-tcp") == 0)              { useTcp = 1; }
      else {
         fprintf(stderr, "usage: contact-echo -contact [-port=PORT] [-address=ADDR] [-registrar=ADDR:PORT]... [-poolhandle=NAME]\n"
                         "       contact-echo [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-identifier=0xID] [-tcp]\n");
         rspCleanUp();
         return 1;
      }
   }
   if (port > 65535) {
      fprintf(stderr, "contact-echo: bad port %lu\n", port);
      rspCleanUp();
      return 1;
   }
   if (identifier == 0) {
      identifier = (unsigned int)getpid() | 0x20000000U;
   }
   rc = contact ? run_contact(address, (unsigned short)port) : run_worker(identifier, useTcp);
   rspCleanUp();
   return rc;
}
