// cppthread-pe: a C++ pool element written the way the classic rsplib C++ demos were: one
// TDThread subclass per session, the state the sessions share behind a TDMutex, logging
// options and Ctrl-C handling from the classic helper headers.
//
//   cppthread-pe [-registrar=ADDR:PORT]... [-poolhandle=NAME] [-identifier=0xID] [-tcp]
//                [-loglevel=N ...]
//
// Every session gets its own thread. A message "total?" is answered with "total N", N being
// the number of requests all sessions have had answered so far; any other message is echoed
// as "[PE 0x<id> session S #K] <message>" (S numbers the sessions, K the session's requests).
// Ctrl-C (or SIGTERM) stops it: the sessions are closed, their threads joined, the PE
// deregistered, and it prints "served R request(s) in S session(s)".
//
// Build: c++ cppthread-pe.cc $(pkg-config --cflags --libs rsplib cppthread) -o cppthread-pe
#include <rsplib.h>
#include <loglevel.h>
#include <breakdetector.h>
#include <thread.h>
#include <mutex.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// What all sessions share: counters, changed under the mutex of this object.
class ServiceStatistics : public TDMutex
{
   public:
   ServiceStatistics() : Sessions(0), Requests(0) {}

   unsigned int newSession()
   {
      lock();
      const unsigned int number = ++Sessions;
      unlock();
      return number;
   }
   unsigned long long answered()
   {
      lock();
      const unsigned long long n = ++Requests;
      unlock();
      return n;
   }
   void get(unsigned int& sessions, unsigned long long& requests)
   {
      lock();
      sessions = Sessions;
      requests = Requests;
      unlock();
   }

   private:
   unsigned int       Sessions;
   unsigned long long Requests;
};

// One session, served by its own thread.
class SessionThread : public TDThread
{
   public:
   SessionThread(SessionDescriptor* session, unsigned int identifier, ServiceStatistics* stats)
      : Session(session), Identifier(identifier), Stats(stats), Number(stats->newSession()),
        Finished(false), Stop(false) {}

   ~SessionThread()
   {
      stop();
      waitForFinish();
      rspDeleteSession(Session);   // C++ default: no tags
   }

   bool hasFinished()
   {
      lock();
      const bool finished = Finished;
      unlock();
      return finished;
   }
   void stop()
   {
      lock();
      Stop = true;
      unlock();
   }

   protected:
   void run()
   {
      unsigned long long served = 0;
      printf("[PE 0x%08x] session %u: started\n", Identifier, Number);
      fflush(stdout);
      while (!stopping()) {
         char           buffer[1024];
         char           reply[1200];
         struct TagItem tags[2];
         tags[0].Tag = TAG_RspIO_Timeout; tags[0].Data = 250000;   // µs: look at Stop 4x/s
         tags[1].Tag = TAG_DONE;          tags[1].Data = 0;
         const ssize_t n = rspSessionRead(Session, buffer, sizeof(buffer) - 1, tags);
         if (n == RspRead_Timeout || n == RspRead_ControlRead) {
            continue;
         }
         if (n <= 0) {
            break;   // the pool user closed the session, or it failed
         }
         buffer[n] = 0;
         if (strcmp(buffer, "total?") == 0) {
            unsigned int       sessions;
            unsigned long long requests;
            Stats->get(sessions, requests);
            snprintf(reply, sizeof(reply), "total %llu", requests);
         }
         else {
            served++;
            Stats->answered();   // counted before the answer leaves: a later "total?" sees it
            snprintf(reply, sizeof(reply), "[PE 0x%08x session %u #%llu] %s",
                     Identifier, Number, served, buffer);
         }
         if (rspSessionWrite(Session, reply, strlen(reply)) < 0) {
            break;
         }
      }
      printf("[PE 0x%08x] session %u: finished after %llu request(s)\n", Identifier, Number, served);
      fflush(stdout);
      lock();
      Finished = true;
      unlock();
   }

   private:
   bool stopping()
   {
      lock();
      const bool stop = Stop;
      unlock();
      return stop;
   }

   SessionDescriptor* Session;
   unsigned int       Identifier;
   ServiceStatistics* Stats;
   unsigned int       Number;
   bool               Finished;
   bool               Stop;
};

// The running session threads; finished ones are joined and deleted by the main loop.
class SessionList
{
   public:
   SessionList() : Count(0) {}
   ~SessionList() { removeAll(); }

   bool add(SessionThread* thread)
   {
      if (Count >= MaxSessions || !thread->start()) {
         return false;
      }
      Threads[Count++] = thread;
      return true;
   }
   void removeFinished()
   {
      for (size_t i = 0; i < Count; i++) {
         if (Threads[i]->hasFinished()) {
            delete Threads[i];
            Threads[i--] = Threads[--Count];
         }
      }
   }
   void removeAll()
   {
      for (size_t i = 0; i < Count; i++) {
         delete Threads[i];   // stops and joins it, closes its session
      }
      Count = 0;
   }

   private:
   static const size_t MaxSessions = 64;
   SessionThread*      Threads[MaxSessions];
   size_t              Count;
};

static volatile sig_atomic_t gTerminate = 0;
static void onTerminate(int) { gTerminate = 1; }

int main(int argc, char** argv)
{
   const char*  poolHandle = "CppThreadPool";
   unsigned int identifier = 0;
   bool         useTcp     = false;

   if (rspInitialize() != RSPERR_OKAY) {   // C++ default: no tags
      fputs("cppthread-pe: rspInitialize failed\n", stderr);
      return 1;
   }
   for (int i = 1; i < argc; i++) {
      if (strncmp(argv[i], "-registrar=", 11) == 0) {
         const unsigned int rc = rspAddStaticRegistrar(argv[i] + 11);
         if (rc != RSPERR_OKAY) {
            fprintf(stderr, "cppthread-pe: bad registrar %s: %s\n", argv[i] + 11, rspGetErrorDescription(rc));
            rspCleanUp();
            return 1;
         }
      }
      else if (strncmp(argv[i], "-poolhandle=", 12) == 0) { poolHandle = argv[i] + 12; }
      else if (strncmp(argv[i], "-identifier=", 12) == 0) { identifier = (unsigned int)strtoul(argv[i] + 12, NULL, 0); }
      else if (strcmp(argv[i], "-tcp") == 0)             { useTcp = true; }
      else if (strncmp(argv[i], "-log", 4) == 0) {
         if (!initLogging(argv[i])) {
            rspCleanUp();
            return 1;
         }
      }
      else {
         fprintf(stderr, "cppthread-pe: unknown option %s\n", argv[i]);
         rspCleanUp();
         return 1;
      }
   }
   if (identifier == 0) {
      identifier = 0x30000000U | (unsigned int)getpid();
   }
   beginLogging();

   struct TagItem tags[6];
   tags[0].Tag = TAG_PoolElement_Identifier;          tags[0].Data = identifier;
   tags[1].Tag = TAG_UserTransport_HasControlChannel; tags[1].Data = 1;
   tags[2].Tag = TAG_PoolElement_SocketDomain;        tags[2].Data = AF_INET;
   tags[3].Tag = useTcp ? TAG_PoolElement_SocketProtocol : TAG_IGNORE;
   tags[3].Data = IPPROTO_TCP;
   tags[4].Tag = TAG_PoolElement_ReregistrationInterval; tags[4].Data = 2000;
   tags[5].Tag = TAG_DONE;                            tags[5].Data = 0;
   PoolElementDescriptor* ped = rspCreatePoolElement((const unsigned char*)poolHandle, strlen(poolHandle), tags);
   if (ped == NULL) {
      fputs("cppthread-pe: cannot create the pool element\n", stderr);
      finishLogging();
      rspCleanUp();
      return 1;
   }
   printf("[PE 0x%08x] serving pool \"%s\"%s, one thread per session\n", identifier, poolHandle,
          useTcp ? " over TCP" : "");
   fflush(stdout);

   installBreakDetector();
   signal(SIGTERM, onTerminate);
   ServiceStatistics stats;
   SessionList       sessions;
   while (!breakDetected() && !gTerminate) {
      unsigned int pedStatus = RspSelect_Read;
      if (rspSessionSelect(NULL, NULL, 0, &ped, &pedStatus, 1, 250000) > 0 &&
          (pedStatus & RspSelect_Read)) {
         SessionDescriptor* session = rspAcceptSession(ped);   // C++ default: no tags
         if (session != NULL) {
            SessionThread* thread = new SessionThread(session, identifier, &stats);
            if (!sessions.add(thread)) {
               delete thread;
            }
         }
      }
      sessions.removeFinished();
   }

   sessions.removeAll();
   unsigned int       sessionCount;
   unsigned long long requests;
   stats.get(sessionCount, requests);
   rspDeletePoolElement(ped);
   printf("[PE 0x%08x] served %llu request(s) in %u session(s)\n", identifier, requests, sessionCount);
   uninstallBreakDetector();
   finishLogging();
   rspCleanUp();
   return 0;
}
