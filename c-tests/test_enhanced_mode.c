/* Enhanced Mode against a real registrar (address in argv[1]): two pool elements with their
   own sockets, a session from a pool user, data both ways, a cookie, a failover to the other
   PE with the cookie echoed there, a vetoing failover callback, bad arguments. */
#include <rsplib.h>
#include "testlib.h"

static const unsigned char POOL[] = "EnhancedPool";
#define POOL_LEN (sizeof(POOL) - 1)

static struct PoolElementDescriptor* create_pe(void)
{
   struct TagItem tags[6];
   tags[0].Tag = TAG_PoolElement_SocketProtocol;           tags[0].Data = IPPROTO_TCP;
   tags[1].Tag = TAG_PoolElement_SocketDomain;             tags[1].Data = AF_INET;
   tags[2].Tag = TAG_UserTransport_HasControlChannel;      tags[2].Data = 1;
   tags[3].Tag = TAG_PoolElement_ReregistrationInterval;   tags[3].Data = 1000;
   tags[4].Tag = TAG_PoolPolicy_Type;                      tags[4].Data = PPT_ROUNDROBIN;
   tags[5].Tag = TAG_DONE;                                 tags[5].Data = 0;
   return rspCreatePoolElement(POOL, POOL_LEN, tags);
}

/* Waits (rspSessionSelect) until one of the PEs has a session to accept; returns its index. */
static int wait_for_connection(struct PoolElementDescriptor** peds, size_t n)
{
   int round;
   size_t i;
   for (round = 0; round < 100; round++) {
      unsigned int status[2] = { RspSelect_Read, RspSelect_Read };
      int rc = rspSessionSelect(NULL, NULL, 0, peds, status, n, 100000, NULL);
      if (rc > 0) {
         for (i = 0; i < n; i++) {
            if (status[i] & RspSelect_Read) {
               return (int)i;
            }
         }
      }
   }
   return -1;
}

/* Reads the next user message (control messages are consumed on the way). */
static ssize_t read_user(struct SessionDescriptor* s, char* buf, size_t len, int* isEcho)
{
   int tries;
   for (tries = 0; tries < 50; tries++) {
      struct TagItem tags[3];
      ssize_t n;
      tags[0].Tag = TAG_RspIO_Timeout;         tags[0].Data = 200000;
      tags[1].Tag = TAG_RspIO_MsgIsCookieEcho; tags[1].Data = 77;
      tags[2].Tag = TAG_DONE;                  tags[2].Data = 0;
      n = rspSessionRead(s, buf, len, tags);
      if (n > 0) {
         if (isEcho) {
            *isEcho = (int)tags[1].Data;
         }
         return n;
      }
      if (n == RspRead_Failover || n == RspRead_ReadError) {
         return n;
      }
   }
   return RspRead_Timeout;
}

static bool veto(void* userData)
{
   (*(int*)userData)++;
   return false;
}

int main(int argc, char** argv)
{
   struct PoolElementDescriptor* peds[2];
   struct SessionDescriptor*     pu;
   struct SessionDescriptor*     pe;
   struct SessionDescriptor*     pe2;
   struct SessionDescriptor*     vetoed;
   struct TagItem                tags[3];
   char                          buf[256];
   int                           which, other, isEcho = 0, vetoCalls = 0;
   ssize_t                       n;
   uint32_t                      firstPe;

   /* Before rspInitialize. */
   CHECK(rspCreatePoolElement(POOL, POOL_LEN, NULL) == NULL);
   CHECK(rspCreateSession(POOL, POOL_LEN, NULL, NULL) == NULL);
   CHECK(rspSessionRead(NULL, buf, sizeof(buf), NULL) == RspRead_ReadError);
   CHECK(rspSessionWrite(NULL, "x", 1, NULL) == -1);
   CHECK(!rspSessionHasCookie(NULL));
   CHECK(!rspSessionFailover(NULL));
   CHECK(!rspSessionSendCookie(NULL, (const unsigned char*)"c", 1, NULL));
   rspDeleteSession(NULL, NULL);
   rspDeletePoolElement(NULL, NULL);
   rspSessionSetStatusText(NULL, "x");

   if (argc < 2) {
      fprintf(stderr, "usage: %s REGISTRAR\n", argv[0]);
      return 1;
   }
   CHECK_EQ(rspInitialize(NULL), RSPERR_OKAY);
   CHECK_EQ(rspAddStaticRegistrar(argv[1]), RSPERR_OKAY);
   CHECK(rspCreatePoolElement(NULL, 0, NULL) == NULL);
   CHECK(rspCreateSession((const unsigned char*)"", 0, NULL, NULL) == NULL);

   peds[0] = create_pe();
   peds[1] = create_pe();
   CHECK(peds[0] != NULL && peds[1] != NULL);
   if (peds[0] == NULL || peds[1] == NULL) {
      return TEST_SUMMARY();
   }

   /* PU → PE. */
   pu = rspCreateSession(POOL, POOL_LEN, NULL, NULL);
   CHECK(pu != NULL);
   tags[0].Tag = TAG_RspIO_PE_ID; tags[0].Data = 0;
   tags[1].Tag = TAG_DONE;        tags[1].Data = 0;
   CHECK_EQ(rspSessionWrite(pu, "hello", 5, tags), 5);
   firstPe = (uint32_t)tags[0].Data;
   CHECK(firstPe != 0);
   which = wait_for_connection(peds, 2);
   CHECK(which >= 0);
   if (which < 0) {
      return TEST_SUMMARY();
   }
   other = 1 - which;
   pe = rspAcceptSession(peds[which], NULL);
   CHECK(pe != NULL);
   n = read_user(pe, buf, sizeof(buf), &isEcho);
   CHECK_EQ(n, 5);
   CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
   CHECK_EQ(isEcho, 0);

   /* PE → PU: a cookie (consumed by the PU library) and the answer. */
   CHECK(!rspSessionHasCookie(pu));
   CHECK(rspSessionSendCookie(pe, (const unsigned char*)"cookie-1", 8, NULL));
   CHECK_EQ(rspSessionWrite(pe, "echo:hello", 10, NULL), 10);
   n = read_user(pu, buf, sizeof(buf), NULL);
   CHECK_EQ(n, 10);
   CHECK(n == 10 && memcmp(buf, "echo:hello", 10) == 0);
   CHECK(rspSessionHasCookie(pu));
   rspSessionSetStatusText(pu, "testing");

   /* The PE goes away: its session closes, it deregisters. Refused while a session exists. */
   rspDeletePoolElement(peds[which], NULL);   /* refused: pe still open (logged) */
   rspDeleteSession(pe, NULL);
   rspDeletePoolElement(peds[which], NULL);
   peds[which] = NULL;

   /* The PU notices, fails over to the other PE and echoes its cookie there. */
   n = read_user(pu, buf, sizeof(buf), NULL);
   CHECK_EQ(n, RspRead_Failover);
   CHECK_EQ(rspSessionWrite(pu, "again", 5, tags), 5);
   CHECK(tags[0].Data != firstPe);
   peds[0] = peds[other];
   CHECK_EQ(wait_for_connection(peds, 1), 0);
   pe2 = rspAcceptSession(peds[0], NULL);
   CHECK(pe2 != NULL);
   isEcho = 0;
   n = read_user(pe2, buf, sizeof(buf), &isEcho);
   CHECK_EQ(n, 8);
   CHECK_EQ(isEcho, 1);
   CHECK(n == 8 && memcmp(buf, "cookie-1", 8) == 0);
   isEcho = 1;
   n = read_user(pe2, buf, sizeof(buf), &isEcho);
   CHECK_EQ(n, 5);
   CHECK_EQ(isEcho, 0);
   CHECK(n == 5 && memcmp(buf, "again", 5) == 0);

   /* A failover callback that vetoes. */
   tags[0].Tag = TAG_RspSession_FailoverCallback; tags[0].Data = (tagdata_t)veto;
   tags[1].Tag = TAG_RspSession_FailoverUserData; tags[1].Data = (tagdata_t)&vetoCalls;
   tags[2].Tag = TAG_DONE;                        tags[2].Data = 0;
   vetoed = rspCreateSession(POOL, POOL_LEN, NULL, tags);
   CHECK(vetoed != NULL);
   CHECK(!rspSessionFailover(vetoed));
   CHECK_EQ(vetoCalls, 1);
   {  /* Unconnected now: select reports it writable + exceptional; a write fails over. */
      unsigned int st = RspSelect_Read;
      CHECK(rspSessionSelect(&vetoed, &st, 1, NULL, NULL, 0, 0, NULL) >= 1);
      CHECK_EQ(st, RspSelect_Write | RspSelect_Except);
      CHECK_EQ(rspSessionWrite(vetoed, "x", 1, NULL), RspRead_Failover);
      CHECK_EQ(vetoCalls, 2);
   }
   rspDeleteSession(vetoed, NULL);

   rspDeleteSession(pe2, NULL);
   rspDeleteSession(pu, NULL);
   rspDeletePoolElement(peds[0], NULL);
   rspCleanUp();
   return TEST_SUMMARY();
}
