/* Server-initiated handoff through rsplib-handoff.h against a real registrar (address in
   argv[1]): a PE hands a session to another chosen by the pool's policy (offer accepted), the
   PU follows and the receiver gets the cookie echo and the data; a PU callback refuses; an
   offer refused by the receiver's limit; a drain of a PE whose session a thread serves; bad
   arguments. Runs under valgrind. */
#include <pthread.h>
#include <string.h>
#include <rsplib.h>
#include <rsplib-handoff.h>
#include "testlib.h"

static const unsigned char POOL[] = "HandoffCPool";
#define POOL_LEN (sizeof(POOL) - 1)

static struct PoolElementDescriptor* create_pe(uint32_t id)
{
   struct TagItem tags[7];
   tags[0].Tag = TAG_PoolElement_SocketProtocol;           tags[0].Data = IPPROTO_TCP;
   tags[1].Tag = TAG_PoolElement_SocketDomain;             tags[1].Data = AF_INET;
   tags[2].Tag = TAG_UserTransport_HasControlChannel;      tags[2].Data = 1;
   tags[3].Tag = TAG_PoolElement_ReregistrationInterval;   tags[3].Data = 1000;
   tags[4].Tag = TAG_PoolPolicy_Type;                      tags[4].Data = PPT_ROUNDROBIN;
   tags[5].Tag = TAG_PoolElement_Identifier;               tags[5].Data = id;
   tags[6].Tag = TAG_DONE;                                 tags[6].Data = 0;
   return rspCreatePoolElement(POOL, POOL_LEN, tags);
}

/* Accepts the next session of `ped` (waiting up to 10 s). */
static struct SessionDescriptor* accept_on(struct PoolElementDescriptor* ped)
{
   int round;
   for (round = 0; round < 100; round++) {
      unsigned int status = RspSelect_Read;
      if (rspSessionSelect(NULL, NULL, 0, &ped, &status, 1, 100000, NULL) > 0 &&
          (status & RspSelect_Read)) {
         return rspAcceptSession(ped, NULL);
      }
   }
   return NULL;
}

/* One read with a timeout (ms); *isEcho set if given. */
static ssize_t read_ms(struct SessionDescriptor* s, char* buf, size_t len, unsigned ms,
                       int* isEcho)
{
   struct TagItem tags[3];
   ssize_t n;
   tags[0].Tag = TAG_RspIO_Timeout;         tags[0].Data = (tagdata_t)ms * 1000;
   tags[1].Tag = TAG_RspIO_MsgIsCookieEcho; tags[1].Data = 0;
   tags[2].Tag = TAG_DONE;                  tags[2].Data = 0;
   n = rspSessionRead(s, buf, len, tags);
   if (isEcho) {
      *isEcho = (int)tags[1].Data;
   }
   return n;
}

/* Reads until user data or an end (skipping control reads and timeouts), up to `tries`. */
static ssize_t read_user(struct SessionDescriptor* s, char* buf, size_t len, int* isEcho)
{
   int tries;
   for (tries = 0; tries < 50; tries++) {
      ssize_t n = read_ms(s, buf, len, 100, isEcho);
      if (n > 0 || n == RspRead_Failover || n == RspRead_ReadError) {
         return n;
      }
   }
   return RspRead_Timeout;
}

static bool refuse(uint32_t receiver, void* userData)
{
   *(uint32_t*)userData = receiver;
   return false;
}

/* A session thread, as a classic PE has: echoes (and sends a cookie) until the session
   ends. */
struct Served {
   struct SessionDescriptor* session;
   unsigned int              state;
};

static void* serve(void* arg)
{
   struct Served* s = (struct Served*)arg;
   char buf[256];
   for (;;) {
      ssize_t n = read_ms(s->session, buf, sizeof(buf), 100, NULL);
      if (n > 0) {
         rspSessionWrite(s->session, buf, (size_t)n, NULL);
         rspSessionSendCookie(s->session, (const unsigned char*)"served", 6, NULL);
      }
      else if (n == RspRead_Failover || n == RspRead_ReadError) {
         break;
      }
   }
   s->state = rspSessionHandoffState(s->session);
   rspDeleteSession(s->session, NULL);
   return NULL;
}

/* The receiver's side of an offer: the library answers it in the receiver's accept (or the
   accepted connection's first read), as a PE's accept loop would run it. */
static void* answer_one_offer(void* arg)
{
   struct SessionDescriptor* s = accept_on((struct PoolElementDescriptor*)arg);
   if (s != NULL) {
      char buf[16];
      read_ms(s, buf, sizeof(buf), 1000, NULL);
      rspDeleteSession(s, NULL);
   }
   return NULL;
}

int main(int argc, char** argv)
{
   struct PoolElementDescriptor* a;
   struct PoolElementDescriptor* b;
   struct SessionDescriptor*     pu;
   struct SessionDescriptor*     onA;
   struct SessionDescriptor*     onB;
   struct TagItem                tags[4];
   char                          buf[256];
   int                           isEcho = 0, i;
   ssize_t                       n;
   uint32_t                      asked = 0;

   /* Bad arguments, before rspInitialize too. */
   CHECK_EQ(rspSessionHandoff(NULL, NULL, NULL), RSPERR_INVALID_VALUES);
   CHECK_EQ(rspSessionHandoffToPool(NULL, NULL, 0, NULL), RSPERR_INVALID_VALUES);
   CHECK_EQ(rspSessionHandoffState(NULL), RSPHANDOFF_NONE);
   CHECK_EQ(rspPoolElementDrain(NULL, NULL), 0);
   CHECK_EQ(rspPoolElementSessions(NULL), 0);
   rspPoolElementSetHandoffLimit(NULL, 3);
   rspPoolElementSetLoad(NULL, 7);
   CHECK(strcmp(rspHandoffStateText(RSPHANDOFF_HANDED_OFF), "session handed off") == 0);
   CHECK(strcmp(rspHandoffStateText(99), "unknown handoff state") == 0);

   if (argc < 2) {
      fprintf(stderr, "usage: %s REGISTRAR\n", argv[0]);
      return 1;
   }
   CHECK_EQ(rspInitialize(NULL), RSPERR_OKAY);
   CHECK_EQ(rspAddStaticRegistrar(argv[1]), RSPERR_OKAY);
   a = create_pe(0x0a);
   CHECK(a != NULL);
   if (a == NULL) {
      return TEST_SUMMARY();
   }

   /* 1. A session on A (the only PE yet): data, a cookie. */
   pu = rspCreateSession(POOL, POOL_LEN, NULL, NULL);
   CHECK(pu != NULL);
   CHECK_EQ(rspSessionWrite(pu, "one", 3, NULL), 3);
   onA = accept_on(a);
   CHECK(onA != NULL);
   if (pu == NULL || onA == NULL) {
      return TEST_SUMMARY();
   }
   CHECK_EQ(rspPoolElementSessions(a), 1);
   CHECK_EQ(read_user(onA, buf, sizeof(buf), NULL), 3);
   CHECK(rspSessionSendCookie(onA, (const unsigned char*)"state:1", 7, NULL));
   CHECK_EQ(rspSessionWrite(onA, "ONE", 3, NULL), 3);
   CHECK_EQ(read_user(pu, buf, sizeof(buf), NULL), 3);
   CHECK_EQ(rspSessionHandoffState(onA), RSPHANDOFF_NONE);
   /* A PU session cannot be handed off; no other PE yet. */
   CHECK_EQ(rspSessionHandoffToPool(pu, NULL, 0, NULL), RSPERR_WRONG_CONTROLCHANNEL_HANDLING);
   CHECK_EQ(rspSessionHandoffToPool(onA, NULL, 0, NULL), RSPERR_NOT_FOUND);
   CHECK_EQ(rspSessionHandoffState(onA), RSPHANDOFF_FAILED);

   /* 2. B joins; A hands the session to it (offer accepted). */
   b = create_pe(0x0b);
   CHECK(b != NULL);
   if (b == NULL) {
      return TEST_SUMMARY();
   }
   {
      pthread_t receiver;
      CHECK(pthread_create(&receiver, NULL, answer_one_offer, b) == 0);
      CHECK_EQ(rspSessionHandoffToPool(onA, NULL, 0, NULL), RSPERR_OKAY);
      CHECK(pthread_join(receiver, NULL) == 0);
   }
   CHECK_EQ(rspSessionHandoffState(onA), RSPHANDOFF_REQUESTED);
   /* The PU reads the request (answers Ready), A reads Ready (commits). */
   n = read_ms(pu, buf, sizeof(buf), 1000, NULL);
   CHECK_EQ(n, RspRead_ControlRead);
   n = read_ms(onA, buf, sizeof(buf), 1000, NULL);
   CHECK_EQ(n, RspRead_Failover);
   CHECK_EQ(rspSessionHandoffState(onA), RSPHANDOFF_HANDED_OFF);
   /* Handed off is final: no second handoff, the state stays. */
   CHECK_EQ(rspSessionHandoffToPool(onA, NULL, 0, NULL), RSPERR_WRONG_CONTROLCHANNEL_HANDLING);
   CHECK_EQ(rspSessionHandoffState(onA), RSPHANDOFF_HANDED_OFF);
   rspDeleteSession(onA, NULL);
   CHECK_EQ(rspPoolElementSessions(a), 0);
   /* The PU reads the commit, connects to B and echoes the cookie; what it writes follows. */
   n = read_ms(pu, buf, sizeof(buf), 1000, NULL);
   CHECK_EQ(n, RspRead_ControlRead);
   CHECK_EQ(rspSessionHandoffState(pu), RSPHANDOFF_RESUMED);
   tags[0].Tag = TAG_RspIO_PE_ID; tags[0].Data = 0;
   tags[1].Tag = TAG_DONE;        tags[1].Data = 0;
   CHECK_EQ(rspSessionWrite(pu, "two", 3, tags), 3);
   CHECK_EQ(tags[0].Data, 0x0b);
   onB = accept_on(b);
   CHECK(onB != NULL);
   if (onB == NULL) {
      return TEST_SUMMARY();
   }
   n = read_user(onB, buf, sizeof(buf), &isEcho);
   CHECK_EQ(n, 7);
   CHECK_EQ(isEcho, 1);
   CHECK(n == 7 && memcmp(buf, "state:1", 7) == 0);
   n = read_user(onB, buf, sizeof(buf), &isEcho);
   CHECK_EQ(n, 3);
   CHECK(n == 3 && memcmp(buf, "two", 3) == 0);
   CHECK_EQ(isEcho, 0);

   /* 3. An offer refused by the receiver's limit: the session stays with B. */
   rspPoolElementSetHandoffLimit(a, 0);
   {
      pthread_t receiver;
      CHECK(pthread_create(&receiver, NULL, answer_one_offer, a) == 0);
      CHECK_EQ(rspSessionHandoffToPool(onB, NULL, 0, NULL), RSPERR_NO_RESOURCES);
      CHECK(pthread_join(receiver, NULL) == 0);
   }
   CHECK_EQ(rspSessionHandoffState(onB), RSPHANDOFF_REFUSED);
   CHECK_EQ(rspSessionWrite(onB, "TWO", 3, NULL), 3);
   CHECK_EQ(read_user(pu, buf, sizeof(buf), NULL), 3);
   rspPoolElementSetHandoffLimit(a, (size_t)-1);
   rspDeleteSession(onB, NULL);
   rspDeleteSession(pu, NULL);

   /* 4. A PU whose callback refuses: the session stays. */
   tags[0].Tag = TAG_RspHandoff_Callback; tags[0].Data = (tagdata_t)refuse;
   tags[1].Tag = TAG_RspHandoff_UserData; tags[1].Data = (tagdata_t)&asked;
   tags[2].Tag = TAG_DONE;                tags[2].Data = 0;
   pu = rspCreateSession(POOL, POOL_LEN, NULL, tags);
   CHECK_EQ(rspSessionWrite(pu, "three", 5, NULL), 5);
   {
      struct PoolElementDescriptor* peds[2] = { a, b };
      struct PoolElementDescriptor* got = NULL;
      for (i = 0; i < 100 && got == NULL; i++) {
         unsigned int status[2] = { RspSelect_Read, RspSelect_Read };
         if (rspSessionSelect(NULL, NULL, 0, peds, status, 2, 100000, NULL) > 0) {
            got = (status[0] & RspSelect_Read) ? a : b;
         }
      }
      CHECK(got != NULL);
      onA = got ? rspAcceptSession(got, NULL) : NULL;
   }
   CHECK(onA != NULL);
   if (onA == NULL) {
      return TEST_SUMMARY();
   }
   CHECK_EQ(read_user(onA, buf, sizeof(buf), NULL), 5);
   tags[0].Tag = TAG_RspHandoff_Offer; tags[0].Data = 0;
   tags[1].Tag = TAG_DONE;             tags[1].Data = 0;
   CHECK_EQ(rspSessionHandoffToPool(onA, NULL, 0, tags), RSPERR_OKAY);
   CHECK_EQ(read_ms(pu, buf, sizeof(buf), 1000, NULL), RspRead_ControlRead);
   CHECK(asked == 0x0a || asked == 0x0b);
   CHECK_EQ(read_ms(onA, buf, sizeof(buf), 1000, NULL), RspRead_ControlRead);
   CHECK_EQ(rspSessionHandoffState(onA), RSPHANDOFF_REFUSED);
   CHECK_EQ(rspSessionWrite(onA, "THREE", 5, NULL), 5);
   CHECK_EQ(read_user(pu, buf, sizeof(buf), NULL), 5);
   CHECK_EQ(rspSessionHandoffState(pu), RSPHANDOFF_NONE);
   rspDeleteSession(onA, NULL);
   rspDeleteSession(pu, NULL);

   /* 5. Drain A while a thread serves its session: the session moves to B, A has none. */
   pu = rspCreateSession(POOL, POOL_LEN, NULL, NULL);
   {
      struct Served served;
      pthread_t     thread;
      struct PoolElementDescriptor* peds[2] = { a, b };
      struct PoolElementDescriptor* got = NULL;
      /* Until the session lands on A (the policy alternates). */
      for (i = 0; i < 10 && got != a; i++) {
         int r;
         if (got != NULL) {
            rspDeleteSession(rspAcceptSession(got, NULL), NULL);
            rspDeleteSession(pu, NULL);
            pu = rspCreateSession(POOL, POOL_LEN, NULL, NULL);
         }
         got = NULL;
         CHECK_EQ(rspSessionWrite(pu, "four", 4, NULL), 4);
         for (r = 0; r < 100 && got == NULL; r++) {
            unsigned int status[2] = { RspSelect_Read, RspSelect_Read };
            if (rspSessionSelect(NULL, NULL, 0, peds, status, 2, 100000, NULL) > 0) {
               got = (status[0] & RspSelect_Read) ? a : b;
            }
         }
      }
      CHECK(got == a);
      if (got != a) {
         return TEST_SUMMARY();
      }
      served.session = rspAcceptSession(a, NULL);
      served.state   = 99;
      CHECK(pthread_create(&thread, NULL, serve, &served) == 0);
      CHECK_EQ(read_user(pu, buf, sizeof(buf), NULL), 4);   /* the echo from A */
      {
         struct TagItem dt[3];
         size_t moved;
         /* No offer: B's accept runs in this thread, after the drain. */
         dt[0].Tag = TAG_RspHandoff_Timeout; dt[0].Data = 3000000;
         dt[1].Tag = TAG_RspHandoff_Offer;   dt[1].Data = 0;
         dt[2].Tag = TAG_DONE;               dt[2].Data = 0;
         /* The PU answers in its reads: a reader thread for it while this one drains. */
         {
            pthread_t puReader;
            struct Served puSide;
            puSide.session = pu;
            CHECK(pthread_create(&puReader, NULL, serve, &puSide) == 0);
            moved = rspPoolElementDrain(a, dt);
            CHECK_EQ(moved, 1);
            CHECK(pthread_join(thread, NULL) == 0);
            CHECK_EQ(served.state, RSPHANDOFF_HANDED_OFF);
            CHECK_EQ(rspPoolElementSessions(a), 0);
            /* B gets the session: the cookie A's thread sent is echoed there. Then B goes:
               the PU's thread fails over to no PE and ends. */
            onB = accept_on(b);
            CHECK(onB != NULL);
            n = read_user(onB, buf, sizeof(buf), &isEcho);
            CHECK_EQ(n, 6);
            CHECK_EQ(isEcho, 1);
            CHECK(n == 6 && memcmp(buf, "served", 6) == 0);
            rspDeleteSession(onB, NULL);
            rspDeletePoolElement(b, NULL);
            b = NULL;
            CHECK(pthread_join(puReader, NULL) == 0);
            CHECK_EQ(puSide.state, RSPHANDOFF_RESUMED);
         }
      }
   }
   rspDeletePoolElement(a, NULL);
   if (b != NULL) {
      rspDeletePoolElement(b, NULL);
   }
   rspCleanUp();
   return TEST_SUMMARY();
}
