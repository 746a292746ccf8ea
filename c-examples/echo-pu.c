/* echo-pu: a Basic Mode pool user for echo-pe (or any echo pool element).
   It resolves the pool with rspHandleResolution(), connects to the pool element it got,
   sends every line of its standard input and prints the answer. When the connection
   breaks (send or receive error, end of file, no answer in time) it reports the pool
   element with rspReportFailure(), resolves the pool again and sends the same line to the
   next pool element — a bounded number of tries per line.

   Build: cc echo-pu.c $(pkg-config --cflags --libs rsplib) -o echo-pu
   Usage: echo-pu [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-interval=MS] [-tries=N]
   Exit code: 0 if every line was answered. */
#include <rsplib.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define LINE_SIZE        1024
#define ANSWER_TIMEOUT   5000000ULL /* µs */
#define RETRY_DELAY      250        /* ms */

static unsigned long long now(void)
{
   struct timeval tv;
   gettimeofday(&tv, NULL);
   return ((unsigned long long)tv.tv_sec * 1000000ULL) + (unsigned long long)tv.tv_usec;
}

/* Waits, letting the library do its work meanwhile (rspSelect may return early). */
static void pauseMs(unsigned long ms)
{
   const unsigned long long end = now() + ms * 1000ULL;
   unsigned long long       t;
   while ((t = now()) < end) {
      struct timeval timeout;
      timeout.tv_sec  = (time_t)((end - t) / 1000000);
      timeout.tv_usec = (suseconds_t)((end - t) % 1000000);
      rspSelect(0, NULL, NULL, NULL, &timeout);
   }
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

static const char* protocolName(int protocol)
{
   return (protocol == IPPROTO_SCTP) ? "SCTP" : (protocol == IPPROTO_TCP) ? "TCP" : "?";
}

/* Connects to the first address of the resolved pool element; -1 on failure. */
static int connectTo(const struct EndpointAddressInfo* eai)
{
   const union sockaddr_union* a = &eai->ai_addr[0];
   struct timeval              limit;
   int                         sd;
   if (eai->ai_addrs < 1) {
      errno = EINVAL;
      return -1;
   }
   sd = socket(a->sa.sa_family, SOCK_STREAM, eai->ai_protocol);
   if (sd < 0) {
      return -1;
   }
   limit.tv_sec  = 2; /* bounds connect() too */
   limit.tv_usec = 0;
   setsockopt(sd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
   if (connect(sd, &a->sa, (a->sa.sa_family == AF_INET6) ? sizeof(a->in6) : sizeof(a->in)) != 0) {
      const int e = errno;
      close(sd);
      errno = e;
      return -1;
   }
   if (sd >= FD_SETSIZE) {
      close(sd);
      errno = EMFILE;
      return -1;
   }
   return sd;
}

/* Receives one answer (up to a newline, or one SCTP message); 0 = connection broken. */
static int receiveAnswer(int sd, int isSCTP, char* answer, size_t size, const char** why)
{
   const unsigned long long end  = now() + ANSWER_TIMEOUT;
   size_t                   fill = 0;
   while (fill < size - 1) {
      fd_set             readfds;
      struct timeval     timeout;
      unsigned long long t = now();
      ssize_t            received;
      int                ready;
      if (t >= end) {
         *why = "no answer in time";
         return 0;
      }
      FD_ZERO(&readfds);
      FD_SET(sd, &readfds);
      timeout.tv_sec  = (time_t)((end - t) / 1000000);
      timeout.tv_usec = (suseconds_t)((end - t) % 1000000);
      ready = rspSelect(sd + 1, &readfds, NULL, NULL, &timeout);
      if ((ready < 0) && (errno != EINTR)) {
         *why = strerror(errno);
         return 0;
      }
      if ((ready <= 0) || !FD_ISSET(sd, &readfds)) {
         continue;
      }
      received = recv(sd, answer + fill, size - 1 - fill, 0);
      if (received == 0) {
         *why = "connection closed by the PE";
         return 0;
      }
      if (received < 0) {
         if (errno == EINTR) {
            continue;
         }
         *why = strerror(errno);
         return 0;
      }
      fill += (size_t)received;
      if (isSCTP || (answer[fill - 1] == '\n')) {
         break;
      }
   }
   answer[fill] = 0;
   if ((fill > 0) && (answer[fill - 1] == '\n')) {
      answer[fill - 1] = 0;
   }
   return 1;
}

int main(int argc, char** argv)
{
   const char*   poolHandle = "EchoPool";
   const char*   registrars[16];
   size_t        registrarCount = 0;
   unsigned long interval = 0;
   unsigned long maxTries = 20;
   unsigned long lines = 0, answered = 0;
   char          line[LINE_SIZE];
   char          answer[LINE_SIZE + 64];
   char          text[INET6_ADDRSTRLEN + 16];
   uint32_t      peID = 0;
   int           isSCTP = 0;
   int           sd = -1;
   unsigned int  result;
   size_t        i;
   int           a;

   setvbuf(stdout, NULL, _IOLBF, 0);
   for (a = 1; a < argc; a++) {
      if (strncmp(argv[a], "-registrar=", 11) == 0) {
         if (registrarCount < sizeof(registrars) / sizeof(registrars[0])) {
            registrars[registrarCount++] = argv[a] + 11;
         }
      }
      else if (strncmp(argv[a], "-poolhandle=", 12) == 0) {
         poolHandle = argv[a] + 12;
      }
      else if (strncmp(argv[a], "-interval=", 10) == 0) {
         interval = strtoul(argv[a] + 10, NULL, 0);
      }
      else if (strncmp(argv[a], "-tries=", 7) == 0) {
         maxTries = strtoul(argv[a] + 7, NULL, 0);
         if (maxTries < 1) {
            maxTries = 1;
         }
      }
      else {
         fprintf(stderr, "Usage: %s [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-interval=MS] [-tries=N]\n",
                 argv[0]);
         return 1;
      }
   }

   if (rspInitialize(NULL) != 0) {
      fprintf(stderr, "echo-pu: rspInitialize() failed\n");
      return 1;
   }
   for (i = 0; i < registrarCount; i++) {
      result = rspAddStaticRegistrar(registrars[i]);
      if (result != RSPERR_OKAY) {
         fprintf(stderr, "echo-pu: bad registrar \"%s\": %s\n", registrars[i],
                 rspGetErrorDescription(result));
         rspCleanUp();
         return 1;
      }
   }

   while (fgets(line, sizeof(line) - 1, stdin) != NULL) {
      const size_t  length = strlen(line);
      unsigned long tries;
      int           done = 0;
      if ((length == 0) || (line[length - 1] != '\n')) {
         line[length]     = '\n';
         line[length + 1] = 0;
      }
      lines++;

      for (tries = 1; (tries <= maxTries) && !done; tries++) {
         const char* why = NULL;
         if (sd < 0) {
            struct EndpointAddressInfo* eai = NULL;
            result = rspHandleResolution((const unsigned char*)poolHandle, strlen(poolHandle),
                                         &eai, NULL);
            if (result != RSPERR_OKAY) {
               if (result == RSPERR_NOT_FOUND) {
                  printf("pool \"%s\" is empty: no pool element to ask (try %lu of %lu)\n",
                         poolHandle, tries, maxTries);
               }
               else {
                  printf("handle resolution of \"%s\" failed: %s (0x%04x; try %lu of %lu)\n",
                         poolHandle, rspGetErrorDescription(result), result, tries, maxTries);
               }
               pauseMs(RETRY_DELAY);
               continue;
            }
            addressToString(&eai->ai_addr[0], text, sizeof(text));
            sd = connectTo(eai);
            if (sd < 0) {
               printf("PE 0x%08x at %s is unreachable (%s): reporting it\n", eai->ai_pe_id, text,
                      strerror(errno));
               rspReportFailure((const unsigned char*)poolHandle, strlen(poolHandle),
                                eai->ai_pe_id, NULL);
               rspFreeEndpointAddressArray(eai);
               pauseMs(RETRY_DELAY);
               continue;
            }
            peID   = eai->ai_pe_id;
            isSCTP = (eai->ai_protocol == IPPROTO_SCTP);
            printf("connected to PE 0x%08x at %s over %s\n", peID, text,
                   protocolName(eai->ai_protocol));
            rspFreeEndpointAddressArray(eai);
         }

         if (send(sd, line, strlen(line), MSG_NOSIGNAL) != (ssize_t)strlen(line)) {
            why = strerror(errno);
         }
         else if (receiveAnswer(sd, isSCTP, answer, sizeof(answer), &why)) {
            printf("> %s\n", answer);
            answered++;
            done = 1;
            break;
         }
         printf("PE 0x%08x failed (%s): reporting it, trying another one\n", peID, why);
         rspReportFailure((const unsigned char*)poolHandle, strlen(poolHandle), peID, NULL);
         close(sd);
         sd = -1;
         pauseMs(RETRY_DELAY);
      }
      if (!done) {
         printf("giving up on line %lu after %lu tries\n", lines, maxTries);
      }
      if (interval > 0) {
         pauseMs(interval);
      }
   }

   if (sd >= 0) {
      close(sd);
   }
   printf("%lu lines sent, %lu answered\n", lines, answered);
   rspCleanUp();
   return (answered == lines) ? 0 : 1;
}
