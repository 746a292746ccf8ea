/* echo-pe: a Basic Mode pool element — an echo server that registers itself in a pool.
   It opens its own TCP (or SCTP) listening socket, registers it with rspRegister(),
   re-registers periodically, serves its clients with rspSelect() and answers every line
   with "[PE 0x<id>] <line>", so that a pool user can see which pool element answered.
   SIGINT/SIGTERM deregister it and clean up.

   Build: cc echo-pe.c $(pkg-config --cflags --libs rsplib) -o echo-pe
   Usage: echo-pe [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-local=ADDR] [-port=N]
                  [-policy=roundrobin|wrr:W|random|leastused:LOAD] [-sctp]
                  [-identifier=0x...] [-reregister=MS]
   LOAD is 0..0xffffff (the classic 24-bit fraction) or a percentage such as 25%. */
#include <rsplib.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define LINE_SIZE   1024

struct Client {
   int    Socket;
   size_t Fill;
   char   Buffer[LINE_SIZE];
};

static volatile sig_atomic_t gStop = 0;

static void onSignal(int sig)
{
   (void)sig;
   gStop = 1;
}

static unsigned long long now(void)
{
   struct timeval tv;
   gettimeofday(&tv, NULL);
   return ((unsigned long long)tv.tv_sec * 1000000ULL) + (unsigned long long)tv.tv_usec;
}

static const char* addressToString(const union sockaddr_union* a, char* buf, size_t size)
{
   char host[INET6_ADDRSTRLEN] = "?";
   if (a->sa.sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &a->in6.sin6_addr, host, sizeof(host));
      snprintf(buf, size, "[%s]:%u", host, (unsigned int)ntohs(a->in6.sin6_port));
   }
   else {
      inet_ntop(AF_INET, &a->in.sin_addr, host, sizeof(host));
      snprintf(buf, size, "%s:%u", host, (unsigned int)ntohs(a->in.sin_port));
   }
   return buf;
}

static int parseLocal(const char* s, unsigned short port, union sockaddr_union* a)
{
   memset(a, 0, sizeof(*a));
   if (inet_pton(AF_INET, s, &a->in.sin_addr) == 1) {
      a->in.sin_family = AF_INET;
      a->in.sin_port   = htons(port);
      return 1;
   }
   if (inet_pton(AF_INET6, s, &a->in6.sin6_addr) == 1) {
      a->in6.sin6_family = AF_INET6;
      a->in6.sin6_port   = htons(port);
      return 1;
   }
   return 0;
}

/* -policy=...: fills the policy tags, returns 0 for an unknown policy. */
static int parsePolicy(const char* s, struct TagItem* tags)
{
   unsigned long value = 0;
   const char*   colon = strchr(s, ':');
   if (colon != NULL) {
      char* end;
      value = strtoul(colon + 1, &end, 0);
      if (*end == '%') {
         value = (value > 100) ? 0xffffff : (value * 0xffffffUL) / 100;
      }
   }
   tags[0].Tag = TAG_PoolPolicy_Type;
   tags[1].Tag = TAG_PoolPolicy_Parameter_Weight;
   tags[1].Data = 1;
   tags[2].Tag = TAG_PoolPolicy_Parameter_Load;
   tags[2].Data = 0;
   if (strcmp(s, "roundrobin") == 0) {
      tags[0].Data = PPT_ROUNDROBIN;
   }
   else if (strncmp(s, "wrr:", 4) == 0) {
      tags[0].Data = PPT_WEIGHTED_ROUNDROBIN;
      tags[1].Data = value;
   }
   else if (strcmp(s, "random") == 0) {
      tags[0].Data = PPT_RANDOM;
   }
   else if (strncmp(s, "leastused:", 10) == 0) {
      tags[0].Data = PPT_LEASTUSED;
      tags[2].Data = (value > PEPS_MAX_LOAD) ? PEPS_MAX_LOAD : value;
   }
   else {
      return 0;
   }
   return 1;
}

static void closeClient(struct Client* c, const char* why)
{
   printf("client on socket %d %s\n", c->Socket, why);
   fflush(stdout);
   close(c->Socket);
   c->Socket = -1;
   c->Fill   = 0;
}

/* Sends one answer: the prefix, then the data (a line or, on SCTP, one message). */
static int answer(int sd, uint32_t peID, const char* data, size_t length)
{
   char   reply[LINE_SIZE + 32];
   int    n = snprintf(reply, sizeof(reply), "[PE 0x%08x] ", peID);
   size_t total;
   if (length > sizeof(reply) - (size_t)n) {
      length = sizeof(reply) - (size_t)n;
   }
   memcpy(reply + n, data, length);
   total = (size_t)n + length;
   return (send(sd, reply, total, MSG_NOSIGNAL) == (ssize_t)total);
}

int main(int argc, char** argv)
{
   const char*                poolHandle  = "EchoPool";
   const char*                local       = "127.0.0.1";
   const char*                registrars[16];
   size_t                     registrarCount = 0;
   unsigned long              port        = 0;
   unsigned long              identifier  = 0;
   unsigned long              reregister  = 5000;
   int                        useSCTP     = 0;
   struct TagItem             tags[8];
   union sockaddr_union       address;
   socklen_t                  addressLength;
   struct EndpointAddressInfo eai;
   struct Client              clients[MAX_CLIENTS];
   struct sigaction           action;
   unsigned long long         nextRegistration;
   char                       text[INET6_ADDRSTRLEN + 16];
   unsigned int               result;
   size_t                     i;
   int                        listenSocket;
   int                        on = 1;
   int                        a;

   setvbuf(stdout, NULL, _IOLBF, 0);
   memset(tags, 0, sizeof(tags));
   parsePolicy("roundrobin", tags);
   for (a = 1; a < argc; a++) {
      if (strncmp(argv[a], "-registrar=", 11) == 0) {
         if (registrarCount < sizeof(registrars) / sizeof(registrars[0])) {
            registrars[registrarCount++] = argv[a] + 11;
         }
      }
      else if (strncmp(argv[a], "-poolhandle=", 12) == 0) {
         poolHandle = argv[a] + 12;
      }
      else if (strncmp(argv[a], "-policy=", 8) == 0) {
         if (!parsePolicy(argv[a] + 8, tags)) {
            fprintf(stderr, "echo-pe: unknown policy \"%s\"\n", argv[a] + 8);
            return 1;
         }
      }
      else if (strncmp(argv[a], "-port=", 6) == 0) {
         port = strtoul(argv[a] + 6, NULL, 0);
      }
      else if (strncmp(argv[a], "-local=", 7) == 0) {
         local = argv[a] + 7;
      }
      else if (strcmp(argv[a], "-sctp") == 0) {
         useSCTP = 1;
      }
      else if (strncmp(argv[a], "-identifier=", 12) == 0) {
         identifier = strtoul(argv[a] + 12, NULL, 0);
      }
      else if (strncmp(argv[a], "-reregister=", 12) == 0) {
         reregister = strtoul(argv[a] + 12, NULL, 0);
         if (reregister < 100) {
            reregister = 100;
         }
      }
      else {
         fprintf(stderr,
                 "Usage: %s [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-local=ADDR] [-port=N]\n"
                 "          [-policy=roundrobin|wrr:W|random|leastused:LOAD] [-sctp]\n"
                 "          [-identifier=0x...] [-reregister=MS]\n", argv[0]);
         return 1;
      }
   }
   if ((port > 65535) || (strlen(poolHandle) < 1)) {
      fprintf(stderr, "echo-pe: bad -port or -poolhandle\n");
      return 1;
   }
   /* Registration life: three re-registration intervals plus 3 s, in µs. */
   tags[3].Tag  = TAG_PoolElement_RegistrationLife;
   tags[3].Data = (3 * reregister + 3000) * 1000;
   tags[4].Tag  = TAG_DONE;

   /* Our own echo socket. */
   if (!parseLocal(local, (unsigned short)port, &address)) {
      fprintf(stderr, "echo-pe: bad -local address \"%s\"\n", local);
      return 1;
   }
   listenSocket = socket(address.sa.sa_family, SOCK_STREAM, useSCTP ? IPPROTO_SCTP : IPPROTO_TCP);
   if (listenSocket < 0) {
      perror(useSCTP ? "echo-pe: SCTP socket (does the kernel have SCTP?)" : "echo-pe: socket");
      return 1;
   }
   setsockopt(listenSocket, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
   if ((bind(listenSocket, &address.sa,
             (address.sa.sa_family == AF_INET6) ? sizeof(address.in6) : sizeof(address.in)) != 0) ||
       (listen(listenSocket, 16) != 0)) {
      perror("echo-pe: bind/listen");
      close(listenSocket);
      return 1;
   }
   memset(&address, 0, sizeof(address));
   addressLength = sizeof(address);
   if (getsockname(listenSocket, &address.sa, &addressLength) != 0) {
      perror("echo-pe: getsockname");
      close(listenSocket);
      return 1;
   }
   printf("echo socket: %s over %s\n", addressToString(&address, text, sizeof(text)),
          useSCTP ? "SCTP" : "TCP");

   /* The library. */
   if (rspInitialize(NULL) != 0) {
      fprintf(stderr, "echo-pe: rspInitialize() failed\n");
      close(listenSocket);
      return 1;
   }
   for (i = 0; i < registrarCount; i++) {
      result = rspAddStaticRegistrar(registrars[i]);
      if (result != RSPERR_OKAY) {
         fprintf(stderr, "echo-pe: bad registrar \"%s\": %s\n", registrars[i],
                 rspGetErrorDescription(result));
         rspCleanUp();
         close(listenSocket);
         return 1;
      }
   }

   memset(&eai, 0, sizeof(eai));
   eai.ai_family   = address.sa.sa_family;
   eai.ai_socktype = SOCK_STREAM;
   eai.ai_protocol = useSCTP ? IPPROTO_SCTP : IPPROTO_TCP;
   eai.ai_addrlen  = sizeof(union sockaddr_union);
   eai.ai_addrs    = 1;
   eai.ai_addr     = &address;
   eai.ai_next     = NULL;
   eai.ai_pe_id    = (uint32_t)identifier;
   result = rspRegister((const unsigned char*)poolHandle, strlen(poolHandle), &eai, tags);
   if (result != RSPERR_OKAY) {
      fprintf(stderr, "echo-pe: registration in pool \"%s\" failed: %s (0x%04x)\n",
              poolHandle, rspGetErrorDescription(result), result);
      rspCleanUp();
      close(listenSocket);
      return 1;
   }
   identifier = eai.ai_pe_id;   /* chosen by the library if it was 0 */
   printf("registered PE 0x%08x in pool \"%s\" (re-registration every %lu ms)\n",
          eai.ai_pe_id, poolHandle, reregister);
   nextRegistration = now() + reregister * 1000ULL;

   memset(&action, 0, sizeof(action));
   action.sa_handler = onSignal;
   sigemptyset(&action.sa_mask);
   sigaction(SIGINT, &action, NULL);
   sigaction(SIGTERM, &action, NULL);

   for (i = 0; i < MAX_CLIENTS; i++) {
      clients[i].Socket = -1;
      clients[i].Fill   = 0;
   }

   while (!gStop) {
      fd_set             readfds;
      struct timeval     timeout;
      unsigned long long t = now();
      unsigned long long wait;
      int                maxfd = listenSocket;
      int                ready;

      if (t >= nextRegistration) {
         result = rspRegister((const unsigned char*)poolHandle, strlen(poolHandle), &eai, tags);
         if (result == RSPERR_OKAY) {
            printf("re-registered PE 0x%08x\n", eai.ai_pe_id);
         }
         else {
            printf("re-registration of PE 0x%08x failed: %s (0x%04x)\n",
                   (unsigned int)identifier, rspGetErrorDescription(result), result);
            /* rspRegister() resets the id on failure: keep ours for the next try. */
            eai.ai_pe_id = (uint32_t)identifier;
         }
         nextRegistration = now() + reregister * 1000ULL;
         continue;
      }

      FD_ZERO(&readfds);
      FD_SET(listenSocket, &readfds);
      for (i = 0; i < MAX_CLIENTS; i++) {
         if (clients[i].Socket >= 0) {
            FD_SET(clients[i].Socket, &readfds);
            if (clients[i].Socket > maxfd) {
               maxfd = clients[i].Socket;
            }
         }
      }
      /* At most 500 ms, so that a signal taken by the library's thread is seen soon. */
      wait = nextRegistration - t;
      if (wait > 500000) {
         wait = 500000;
      }
      timeout.tv_sec  = (time_t)(wait / 1000000);
      timeout.tv_usec = (suseconds_t)(wait % 1000000);
      ready = rspSelect(maxfd + 1, &readfds, NULL, NULL, &timeout);
      if (ready < 0) {
         if (errno != EINTR) {
            perror("echo-pe: rspSelect");
            break;
         }
         continue;
      }
      if (ready == 0) {
         continue;
      }

      if (FD_ISSET(listenSocket, &readfds)) {
         union sockaddr_union peer;
         socklen_t            peerLength = sizeof(peer);
         int                  sd = accept(listenSocket, &peer.sa, &peerLength);
         if (sd >= 0) {
            for (i = 0; i < MAX_CLIENTS; i++) {
               if (clients[i].Socket < 0) {
                  break;
               }
            }
            if ((i == MAX_CLIENTS) || (sd >= FD_SETSIZE)) {
               printf("too many clients, refusing one\n");
               close(sd);
            }
            else {
               clients[i].Socket = sd;
               clients[i].Fill   = 0;
               printf("client on socket %d connected from %s\n", sd,
                      addressToString(&peer, text, sizeof(text)));
            }
         }
      }

      for (i = 0; i < MAX_CLIENTS; i++) {
         struct Client* c = &clients[i];
         ssize_t        received;
         char*          newline;
         if ((c->Socket < 0) || !FD_ISSET(c->Socket, &readfds)) {
            continue;
         }
         received = recv(c->Socket, c->Buffer + c->Fill, sizeof(c->Buffer) - c->Fill, 0);
         if (received <= 0) {
            closeClient(c, (received == 0) ? "disconnected" : "failed");
            continue;
         }
         if (useSCTP) {
            /* SCTP keeps message boundaries: every message is answered as it is. */
            if (!answer(c->Socket, eai.ai_pe_id, c->Buffer, (size_t)received)) {
               closeClient(c, "failed while sending");
            }
            continue;
         }
         c->Fill += (size_t)received;
         /* TCP: answer every complete line (and a full buffer as one line). */
         while ((c->Socket >= 0) &&
                (((newline = memchr(c->Buffer, '\n', c->Fill)) != NULL) ||
                 (c->Fill == sizeof(c->Buffer)))) {
            size_t length = (newline != NULL) ? (size_t)(newline - c->Buffer) + 1 : c->Fill;
            if (!answer(c->Socket, eai.ai_pe_id, c->Buffer, length)) {
               closeClient(c, "failed while sending");
               break;
            }
            memmove(c->Buffer, c->Buffer + length, c->Fill - length);
            c->Fill -= length;
         }
      }
   }

   printf("stopping: deregistering PE 0x%08x\n", eai.ai_pe_id);
   for (i = 0; i < MAX_CLIENTS; i++) {
      if (clients[i].Socket >= 0) {
         close(clients[i].Socket);
      }
   }
   close(listenSocket);
   result = rspDeregister((const unsigned char*)poolHandle, strlen(poolHandle), eai.ai_pe_id, NULL);
   if (result == RSPERR_OKAY) {
      printf("deregistered PE 0x%08x\n", eai.ai_pe_id);
   }
   else {
      printf("deregistration of PE 0x%08x failed: %s (0x%04x)\n", eai.ai_pe_id,
             rspGetErrorDescription(result), result);
   }
   rspCleanUp();
   return (result == RSPERR_OKAY) ? 0 : 1;
}
