/* classic-echo-pe: a Basic Mode echo pool element in the style of the old rsplib demos. It
   makes its own echo socket (SCTP where the kernel has it, TCP otherwise) with bindplus(),
   registers that socket's addresses with rspRegister() and echoes whatever its clients send,
   until Ctrl-C. Logging through the classic -log… options, Ctrl-C through the break detector.

   Build: cc classic-echo-pe.c $(pkg-config --cflags --libs rsplib) -o classic-echo-pe
   Usage: classic-echo-pe [-poolhandle=EchoPool] [-local=0.0.0.0:0] [-protocol=sctp|tcp]
                          [-registrar=addr:port]... [-reregistration=ms] [-logfile=…]
                          [-loglevel=0..10] [-logquiet] [-logappend=…] [-logcolor=on|off]
   The registrar is found by -registrar=, the RSPLIB_REGISTRAR environment variable
   (addr:port) or announces. */
#include <rsplib.h>
#include <loglevel.h>
#include <netutilities.h>
#include <breakdetector.h>
#include <timeutilities.h>

#define MAX_CLIENTS 64

int main(int argc, char** argv)
{
   const char*                poolHandle     = "EchoPool";
   const char*                local          = "0.0.0.0:0";
   const char*                protocolName   = NULL;
   unsigned long long         reregistration = 30000000;   /* µs */
   union sockaddr_union       localAddress;
   union sockaddr_union*      addressArray   = NULL;
   struct EndpointAddressInfo eai;
   struct TagItem             tags[8];
   int                        clients[MAX_CLIENTS];
   size_t                     clientCount    = 0;
   unsigned long long         lastRegistration;
   unsigned int               result;
   int                        protocol       = IPPROTO_SCTP;
   int                        sd             = -1;
   size_t                     addresses;
   size_t                     i;
   int                        n;

   if (rspInitialize(NULL) != RSPERR_OKAY) {
      fprintf(stderr, "ERROR: rspInitialize() failed\n");
      return 1;
   }
   for (n = 1; n < argc; n++) {
      if (!strncmp(argv[n], "-log", 4)) {
         if (!initLogging(argv[n])) {
            fprintf(stderr, "ERROR: bad logging option %s\n", argv[n]);
            return 1;
         }
      }
      else if (!strncmp(argv[n], "-poolhandle=", 12)) {
         poolHandle = &argv[n][12];
      }
      else if (!strncmp(argv[n], "-local=", 7)) {
         local = &argv[n][7];
      }
      else if (!strncmp(argv[n], "-protocol=", 10)) {
         protocolName = &argv[n][10];
      }
      else if (!strncmp(argv[n], "-reregistration=", 16)) {
         reregistration = 1000ULL * strtoull(&argv[n][16], NULL, 10);
      }
      else if (!strncmp(argv[n], "-registrar=", 11)) {
         if (rspAddStaticRegistrar(&argv[n][11]) != RSPERR_OKAY) {
            fprintf(stderr, "ERROR: bad registrar address %s\n", &argv[n][11]);
            return 1;
         }
      }
      else {
         fprintf(stderr, "Usage: %s [-poolhandle=name] [-local=addr:port] [-protocol=sctp|tcp] "
                         "[-registrar=addr:port] [-reregistration=ms] [-log...]\n", argv[0]);
         return 1;
      }
   }
   beginLogging();

   if (!string2address(local, &localAddress)) {
      fprintf(stderr, "ERROR: bad local address %s\n", local);
      return 1;
   }
   /* SCTP where the kernel has it (unless -protocol=tcp), otherwise TCP. */
   if ((protocolName == NULL) || !strcmp(protocolName, "sctp")) {
      sd = ext_socket(localAddress.sa.sa_family, SOCK_STREAM, IPPROTO_SCTP);
      if ((sd < 0) && (protocolName != NULL)) {
         perror("SCTP socket");
         return 1;
      }
   }
   if (sd < 0) {
      protocol = IPPROTO_TCP;
      sd = ext_socket(localAddress.sa.sa_family, SOCK_STREAM, IPPROTO_TCP);
   }
   if (sd < 0) {
      perror("socket");
      return 1;
   }
   if (!bindplus(sd, &localAddress, 1) || (ext_listen(sd, 10) < 0)) {
      perror("bind/listen");
      return 1;
   }

   /* The socket's own addresses (a wildcard bind: all of the host's) are what we register. */
   addresses = getladdrsplus(sd, 0, &addressArray);
   if (addresses == 0) {
      perror("getladdrsplus");
      return 1;
   }
   printf("Echo pool element on %s, pool handle \"%s\", addresses:", (protocol == IPPROTO_SCTP) ? "SCTP" : "TCP", poolHandle);
   for (i = 0; i < addresses; i++) {
      printf(" ");
      fputaddress(&addressArray[i].sa, true, stdout);
   }
   printf("\n");

   memset(&eai, 0, sizeof(eai));
   eai.ai_family   = localAddress.sa.sa_family;
   eai.ai_socktype = SOCK_STREAM;
   eai.ai_protocol = protocol;
   eai.ai_addrlen  = sizeof(union sockaddr_union);
   eai.ai_addrs    = addresses;
   eai.ai_addr     = addressArray;
   eai.ai_next     = NULL;
   eai.ai_pe_id    = 0;
   tags[0].Tag  = TAG_PoolPolicy_Type;
   tags[0].Data = PPT_ROUNDROBIN;
   tags[1].Tag  = TAG_PoolElement_RegistrationLife;
   tags[1].Data = 3 * reregistration;
   tags[2].Tag  = TAG_DONE;
   tags[2].Data = 0;

   result = rspRegister((const unsigned char*)poolHandle, strlen(poolHandle), &eai, tags);
   if (result != RSPERR_OKAY) {
      fprintf(stderr, "ERROR: registration failed: %s\n", rspGetErrorDescription(result));
      return 1;
   }
   lastRegistration = getMicroTime();
   printTimeStamp(stdout);
   printf("Registered as PE $%08x\n", eai.ai_pe_id);
   fflush(stdout);

   installBreakDetector();
   while (!breakDetected()) {
      fd_set         readfds;
      struct timeval timeout;
      int            maxfd = sd;

      FD_ZERO(&readfds);
      FD_SET(sd, &readfds);
      for (i = 0; i < clientCount; i++) {
         FD_SET(clients[i], &readfds);
         maxfd = max(maxfd, clients[i]);
      }
      timeout.tv_sec  = 1;
      timeout.tv_usec = 0;
      n = rspSelect(maxfd + 1, &readfds, NULL, NULL, &timeout);

      if (n > 0) {
         if (FD_ISSET(sd, &readfds)) {
            const int client = ext_accept(sd, NULL, NULL);
            if (client >= 0) {
               if ((clientCount < MAX_CLIENTS) && (client < FD_SETSIZE)) {
                  clients[clientCount++] = client;
                  printTimeStamp(stdout);
                  printf("New client (%u connected)\n", (unsigned int)clientCount);
               }
               else {
                  ext_close(client);
               }
            }
         }
         for (i = 0; i < clientCount; i++) {
            if (FD_ISSET(clients[i], &readfds)) {
               char          buffer[65536];
               const ssize_t received = ext_read(clients[i], buffer, sizeof(buffer));
               if ((received <= 0) || (ext_send(clients[i], buffer, (size_t)received, MSG_NOSIGNAL) < 0)) {
                  ext_close(clients[i]);
                  clients[i] = clients[--clientCount];
                  i--;
                  printTimeStamp(stdout);
                  printf("Client gone (%u connected)\n", (unsigned int)clientCount);
               }
            }
         }
         fflush(stdout);
      }
      else if ((n < 0) && (errno != EINTR)) {
         perror("rspSelect");
         break;
      }

      /* Basic Mode: re-register now and then (this also tells the registrar we are alive). */
      if (getMicroTime() - lastRegistration >= reregistration) {
         result = rspRegister((const unsigned char*)poolHandle, strlen(poolHandle), &eai, tags);
         if (result != RSPERR_OKAY) {
            fprintf(stderr, "WARNING: re-registration failed: %s\n", rspGetErrorDescription(result));
         }
         lastRegistration = getMicroTime();
      }
   }

   printf("Deregistering PE $%08x\n", eai.ai_pe_id);
   rspDeregister((const unsigned char*)poolHandle, strlen(poolHandle), eai.ai_pe_id, NULL);
   for (i = 0; i < clientCount; i++) {
      ext_close(clients[i]);
   }
   ext_close(sd);
   free(addressArray);
   rspCleanUp();
   finishLogging();
   return 0;
}
