/* handoff-echo: a contact node that hands every session to a worker (server-initiated handoff,
 * <rsplib-handoff.h>), echo workers, and a client that checks who answers.
 *
 *   handoff-echo contact [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-workers=NAME]
 *      a pool element in the pool the clients use (default EchoPool). It accepts every session
 *      and at once hands it to the least-used worker of the worker pool (default EchoWorkers,
 *      chosen by that pool's policy, asked first with a handoff offer). The client's library
 *      follows: it connects to the worker and sends what it wrote meanwhile. What the client
 *      sent before it read the handoff request reached the contact node: the contact hands it
 *      over in the state cookie ("R:" and the bytes), and the worker answers it first.
 *   handoff-echo worker [-registrar=ADDR:PORT]... [-workers=NAME] [-identifier=0xID]
 *      an echo PE in the worker pool (Least Used): answers each message prefixed with its
 *      identifier, sends a cookie (messages served) after each answer, and keeps its load
 *      (sessions / 64) registered, so that "least used" means the fewest sessions.
 *   handoff-echo pu [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-count=N]
 *      sends N numbered lines and checks each answer: every line answered once, in order, by a
 *      worker (never by the contact node). Exit code 0 if all were.
 *
 * Everything runs over TCP with the control channel, so that it runs anywhere.
 * Build: cc handoff-echo.c $(pkg-config --cflags --libs rsplib) -o handoff-echo
 */
#include <rsplib.h>
#include <rsplib-handoff.h>
#include <signal.h>

#define MAX_SESSIONS 64

static volatile sig_atomic_t stop = 0;
static void on_signal(int sig) { (void)sig; stop = 1; }

static const char*  poolHandle   = "EchoPool";
static const char*  workerPool   = "EchoWorkers";
static unsigned int identifier   = 0;
static unsigned int count        = 10;

static int setup(int argc, char** argv)
{
   int i;
   if (rspInitialize(NULL) != RSPERR_OKAY) {
      fputs("handoff-echo: rspInitialize failed\n", stderr);
      return -1;
   }
   for (i = 2; i < argc; i++) {
      if (strncmp(argv[i], "-registrar=", 11) == 0) {
         unsigned int rc = rspAddStaticRegistrar(argv[i] + 11);
         if (rc != RSPERR_OKAY) {
            fprintf(stderr, "handoff-echo: bad registrar %s: %s\n", argv[i] + 11, rspGetErrorDescription(rc));
            return -1;
         }
      }
      else if (strncmp(argv[i], "-poolhandle=", 12) == 0) { poolHandle = argv[i] + 12; }
      else if (strncmp(argv[i], "-workers=", 9) == 0)     { workerPool = argv[i] + 9; }
      else if (strncmp(argv[i], "-identifier=", 12) == 0) { identifier = (unsigned int)strtoul(argv[i] + 12, NULL, 0); }
      else if (strncmp(argv[i], "-count=", 7) == 0)       { count = (unsigned int)strtoul(argv[i] + 7, NULL, 0); }
      else { fprintf(stderr, "handoff-echo: unknown option %s\n", argv[i]); return -1; }
   }
   return 0;
}

static struct PoolElementDescriptor* create_pe(const char* pool, unsigned int policy)
{
   struct TagItem tags[6];
   tags[0].Tag = TAG_PoolElement_Identifier;          tags[0].Data = identifier;
   tags[1].Tag = TAG_UserTransport_HasControlChannel; tags[1].Data = 1;
   tags[2].Tag = TAG_PoolElement_SocketDomain;        tags[2].Data = AF_INET;
   tags[3].Tag = TAG_PoolElement_SocketProtocol;      tags[3].Data = IPPROTO_TCP;
   tags[4].Tag = TAG_PoolPolicy_Type;                 tags[4].Data = policy;
   tags[5].Tag = TAG_DONE;                            tags[5].Data = 0;
   return rspCreatePoolElement((const unsigned char*)pool, strlen(pool), tags);
}

/* Waits up to 200 ms for input on the n sessions and the PE: status[i] and the result (the
   PE's status) have RspSelect_Read where there is some; all 0 when nothing came. */
static unsigned int wait_for_input(struct PoolElementDescriptor* ped,
                                   struct SessionDescriptor** sessions, unsigned int* status,
                                   size_t n)
{
   unsigned int pedStatus = RspSelect_Read;
   size_t       i;
   for (i = 0; i < n; i++) {
      status[i] = RspSelect_Read;
   }
   if (rspSessionSelect(sessions, status, n, &ped, &pedStatus, 1, 200000, NULL) <= 0) {
      memset(status, 0, n * sizeof(*status));
      return 0;
   }
   return pedStatus;
}

/* The contact node: accept, hand off, forget. A session whose handoff is under way stays in
   the select set until its PU is ready (the read that completes the handoff returns
   RspRead_Failover); one whose handoff fails is closed (its PU fails over by itself). What
   the PU sent before it read the request is read here and goes into the cookie. */
static int run_contact(void)
{
   struct PoolElementDescriptor* ped = create_pe(poolHandle, PPT_ROUNDROBIN);
   struct SessionDescriptor*     sessions[MAX_SESSIONS];
   unsigned int                  status[MAX_SESSIONS];
   char                          pending[MAX_SESSIONS][514];
   size_t                        pendingLen[MAX_SESSIONS];
   size_t                        n = 0, i;
   unsigned long                 handedOff = 0;
   char                          buf[512];
   if (ped == NULL) {
      fputs("handoff-echo: cannot create the contact pool element\n", stderr);
      return 1;
   }
   printf("contact node in pool \"%s\", handing sessions to pool \"%s\"\n", poolHandle, workerPool);
   fflush(stdout);
   while (!stop) {
      unsigned int pedStatus = wait_for_input(ped, sessions, status, n);
      for (i = 0; i < n; ) {
         if (status[i] & RspSelect_Read) {
            ssize_t r = rspSessionRead(sessions[i], buf, sizeof(buf), NULL);
            if (r > 0 && pendingLen[i] + (size_t)r <= sizeof(pending[i])) {
               /* Sent before the PU read the request: the worker gets it in the cookie. */
               memcpy(pending[i] + pendingLen[i], buf, (size_t)r);
               pendingLen[i] += (size_t)r;
               rspSessionSendCookie(sessions[i], (const unsigned char*)pending[i], pendingLen[i], NULL);
            }
            else if (r == RspRead_Failover || r == RspRead_ReadError || r > 0) {
               /* Handed off, or gone (or more pending data than a cookie here takes). */
               if (rspSessionHandoffState(sessions[i]) == RSPHANDOFF_HANDED_OFF) {
                  handedOff++;
                  printf("contact: session handed off (%lu so far)\n", handedOff);
                  fflush(stdout);
               }
               rspDeleteSession(sessions[i], NULL);
               n--;
               sessions[i] = sessions[n];
               memcpy(pending[i], pending[n], pendingLen[n]);
               pendingLen[i] = pendingLen[n];
               continue;
            }
         }
         i++;
      }
      if ((pedStatus & RspSelect_Read) && n < MAX_SESSIONS) {
         struct SessionDescriptor* s = rspAcceptSession(ped, NULL);
         if (s != NULL) {
            unsigned int rc = rspSessionHandoffToPool(s, (const unsigned char*)workerPool,
                                                      strlen(workerPool), NULL);
            if (rc == RSPERR_OKAY) {
               memcpy(pending[n], "R:", 2);
               pendingLen[n] = 2;
               sessions[n++] = s;
            }
            else {
               printf("contact: no worker takes the session (%s)\n", rspGetErrorDescription(rc));
               fflush(stdout);
               rspDeleteSession(s, NULL);
            }
         }
      }
   }
   for (i = 0; i < n; i++) {
      rspDeleteSession(sessions[i], NULL);
   }
   rspDeletePoolElement(ped, NULL);
   printf("contact: %lu session(s) handed off\n", handedOff);
   return 0;
}

static int run_worker(void)
{
   struct PoolElementDescriptor* ped = create_pe(workerPool, PPT_LEASTUSED);
   struct SessionDescriptor*     sessions[MAX_SESSIONS];
   unsigned int                  status[MAX_SESSIONS];
   unsigned long                 served[MAX_SESSIONS];
   size_t                        n = 0, i;
   char                          buf[512], out[600];
   if (ped == NULL) {
      fputs("handoff-echo: cannot create the worker pool element\n", stderr);
      return 1;
   }
   printf("worker in pool \"%s\"\n", workerPool);
   fflush(stdout);
   while (!stop) {
      unsigned int pedStatus = wait_for_input(ped, sessions, status, n);
      for (i = 0; i < n; ) {
         if (status[i] & RspSelect_Read) {
            struct TagItem tags[2];
            ssize_t        r;
            tags[0].Tag = TAG_RspIO_MsgIsCookieEcho; tags[0].Data = 0;
            tags[1].Tag = TAG_DONE;                  tags[1].Data = 0;
            r = rspSessionRead(sessions[i], buf, sizeof(buf) - 1, tags);
            if (r > 0 && tags[0].Data && r >= 2 && memcmp(buf, "R:", 2) == 0) {
               /* From the contact node: what the client sent there, to be answered now. */
               printf("worker: session handed over by the contact node, %d byte(s) pending\n", (int)r - 2);
               fflush(stdout);
               if (r > 2) {
                  memmove(buf, buf + 2, (size_t)r - 2);
                  r -= 2;
                  tags[0].Data = 0;
               }
            }
            else if (r > 0 && tags[0].Data) {
               buf[r] = 0;
               served[i] = strtoul(buf, NULL, 10);
               printf("worker: session resumed from cookie %lu\n", served[i]);
               fflush(stdout);
            }
            if (r > 0 && !tags[0].Data) {
               char cookie[32];
               int  len = snprintf(out, sizeof(out), "[0x%08x] %.*s", identifier, (int)r, buf);
               rspSessionWrite(sessions[i], out, (size_t)len, NULL);
               served[i]++;
               len = snprintf(cookie, sizeof(cookie), "%lu", served[i]);
               rspSessionSendCookie(sessions[i], (const unsigned char*)cookie, (size_t)len, NULL);
            }
            else if (r == RspRead_Failover || r == RspRead_ReadError) {
               rspDeleteSession(sessions[i], NULL);
               sessions[i] = sessions[n - 1];
               served[i]   = served[n - 1];
               n--;
               rspPoolElementSetLoad(ped, (uint32_t)(n * (0xffffffffu / MAX_SESSIONS)));
               continue;
            }
         }
         i++;
      }
      if ((pedStatus & RspSelect_Read) && n < MAX_SESSIONS) {
         struct SessionDescriptor* s = rspAcceptSession(ped, NULL);
         if (s != NULL) {
            sessions[n] = s;
            served[n++] = 0;
            rspPoolElementSetLoad(ped, (uint32_t)(n * (0xffffffffu / MAX_SESSIONS)));
         }
      }
   }
   for (i = 0; i < n; i++) {
      rspDeleteSession(sessions[i], NULL);
   }
   rspDeletePoolElement(ped, NULL);
   return 0;
}

static int run_pu(void)
{
   struct SessionDescriptor* s = rspCreateSession((const unsigned char*)poolHandle, strlen(poolHandle), NULL, NULL);
   unsigned int              i, ok = 0, state;
   char                      line[64], buf[600];
   if (s == NULL) {
      fputs("handoff-echo: cannot create the session\n", stderr);
      return 1;
   }
   for (i = 1; i <= count && !stop; i++) {
      int     len = snprintf(line, sizeof(line), "line %u", i);
      ssize_t r;
      int     tries;
      rspSessionWrite(s, line, (size_t)len, NULL);
      for (tries = 0; tries < 50; tries++) {
         struct TagItem tags[2];
         tags[0].Tag = TAG_RspIO_Timeout; tags[0].Data = 100000;
         tags[1].Tag = TAG_DONE;          tags[1].Data = 0;
         r = rspSessionRead(s, buf, sizeof(buf) - 1, tags);
         if (r > 0) {
            buf[r] = 0;
            printf("%s\n", buf);
            /* "[0xID] line N": the answer to this line, from a worker. */
            if (strstr(buf, line) != NULL && strcmp(strstr(buf, line), line) == 0) {
               ok++;
            }
            break;
         }
      }
   }
   state = rspSessionHandoffState(s);
   printf("pu: %u of %u answered in order; handoff state: %s\n", ok, count, rspHandoffStateText(state));
   rspDeleteSession(s, NULL);
   /* The contact node never answers: every answer came from the worker it handed us to. */
   return (ok == count && state == RSPHANDOFF_RESUMED) ? 0 : 1;
}

int main(int argc, char** argv)
{
   int rc = 1;
   if (argc < 2 || setup(argc, argv) != 0) {
      fputs("usage: handoff-echo contact|worker|pu [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-workers=NAME] [-identifier=0xID] [-count=N]\n", stderr);
      return 1;
   }
   signal(SIGINT, on_signal);
   signal(SIGTERM, on_signal);
   if (strcmp(argv[1], "contact") == 0)     { rc = run_contact(); }
   else if (strcmp(argv[1], "worker") == 0) { rc = run_worker(); }
   else if (strcmp(argv[1], "pu") == 0)     { rc = run_pu(); }
   else { fprintf(stderr, "handoff-echo: unknown role %s\n", argv[1]); }
   rspCleanUp();
   return rc;
}
