/* fractal-pe: a pool element of the fractal pool (Enhanced Mode, TCP with a control channel).
 *
 * Every session computes one picture of the Mandelbrot set for its pool user (fractal-pu.c;
 * the messages are in fractal-protocol.h), in a thread of its own: row by row, each row one
 * message tagged with this PE's identifier, each followed by a cookie holding the parameters
 * and the next row. A session that arrives with a cookie echo (its PU failed over, or another
 * PE handed the session to us) goes on from the cookie's row.
 *
 * SIGUSR1 drains the PE: it deregisters and hands every session to another PE of the pool
 * (rspPoolElementDrain(), <rsplib-handoff.h>), then stops and exits 0. SIGINT/SIGTERM stop it
 * at once (its pool users fail over).
 *
 * Build: cc -pthread fractal-pe.c $(pkg-config --cflags --libs rsplib) -o fractal-pe
 * Usage: fractal-pe [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-identifier=0xID]
 *                   [-delay=MICROSECONDS_PER_ROW] [-draintimeout=MICROSECONDS]
 */
#include <rsplib.h>
#include <rsplib-handoff.h>

#include "fractal-protocol.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The handoff API (rspPoolElementDrain, rspSessionHandoffState) is rsplib-rs's own; a library
   without it builds a PE that stops without handing its sessions off. */
#ifdef RSPHANDOFF_HANDED_OFF
#define HAVE_DRAIN 1
#else
#define HAVE_DRAIN 0
#endif

struct Worker {
   struct Worker*            Next;
   pthread_t                 Thread;
   struct SessionDescriptor* Session;
   unsigned int              Number;
   int                       Done;   /* under gLock */
};

static volatile sig_atomic_t gStop  = 0;
static volatile sig_atomic_t gDrain = 0;
static pthread_mutex_t       gLock  = PTHREAD_MUTEX_INITIALIZER;
static uint32_t              gIdentifier;
static unsigned long         gDelay = 0;        /* µs per row */
static unsigned long         gRows  = 0;        /* rows computed, under gLock */
static unsigned long         gHandedOff = 0;    /* sessions whose thread saw the handoff */

static void onStop(int sig)  { (void)sig; gStop = 1; }
static void onDrain(int sig) { (void)sig; gDrain = 1; }

static void sleepMicroseconds(unsigned long us)
{
   struct timespec ts;
   ts.tv_sec  = (time_t)(us / 1000000);
   ts.tv_nsec = (long)(us % 1000000) * 1000L;
   while ((nanosleep(&ts, &ts) != 0) && (errno == EINTR) && !gStop) {
   }
}

/* One row of iteration counts, 2 bytes per pixel (network byte order). */
static void computeRow(const struct FractalParameters* fp, uint32_t row, unsigned char* out)
{
   const double ci = fp->C1Imag + (fp->C2Imag - fp->C1Imag) * ((double)row + 0.5) / (double)fp->Height;
   uint32_t     x;
   for (x = 0; x < fp->Width; x++) {
      const double cr = fp->C1Real + (fp->C2Real - fp->C1Real) * ((double)x + 0.5) / (double)fp->Width;
      double       zr = 0.0, zi = 0.0;
      uint32_t     i  = 0;
      while ((i < fp->MaxIterations) && (zr * zr + zi * zi <= 4.0)) {
         const double t = zr * zr - zi * zi + cr;
         zi = 2.0 * zr * zi + ci;
         zr = t;
         i++;
      }
      fractalPut16(out + 2 * x, (uint16_t)i);
   }
}

/* Why a session ended, after a read or write returned a negative value (or 0). */
static const char* endReason(struct SessionDescriptor* sd, ssize_t result)
{
#if HAVE_DRAIN
   if (rspSessionHandoffState(sd) == RSPHANDOFF_HANDED_OFF) {
      pthread_mutex_lock(&gLock);
      gHandedOff++;
      pthread_mutex_unlock(&gLock);
      return "session handed off";
   }
#else
   (void)sd;
#endif
   return (result == RspRead_Failover || result == 0) ? "the pool user is gone" : "session failed";
}

/* Non-blocking read between rows: completes control messages (cookie echoes, handoffs) and
   notices a pool user that went away. NULL while the session goes on, else why it ended. */
static const char* pollSession(struct SessionDescriptor* sd)
{
   unsigned char  buffer[256];
   struct TagItem tags[3];
   ssize_t        n;
   do {
      tags[0].Tag = TAG_RspIO_Timeout;         tags[0].Data = 0;
      tags[1].Tag = TAG_RspIO_MsgIsCookieEcho; tags[1].Data = 0;
      tags[2].Tag = TAG_DONE;                  tags[2].Data = 0;
      n = rspSessionRead(sd, buffer, sizeof(buffer), tags);
   } while ((n > 0) || (n == RspRead_ControlRead));   /* nothing more is expected: skip it */
   return (n == RspRead_Timeout) ? NULL : endReason(sd, n);
}

/* The session's first message: parameters (start at row 0) or a cookie echo (go on from its
   row). 1 if the session can start. */
static int receiveStart(struct Worker* w, struct FractalParameters* fp, uint32_t* row)
{
   unsigned char  buffer[FRACTAL_COOKIE_SIZE + 64];
   struct TagItem tags[3];
   ssize_t        n;
   int            waited = 0;
   for (;;) {
      tags[0].Tag = TAG_RspIO_Timeout;         tags[0].Data = 500000;
      tags[1].Tag = TAG_RspIO_MsgIsCookieEcho; tags[1].Data = 0;
      tags[2].Tag = TAG_DONE;                  tags[2].Data = 0;
      n = rspSessionRead(w->Session, buffer, sizeof(buffer), tags);
      if ((n == RspRead_ControlRead) || ((n == RspRead_Timeout) && !gStop && (++waited < 60))) {
         continue;
      }
      break;
   }
   if (n <= 0) {
      /* A connection that only brought a handoff offer (another PE asking whether we take a
         session; the library answered it) is accepted like this too when nothing else waits. */
      printf("[PE 0x%08x] session %u: %s\n", gIdentifier, w->Number,
             (n == RspRead_Timeout) ? "no request in time"
                                    : "closed without a request (a handoff offer, or the PU left)");
      return 0;
   }
   if (tags[1].Data) {
      if (!fractalDecodeCookie(buffer, (size_t)n, fp, row)) {
         printf("[PE 0x%08x] session %u: bad cookie echo (%d bytes)\n", gIdentifier, w->Number, (int)n);
         return 0;
      }
      printf("[PE 0x%08x] session %u: cookie echo, resuming a %ux%u picture at row %u\n",
             gIdentifier, w->Number, fp->Width, fp->Height, *row);
      return 1;
   }
   if (!fractalDecodeParameters(buffer, (size_t)n, FRACTAL_MAGIC_PARAMETERS, fp)) {
      printf("[PE 0x%08x] session %u: bad parameters (%d bytes)\n", gIdentifier, w->Number, (int)n);
      return 0;
   }
   *row = 0;
   printf("[PE 0x%08x] session %u: new %ux%u picture, %u iterations, (%g,%g)-(%g,%g)\n",
          gIdentifier, w->Number, fp->Width, fp->Height, fp->MaxIterations,
          fp->C1Real, fp->C1Imag, fp->C2Real, fp->C2Imag);
   return 1;
}

static void* serveSession(void* arg)
{
   struct Worker*           w = (struct Worker*)arg;
   struct FractalParameters fp;
   uint32_t                 row, first;
   unsigned char            message[FRACTAL_MAX_ROW_SIZE];
   unsigned char            cookie[FRACTAL_COOKIE_SIZE];
   const char*              end = NULL;

   if (receiveStart(w, &fp, &row)) {
      first = row;
      for (; row < fp.Height; row++) {
         const size_t size = FRACTAL_ROW_HEADER_SIZE + 2 * (size_t)fp.Width;
         ssize_t      n;
         if (gStop) {
            end = "stopped";
            break;
         }
         if ((end = pollSession(w->Session)) != NULL) {
            break;
         }
         computeRow(&fp, row, message + FRACTAL_ROW_HEADER_SIZE);
         if (gDelay > 0) {
            sleepMicroseconds(gDelay);
         }
         fractalPut32(message, FRACTAL_MAGIC_ROW);
         fractalPut32(message + 4, row);
         fractalPut32(message + 8, gIdentifier);
         fractalPut32(message + 12, fp.Width);
         n = rspSessionWrite(w->Session, message, size, NULL);
         if (n < 0) {
            end = endReason(w->Session, n);
            break;
         }
         pthread_mutex_lock(&gLock);
         gRows++;
         pthread_mutex_unlock(&gLock);
         fractalEncodeCookie(cookie, &fp, row + 1);
         if (!rspSessionSendCookie(w->Session, cookie, sizeof(cookie), NULL)) {
            end = endReason(w->Session, RspRead_Failover);
            row++;
            break;
         }
      }
      if (row > first) {
         printf("[PE 0x%08x] session %u: sent rows %u to %u%s%s\n", gIdentifier, w->Number, first,
                row - 1, (end != NULL) ? ": " : ", the picture is complete", (end != NULL) ? end : "");
      }
      else {
         printf("[PE 0x%08x] session %u: no rows sent: %s\n", gIdentifier, w->Number,
                (end != NULL) ? end : "nothing left to compute");
      }
      /* Done: wait until the pool user closes the session (or a drain moves it). */
      while ((end == NULL) && !gStop) {
         unsigned char  buffer[64];
         struct TagItem tags[2];
         ssize_t        n;
         tags[0].Tag = TAG_RspIO_Timeout; tags[0].Data = 250000;
         tags[1].Tag = TAG_DONE;          tags[1].Data = 0;
         n = rspSessionRead(w->Session, buffer, sizeof(buffer), tags);
         if ((n <= 0) && (n != RspRead_Timeout) && (n != RspRead_ControlRead)) {
            end = endReason(w->Session, n);
            printf("[PE 0x%08x] session %u: %s\n", gIdentifier, w->Number, end);
         }
      }
   }
   fflush(stdout);
   rspDeleteSession(w->Session, NULL);
   pthread_mutex_lock(&gLock);
   w->Session = NULL;
   w->Done    = 1;
   pthread_mutex_unlock(&gLock);
   return NULL;
}

/* Joins the threads that are done (all of them with all = 1); returns how many are left. */
static size_t reapWorkers(struct Worker** list, int all)
{
   struct Worker** p = list;
   size_t          left = 0;
   while (*p != NULL) {
      struct Worker* w = *p;
      int            done;
      pthread_mutex_lock(&gLock);
      done = w->Done;
      pthread_mutex_unlock(&gLock);
      if (done || all) {
         pthread_join(w->Thread, NULL);
         *p = w->Next;
         free(w);
      }
      else {
         p = &w->Next;
         left++;
      }
   }
   return left;
}

int main(int argc, char** argv)
{
   const char*                   poolHandle   = "FractalPool";
   unsigned long                 drainTimeout = 5000000;
   struct PoolElementDescriptor* ped;
   struct Worker*                workers  = NULL;
   unsigned int                  sessions = 0;
   struct TagItem                tags[6];
   struct sigaction              action;
   unsigned int                  rc;
   int                           i;

   setvbuf(stdout, NULL, _IOLBF, 0);
   gIdentifier = 0x10000000U | (uint32_t)getpid();
   if (rspInitialize(NULL) != RSPERR_OKAY) {
      fputs("fractal-pe: rspInitialize() failed\n", stderr);
      return 1;
   }
   for (i = 1; i < argc; i++) {
      if (strncmp(argv[i], "-registrar=", 11) == 0) {
         if ((rc = rspAddStaticRegistrar(argv[i] + 11)) != RSPERR_OKAY) {
            fprintf(stderr, "fractal-pe: bad registrar %s: %s\n", argv[i] + 11, rspGetErrorDescription(rc));
            rspCleanUp();
            return 1;
         }
      }
      else if (strncmp(argv[i], "-poolhandle=", 12) == 0)   { poolHandle = argv[i] + 12; }
      else if (strncmp(argv[i], "-identifier=", 12) == 0)   { gIdentifier = (uint32_t)strtoul(argv[i] + 12, NULL, 0); }
      else if (strncmp(argv[i], "-delay=", 7) == 0)         { gDelay = strtoul(argv[i] + 7, NULL, 0); }
      else if (strncmp(argv[i], "-draintimeout=", 14) == 0) { drainTimeout = strtoul(argv[i] + 14, NULL, 0); }
      else {
         fprintf(stderr, "Usage: %s [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-identifier=0xID]\n"
                         "          [-delay=MICROSECONDS_PER_ROW] [-draintimeout=MICROSECONDS]\n", argv[0]);
         rspCleanUp();
         return 1;
      }
   }

   tags[0].Tag = TAG_PoolElement_Identifier;          tags[0].Data = gIdentifier;
   tags[1].Tag = TAG_UserTransport_HasControlChannel; tags[1].Data = 1;   /* cookies over TCP */
   tags[2].Tag = TAG_PoolElement_SocketDomain;        tags[2].Data = AF_INET;
   tags[3].Tag = TAG_PoolElement_SocketProtocol;      tags[3].Data = IPPROTO_TCP;
   tags[4].Tag = TAG_DONE;                            tags[4].Data = 0;
   ped = rspCreatePoolElement((const unsigned char*)poolHandle, strlen(poolHandle), tags);
   if (ped == NULL) {
      fprintf(stderr, "fractal-pe: cannot create the pool element in pool \"%s\"\n", poolHandle);
      rspCleanUp();
      return 1;
   }

   memset(&action, 0, sizeof(action));
   sigemptyset(&action.sa_mask);
   action.sa_handler = onStop;
   sigaction(SIGINT, &action, NULL);
   sigaction(SIGTERM, &action, NULL);
   action.sa_handler = onDrain;
   sigaction(SIGUSR1, &action, NULL);
   printf("[PE 0x%08x] serving pool \"%s\" over TCP, %lu us per row (drain on SIGUSR1: %s)\n",
          gIdentifier, poolHandle, gDelay, HAVE_DRAIN ? "yes" : "no, this library has no handoff");

   while (!gStop && !gDrain) {
      unsigned int status = RspSelect_Read;
      reapWorkers(&workers, 0);
      if ((rspSessionSelect(NULL, NULL, 0, &ped, &status, 1, 250000, NULL) > 0) && (status & RspSelect_Read)) {
         struct SessionDescriptor* sd = rspAcceptSession(ped, NULL);
         struct Worker*            w;
         if (sd == NULL) {
            continue;
         }
         w = (struct Worker*)calloc(1, sizeof(*w));
         if (w == NULL) {
            rspDeleteSession(sd, NULL);
            continue;
         }
         w->Session = sd;
         w->Number  = ++sessions;
         if (pthread_create(&w->Thread, NULL, serveSession, w) != 0) {
            fprintf(stderr, "fractal-pe: cannot start a thread\n");
            rspDeleteSession(sd, NULL);
            free(w);
            continue;
         }
         w->Next = workers;
         workers = w;
      }
   }

   if (gDrain && !gStop) {
      size_t left = reapWorkers(&workers, 0);
#if HAVE_DRAIN
      size_t handed;
      int    waited;
      printf("[PE 0x%08x] draining: deregistering, handing %lu session(s) to other PEs\n",
             gIdentifier, (unsigned long)left);
      tags[0].Tag = TAG_RspHandoff_Timeout; tags[0].Data = drainTimeout;
      tags[1].Tag = TAG_DONE;               tags[1].Data = 0;
      handed = rspPoolElementDrain(ped, tags);
      printf("[PE 0x%08x] drained: %lu session(s) handed off\n", gIdentifier, (unsigned long)handed);
      /* The sessions' threads see the handoff (or the close) in their next read or write. */
      for (waited = 0; (reapWorkers(&workers, 0) > 0) && (waited < 100); waited++) {
         sleepMicroseconds(50000);
      }
#else
      (void)drainTimeout;
      printf("[PE 0x%08x] SIGUSR1, but this library has no rspPoolElementDrain(): stopping, "
             "%lu session(s) will fail over\n", gIdentifier, (unsigned long)left);
#endif
   }
   gStop = 1;
   reapWorkers(&workers, 1);
   rspDeletePoolElement(ped, NULL);
   rspCleanUp();
   printf("[PE 0x%08x] stopped: %u session(s), %lu row(s) computed, %lu session(s) handed off\n",
          gIdentifier, sessions, gRows, gHandedOff);
   return 0;
}
