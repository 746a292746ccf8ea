/* session-echo: an Enhanced Mode echo service and client written against the classic API.
 *
 *   session-echo pe [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-identifier=0xID] [-tcp]
 *      a pool element with its own socket (SCTP where the kernel has it; -tcp forces TCP),
 *      kept registered by the library; echoes every message prefixed with its identifier and
 *      sends the client a cookie (the number of messages served so far). A client that fails
 *      over to this PE brings its cookie along: the PE prints it and goes on counting from it.
 *   session-echo pu [-registrar=ADDR:PORT]... [-poolhandle=NAME]
 *      reads lines from stdin, sends each to the pool, prints the answer; when its PE fails the
 *      library fails over to another one (echoing the cookie) and the line is sent again.
 *
 * Build: cc session-echo.c $(pkg-config --cflags --libs rsplib) -o session-echo
 */
#include <rsplib.h>
#include <signal.h>

#define MAX_SESSIONS 64

static volatile sig_atomic_t stop = 0;
static void on_signal(int sig) { (void)sig; stop = 1; }

static const char* poolHandle = "EchoPool";

static int setup(int argc, char** argv, unsigned int* identifier, int* useTcp)
{
   int i;
   if (rspInitialize(NULL) != RSPERR_OKAY) {
      fputs("session-echo: rspInitialize failed\n", stderr);
      return -1;
   }
   for (i = 2; i < argc; i++) {
      if (strncmp(argv[i], "-registrar=", 11) == 0) {
         unsigned int rc = rspAddStaticRegistrar(argv[i] + 11);
         if (rc != RSPERR_OKAY) {
            fprintf(stderr, "session-echo: bad registrar %s: %s\n", argv[i] + 11, rspGetErrorDescription(rc));
            return -1;
         }
      }
      else if (strncmp(argv[i], "-poolhandle=", 12) == 0) { poolHandle = argv[i] + 12; }
      else if (strncmp(argv[i], "-identifier=", 12) == 0) { *identifier = (unsigned int)strtoul(argv[i] + 12, NULL, 0); }
      else if (strcmp(argv[i], "-tcp") == 0)             { *useTcp = 1; }
      else { fprintf(stderr, "session-echo: unknown option %s\n", argv[i]); return -1; }
   }
   return 0;
}

static int run_pe(unsigned int identifier, int useTcp)
{
   struct TagItem                tags[6];
   struct PoolElementDescriptor* ped;
   struct SessionDescriptor*     sessions[MAX_SESSIONS];
   unsigned int                  status[MAX_SESSIONS];
   unsigned long                 served[MAX_SESSIONS];
   size_t                        count = 0, i;

   tags[0].Tag = TAG_PoolElement_Identifier;          tags[0].Data = identifier;
   tags[1].Tag = TAG_UserTransport_HasControlChannel; tags[1].Data = 1;
   tags[2].Tag = TAG_PoolElement_SocketDomain;        tags[2].Data = AF_INET;
   tags[3].Tag = useTcp ? TAG_PoolElement_SocketProtocol : TAG_IGNORE;
   tags[3].Data = IPPROTO_TCP;
   tags[4].Tag = TAG_DONE;                            tags[4].Data = 0;
   ped = rspCreatePoolElement((const unsigned char*)poolHandle, strlen(poolHandle), tags);
   if (ped == NULL) {
      fputs("session-echo: cannot create the pool element\n", stderr);
      return 1;
   }
   printf("[PE 0x%08x] serving pool \"%s\"\n", identifier, poolHandle);
   fflush(stdout);

   while (!stop) {
      unsigned int pedStatus = RspSelect_Read;
      for (i = 0; i < count; i++) { status[i] = RspSelect_Read; }
      if (rspSessionSelect(sessions, status, count, &ped, &pedStatus, 1, 250000, NULL) <= 0) {
         continue;
      }
      if ((pedStatus & RspSelect_Read) && count < MAX_SESSIONS) {
         struct SessionDescriptor* s = rspAcceptSession(ped, NULL);
         if (s != NULL) {
            sessions[count] = s; served[count] = 0; status[count] = 0; count++;
            printf("[PE 0x%08x] new session\n", identifier);
         }
      }
      for (i = 0; i < count; i++) {
         char    buffer[1024], reply[1100];
         ssize_t n;
         if (!(status[i] & RspSelect_Read)) {
            continue;
         }
         tags[0].Tag = TAG_RspIO_MsgIsCookieEcho; tags[0].Data = 0;
         tags[1].Tag = TAG_RspIO_Timeout;         tags[1].Data = 0;
         tags[2].Tag = TAG_DONE;                  tags[2].Data = 0;
         n = rspSessionRead(sessions[i], buffer, sizeof(buffer) - 1, tags);
         if (n > 0 && tags[0].Data) {
            buffer[n] = 0;
            served[i] = strtoul(buffer, NULL, 10);
            printf("[PE 0x%08x] a client failed over to us; its cookie says %lu message(s) so far\n",
                   identifier, served[i]);
         }
         else if (n > 0) {
            char cookie[32];
            served[i]++;
            snprintf(reply, sizeof(reply), "[PE 0x%08x #%lu] %.*s", identifier, served[i], (int)n, buffer);
            rspSessionWrite(sessions[i], reply, strlen(reply), NULL);
            snprintf(cookie, sizeof(cookie), "%lu", served[i]);
            rspSessionSendCookie(sessions[i], (const unsigned char*)cookie, strlen(cookie), NULL);
         }
         else if (n != RspRead_ControlRead && n != RspRead_Timeout) {
            printf("[PE 0x%08x] session closed\n", identifier);
            rspDeleteSession(sessions[i], NULL);
            sessions[i] = sessions[count - 1]; served[i] = served[count - 1]; status[i] = status[count - 1];
            count--; i--;
         }
      }
      fflush(stdout);
   }
   for (i = 0; i < count; i++) { rspDeleteSession(sessions[i], NULL); }
   rspDeletePoolElement(ped, NULL);
   printf("[PE 0x%08x] deregistered\n", identifier);
   return 0;
}

static int run_pu(void)
{
   struct SessionDescriptor* session;
   char                      line[1024];
   session = rspCreateSession((const unsigned char*)poolHandle, strlen(poolHandle), NULL, NULL);
   if (session == NULL) {
      fputs("session-echo: cannot create a session\n", stderr);
      return 1;
   }
   while (!stop && fgets(line, sizeof(line), stdin) != NULL) {
      int tries;
      size_t len = strlen(line);
      if (len > 0 && line[len - 1] == '\n') { line[--len] = 0; }
      for (tries = 0; tries < 10; tries++) {
         char           answer[1200];
         ssize_t        n;
         struct TagItem tags[2];
         if (rspSessionWrite(session, line, len, NULL) < 0) {
            printf("[PU] failover while sending, sending again\n");
            continue;
         }
         tags[0].Tag = TAG_RspIO_Timeout; tags[0].Data = 3000000;
         tags[1].Tag = TAG_DONE;          tags[1].Data = 0;
         do {
            n = rspSessionRead(session, answer, sizeof(answer) - 1, tags);
         } while (n == RspRead_ControlRead);
         if (n > 0) {
            answer[n] = 0;
            printf("[PU] %s%s\n", answer, rspSessionHasCookie(session) ? " (cookie stored)" : "");
            break;
         }
         printf("[PU] no answer (%d), %s\n", (int)n, (n == RspRead_Failover) ? "failed over, sending again" : "retrying");
         fflush(stdout);
      }
      fflush(stdout);
   }
   rspDeleteSession(session, NULL);
   return 0;
}

int main(int argc, char** argv)
{
   unsigned int identifier = 0;
   int          useTcp = 0, rc;
   if (argc < 2 || (strcmp(argv[1], "pe") != 0 && strcmp(argv[1], "pu") != 0)) {
      fputs("usage: session-echo pe|pu [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-identifier=0xID] [-tcp]\n", stderr);
      return 1;
   }
   signal(SIGINT, on_signal);
   signal(SIGTERM, on_signal);
   if (setup(argc, argv, &identifier, &useTcp) != 0) {
      rspCleanUp();
      return 1;
   }
   if (identifier == 0) {
      identifier = (unsigned int)getpid() | 0x10000000U;
   }
   rc = (argv[1][1] == 'e') ? run_pe(identifier, useTcp) : run_pu();
   rspCleanUp();
   return rc;
}
