/* Basic Mode of the classic API against a real registrar (started by run.sh on a free
   loopback port; its address is argv[1], e.g. 127.0.0.1:40123):
   rspInitialize, rspCleanUp, rspAddStaticRegistrar, rspGetErrorDescription, rspRegister,
   rspDeregister, rspHandleResolution, rspFreeEndpointAddressArray, rspReportFailure, rspSelect
   and the aliases rspNameResolution, rspFailure, rspAddStaticNameServer, rspGetLastError,
   rspGetLastErrorDescription; success paths and bad arguments. Runs under valgrind. */
#define _POSIX_C_SOURCE 200809L
#include <rsplib.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define PH(s) (const unsigned char*)(s), strlen(s)

static const char* LONG_HANDLE = "123456789012345678901234567890123"; /* 33 bytes */
static const char* MAX_HANDLE  = "12345678901234567890123456789012";  /* 32 bytes */

static unsigned long long nowUs(void)
{
   struct timeval tv;
   gettimeofday(&tv, NULL);
   return ((unsigned long long)tv.tv_sec * 1000000ULL) + (unsigned long long)tv.tv_usec;
}

static void sleepMs(unsigned long ms)
{
   struct timespec ts;
   ts.tv_sec  = (time_t)(ms / 1000);
   ts.tv_nsec = (long)(ms % 1000) * 1000000L;
   while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
   }
}

static void setAddress(union sockaddr_union* a, const char* ip, unsigned short port)
{
   memset(a, 0, sizeof(*a));
   a->in.sin_family = AF_INET;
   a->in.sin_port   = htons(port);
   inet_pton(AF_INET, ip, &a->in.sin_addr);
}

static void makeEai(struct EndpointAddressInfo* eai, union sockaddr_union* addrs, size_t n,
                    int protocol, uint32_t id)
{
   memset(eai, 0, sizeof(*eai));
   eai->ai_family   = AF_INET;
   eai->ai_socktype = SOCK_STREAM;
   eai->ai_protocol = protocol;
   eai->ai_addrlen  = sizeof(union sockaddr_union);
   eai->ai_addrs    = n;
   eai->ai_addr     = addrs;
   eai->ai_next     = NULL;
   eai->ai_pe_id    = id;
}

/* A TCP socket bound to 127.0.0.1:any; listening if asked (else connects to it are refused). */
static int boundSocket(int doListen, unsigned short* port)
{
   union sockaddr_union a;
   socklen_t            len = sizeof(a);
   int                  sd  = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
   setAddress(&a, "127.0.0.1", 0);
   if ((sd < 0) || (bind(sd, &a.sa, sizeof(a.in)) != 0) ||
       (doListen && (listen(sd, 4) != 0)) || (getsockname(sd, &a.sa, &len) != 0)) {
      perror("test_basic_mode: socket");
      exit(2);
   }
   *port = ntohs(a.in.sin_port);
   return sd;
}

static int bitsSet(const fd_set* s)
{
   int fd, n = 0;
   for (fd = 0; fd < FD_SETSIZE; fd++) {
      if (FD_ISSET(fd, s)) {
         n++;
      }
   }
   return n;
}

/* After a call expected to fail: NULL expected; free whatever came back otherwise. */
static void dropResult(struct EndpointAddressInfo* res, const struct EndpointAddressInfo* sentinel)
{
   if ((res != NULL) && (res != sentinel)) {
      rspFreeEndpointAddressArray(res);
   }
}

/* Resolves once; returns the result code and the PE id (0 if none). */
static unsigned int resolveId(const char* handle, uint32_t* id)
{
   struct EndpointAddressInfo* eai    = NULL;
   unsigned int                result = rspHandleResolution(PH(handle), &eai, NULL);
   *id = 0;
   if ((result == RSPERR_OKAY) && (eai != NULL)) {
      *id = eai->ai_pe_id;
   }
   rspFreeEndpointAddressArray(eai);
   return result;
}

/* Resolves until the pool is empty or about `ms` have passed; the last result. */
static unsigned int resolveUntilNotFound(const char* handle, unsigned long ms)
{
   const unsigned long long end = nowUs() + ms * 1000ULL;
   uint32_t                 id;
   unsigned int             result;
   while (((result = resolveId(handle, &id)) != RSPERR_NOT_FOUND) && (nowUs() < end)) {
      sleepMs(200);
   }
   return result;
}

/* Resolves until PE `want` is selected or about `ms` have passed; the last result
   (RSPERR_OKAY only with `want`). */
static unsigned int resolveUntilId(const char* handle, uint32_t want, unsigned long ms)
{
   const unsigned long long end = nowUs() + ms * 1000ULL;
   uint32_t                 id = 0;
   unsigned int             result;
   while ((((result = resolveId(handle, &id)) != RSPERR_OKAY) || (id != want)) && (nowUs() < end)) {
      sleepMs(100);
   }
   return ((result == RSPERR_OKAY) && (id != want)) ? RSPERR_NOT_FOUND : result;
}

/* Every Basic Mode call returns RSPERR_NOT_INITIALIZED (before init and after clean-up). */
static void checkNotInitialized(void)
{
   union sockaddr_union        addr;
   struct EndpointAddressInfo  eai;
   struct EndpointAddressInfo  sentinel;
   struct EndpointAddressInfo* result = &sentinel;
   setAddress(&addr, "127.0.0.1", 7);
   makeEai(&eai, &addr, 1, IPPROTO_TCP, 0x1234);

   CHECK_EQ(rspRegister(PH("BasicA"), &eai, NULL), RSPERR_NOT_INITIALIZED);
   CHECK_EQ(rspGetLastError(), RSPERR_NOT_INITIALIZED);
   CHECK(strcmp(rspGetLastErrorDescription(), rspGetErrorDescription(RSPERR_NOT_INITIALIZED)) == 0);
   CHECK_EQ(rspDeregister(PH("BasicA"), 0x1234, NULL), RSPERR_NOT_INITIALIZED);
   CHECK_EQ(rspHandleResolution(PH("BasicA"), &result, NULL), RSPERR_NOT_INITIALIZED);
   CHECK(result == NULL);
   dropResult(result, &sentinel);
   result = &sentinel;
   CHECK_EQ(rspNameResolution(PH("BasicA"), &result, NULL), RSPERR_NOT_INITIALIZED);
   CHECK(result == NULL);
   dropResult(result, &sentinel);
   CHECK_EQ(rspReportFailure(PH("BasicA"), 0x1234, NULL), RSPERR_NOT_INITIALIZED);
   CHECK_EQ(rspAddStaticRegistrar("127.0.0.1:3863"), RSPERR_NOT_INITIALIZED);
   CHECK_EQ(rspAddStaticNameServer("127.0.0.1:3863"), RSPERR_NOT_INITIALIZED);
   rspAddStaticRegistrar("127.0.0.1:3863");
   CHECK_EQ(rspGetLastError(), RSPERR_NOT_INITIALIZED);
   /* rspFailure returned void in the 2004 API: check it through rspGetLastError. */
   (void)rspFailure(PH("BasicA"), 0x1234, NULL);
   CHECK_EQ(rspGetLastError(), RSPERR_NOT_INITIALIZED);
}

struct ThreadResult {
   unsigned int Call;
   unsigned int Last;
};

static void* failingThread(void* arg)
{
   struct ThreadResult*       r = (struct ThreadResult*)arg;
   union sockaddr_union       addr;
   struct EndpointAddressInfo eai;
   setAddress(&addr, "127.0.0.1", 7);
   makeEai(&eai, &addr, 1, IPPROTO_TCP, 0);
   r->Call = rspRegister(PH(LONG_HANDLE), &eai, NULL);
   r->Last = rspGetLastError();
   return NULL;
}

int main(int argc, char** argv)
{
   const char*                 registrar = (argc > 1) ? argv[1] : NULL;
   char                        closed[64];
   char                        twoRegistrars[160];
   unsigned short              closedPort, portA, portB, portW, portD1, portD2, portK, portM;
   int                         closedSd, sdA, sdB, sdW, sdD1, sdD2, sdK, sdM;
   union sockaddr_union        addrA, addrB, addrW, addrD1, addrD2, addrK, addrM[2], addrs33[33];
   struct EndpointAddressInfo  eai, eaiB, eaiW, eaiD1, eaiD2, eaiK, eaiM;
   struct EndpointAddressInfo  sentinel;
   struct EndpointAddressInfo* res;
   unsigned long long          t0, registeredK;
   uint32_t                    idA, id;
   unsigned int                r;
   int                         i, sawD1, sawD2, error;

   if (registrar == NULL) {
      fprintf(stderr, "usage: test_basic_mode REGISTRAR-ADDRESS:PORT\n");
      return 2;
   }
   unsetenv("RSPLIB_REGISTRAR");
   closedSd = boundSocket(0, &closedPort); /* bound, not listening: connects are refused */
   snprintf(closed, sizeof(closed), "127.0.0.1:%u", (unsigned int)closedPort);
   sdA  = boundSocket(1, &portA);
   sdB  = boundSocket(1, &portB);
   sdW  = boundSocket(1, &portW);
   sdD1 = boundSocket(1, &portD1);
   sdD2 = boundSocket(1, &portD2);
   sdK  = boundSocket(1, &portK);
   sdM  = boundSocket(1, &portM);

   /* ---- 1. Before rspInitialize ------------------------------------------------------ */
   checkNotInitialized();
   rspCleanUp(); /* no-op */
   {
      struct timeval zero = { 0, 0 };
      int            n    = rspSelect(0, NULL, NULL, NULL, &zero);
      CHECK((n == 0) || ((n == -1) && (errno == EINVAL)));
   }
   CHECK(rspGetErrorDescription(RSPERR_OKAY) != NULL);
   CHECK(rspGetErrorDescription(0xdeadbeef) != NULL);
   CHECK(strlen(rspGetErrorDescription(0xdeadbeef)) > 0);
   CHECK(strcmp(rspGetErrorDescription(RSPERR_NOT_FOUND), rspGetErrorDescription(RSPERR_OKAY)) != 0);
   rspFreeEndpointAddressArray(NULL);
   { /* Applications build lists with malloc and free them with rspFreeEndpointAddressArray. */
      struct EndpointAddressInfo* a = malloc(sizeof(*a));
      struct EndpointAddressInfo* b = malloc(sizeof(*b));
      memset(a, 0, sizeof(*a));
      memset(b, 0, sizeof(*b));
      a->ai_addrs = 2;
      a->ai_addr  = malloc(2 * sizeof(union sockaddr_union));
      a->ai_next  = b;
      b->ai_addr  = NULL;
      rspFreeEndpointAddressArray(a);
   }

   /* ---- 2. No registrar reachable; bad registrar strings; clean-up ------------------- */
   {
      struct TagItem tags[] = {
         { TAG_RspLib_RegistrarConnectTimeout, 200000 },
         { TAG_RspLib_RegistrarConnectMaxTrials, 2 },
         { TAG_RspLib_GetVersion, 99 },
         { TAG_RspLib_GetRevision, 0 },
         { TAG_DONE, 0 }
      };
      CHECK_EQ(rspInitialize(tags), RSPERR_OKAY);
      CHECK_EQ(tags[2].Data, RSPLIB_VERSION);
      CHECK_EQ(tags[3].Data, RSPLIB_REVISION);
   }
   CHECK_EQ(rspAddStaticRegistrar("nonsense"), RSPERR_UNRECOGNIZED_PARAMETER);
   CHECK_EQ(rspGetLastError(), RSPERR_UNRECOGNIZED_PARAMETER);
   CHECK_EQ(rspAddStaticRegistrar("1.2.3.4:99999"), RSPERR_UNRECOGNIZED_PARAMETER);
   CHECK_EQ(rspAddStaticRegistrar(""), RSPERR_INVALID_VALUES);
   CHECK_EQ(rspAddStaticRegistrar(NULL), RSPERR_INVALID_VALUES);
   CHECK_EQ(rspAddStaticNameServer("nonsense"), RSPERR_UNRECOGNIZED_PARAMETER);
   CHECK_EQ(rspAddStaticNameServer(""), RSPERR_INVALID_VALUES);
   CHECK_EQ(rspAddStaticRegistrar(closed), RSPERR_OKAY);
   CHECK_EQ(rspGetLastError(), RSPERR_OKAY);

   setAddress(&addrA, "127.0.0.1", portA);
   makeEai(&eai, &addrA, 1, IPPROTO_TCP, 0);
   t0 = nowUs();
   CHECK_EQ(rspRegister(PH("BasicNoRegistrar"), &eai, NULL), RSPERR_NO_REGISTRAR);
   printf("no registrar reachable: answer after %.2f s\n", (double)(nowUs() - t0) / 1e6);
   CHECK(nowUs() - t0 < 30000000ULL); /* 2 × 200 ms, plus valgrind's slowness */
   CHECK_EQ(eai.ai_pe_id, 0);         /* reset on failure */
   CHECK_EQ(rspGetLastError(), RSPERR_NO_REGISTRAR);
   res = &sentinel;
   CHECK_EQ(rspHandleResolution(PH("BasicNoRegistrar"), &res, NULL), RSPERR_NO_REGISTRAR);
   CHECK(res == NULL);
   dropResult(res, &sentinel);
   CHECK_EQ(rspGetLastError(), RSPERR_NO_REGISTRAR);
   CHECK(strcmp(rspGetLastErrorDescription(), rspGetErrorDescription(RSPERR_NO_REGISTRAR)) == 0);
   rspCleanUp();
   rspCleanUp(); /* twice is fine */
   checkNotInitialized();

   /* ---- 3. A real registrar, given through RSPLIB_REGISTRAR --------------------------- */
   setenv("RSPLIB_REGISTRAR", registrar, 1);
   {
      struct TagItem tags[] = {
         { TAG_RspLib_CacheElementTimeout, 30000000 }, /* 30 s: the cache tests rely on it */
         { TAG_DONE, 0 }
      };
      CHECK_EQ(rspInitialize(tags), RSPERR_OKAY);
   }

   /* 3.1 A PE that must stay registered by the library's thread alone (checked at the end). */
   setAddress(&addrK, "127.0.0.1", portK);
   makeEai(&eaiK, &addrK, 1, IPPROTO_TCP, 0x0000a00b);
   CHECK_EQ(rspRegister(PH("BasicKeepAlive"), &eaiK, NULL), RSPERR_OKAY);
   registeredK = nowUs();

   /* 3.2 Bad arguments. */
   makeEai(&eai, &addrA, 1, IPPROTO_TCP, 0);
   CHECK_EQ(rspRegister(NULL, 0, &eai, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK_EQ(rspRegister(NULL, 5, &eai, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK_EQ(rspRegister((const unsigned char*)"x", 0, &eai, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK_EQ(rspRegister(PH(LONG_HANDLE), &eai, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK_EQ(rspGetLastError(), RSPERR_INVALID_POOL_HANDLE);
   CHECK(strcmp(rspGetLastErrorDescription(), rspGetErrorDescription(RSPERR_INVALID_POOL_HANDLE)) == 0);
   CHECK_EQ(rspDeregister(NULL, 0, 1, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK_EQ(rspDeregister((const unsigned char*)"x", 0, 1, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK_EQ(rspDeregister(PH(LONG_HANDLE), 1, NULL), RSPERR_INVALID_POOL_HANDLE);
   res = &sentinel;
   CHECK_EQ(rspHandleResolution(NULL, 0, &res, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK(res == NULL);
   dropResult(res, &sentinel);
   res = &sentinel;
   CHECK_EQ(rspHandleResolution((const unsigned char*)"x", 0, &res, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK(res == NULL);
   dropResult(res, &sentinel);
   res = &sentinel;
   CHECK_EQ(rspHandleResolution(PH(LONG_HANDLE), &res, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK(res == NULL);
   dropResult(res, &sentinel);
   res = &sentinel;
   CHECK_EQ(rspNameResolution(PH(LONG_HANDLE), &res, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK(res == NULL);
   dropResult(res, &sentinel);
   CHECK(rspHandleResolution(PH("BasicA"), NULL, NULL) != RSPERR_OKAY);
   CHECK_EQ(rspReportFailure(NULL, 0, 1, NULL), RSPERR_INVALID_POOL_HANDLE);
   CHECK_EQ(rspReportFailure(PH(LONG_HANDLE), 1, NULL), RSPERR_INVALID_POOL_HANDLE);
   (void)rspFailure(PH(LONG_HANDLE), 1, NULL);
   CHECK_EQ(rspGetLastError(), RSPERR_INVALID_POOL_HANDLE);

   r = rspRegister(PH("BasicA"), NULL, NULL);
   CHECK((r == RSPERR_INVALID_ADDRESSES) || (r == RSPERR_INVALID_VALUES));
   makeEai(&eai, &addrA, 0, IPPROTO_TCP, 0); /* no addresses */
   r = rspRegister(PH("BasicA"), &eai, NULL);
   CHECK((r == RSPERR_INVALID_ADDRESSES) || (r == RSPERR_INVALID_VALUES));
   makeEai(&eai, NULL, 1, IPPROTO_TCP, 0);   /* one address, but no array */
   r = rspRegister(PH("BasicA"), &eai, NULL);
   CHECK((r == RSPERR_INVALID_ADDRESSES) || (r == RSPERR_INVALID_VALUES));
   for (i = 0; i < 33; i++) {
      char ip[32];
      snprintf(ip, sizeof(ip), "127.0.0.%d", i + 1);
      setAddress(&addrs33[i], ip, portA);
   }
   makeEai(&eai, addrs33, 33, IPPROTO_TCP, 0); /* more than 32 addresses */
   r = rspRegister(PH("BasicA"), &eai, NULL);
   CHECK((r == RSPERR_INVALID_ADDRESSES) || (r == RSPERR_INVALID_VALUES));
   makeEai(&eai, &addrA, 1, 99, 0);          /* not a transport protocol */
   CHECK(rspRegister(PH("BasicA"), &eai, NULL) != RSPERR_OKAY);
   res = &sentinel;
   CHECK_EQ(rspHandleResolution(PH("NoSuchPool"), &res, NULL), RSPERR_NOT_FOUND);
   CHECK(res == NULL);
   dropResult(res, &sentinel);
   CHECK_EQ(rspGetLastError(), RSPERR_NOT_FOUND);

   /* 3.3 Register with id 0 and NULL tags: a random id is stored back; resolve finds it. */
   makeEai(&eai, &addrA, 1, IPPROTO_TCP, 0);
   CHECK_EQ(rspRegister(PH("BasicA"), &eai, NULL), RSPERR_OKAY);
   CHECK_EQ(rspGetLastError(), RSPERR_OKAY);
   CHECK(eai.ai_pe_id != 0);
   idA = eai.ai_pe_id;
   res = NULL;
   CHECK_EQ(rspHandleResolution(PH("BasicA"), &res, NULL), RSPERR_OKAY);
   CHECK(res != NULL);
   if (res != NULL) {
      CHECK_EQ(res->ai_pe_id, idA);
      CHECK_EQ(res->ai_family, AF_INET);
      CHECK_EQ(res->ai_socktype, SOCK_STREAM);
      CHECK_EQ(res->ai_protocol, IPPROTO_TCP);
      CHECK_EQ(res->ai_addrlen, sizeof(union sockaddr_union));
      CHECK_EQ(res->ai_addrs, 1);
      CHECK(res->ai_next == NULL);
      CHECK(res->ai_addr != NULL);
      if ((res->ai_addr != NULL) && (res->ai_addrs >= 1)) {
         CHECK_EQ(res->ai_addr[0].sa.sa_family, AF_INET);
         CHECK_EQ(ntohs(res->ai_addr[0].in.sin_port), portA);
         CHECK_EQ(ntohl(res->ai_addr[0].in.sin_addr.s_addr), INADDR_LOOPBACK);
      }
   }
   rspFreeEndpointAddressArray(res);
   res = NULL;
   CHECK_EQ(rspNameResolution(PH("BasicA"), &res, NULL), RSPERR_OKAY);
   CHECK((res != NULL) && (res->ai_pe_id == idA));
   rspFreeEndpointAddressArray(res);

   /* 3.4 Re-registration with the same id, with policy tags and tags the library ignores. */
   {
      struct TagItem tags[] = {
         { TAG_PoolPolicy_Type, PPT_ROUNDROBIN },
         { TAG_IGNORE, 12345 },
         { TAG_USER + 424242, 1 },                    /* unknown: ignored */
         { TAG_PoolPolicy_Parameter_Weight, 7 },
         { TAG_PoolElement_RegistrationLife, 60000000 },
         { TAG_DONE, 0 }
      };
      CHECK_EQ(rspRegister(PH("BasicA"), &eai, tags), RSPERR_OKAY);
      CHECK_EQ(eai.ai_pe_id, idA);
      CHECK_EQ(rspRegister(PH("BasicA"), &eai, tags), RSPERR_OKAY);
      CHECK_EQ(eai.ai_pe_id, idA);
   }

   /* 3.5 A second PE with a given id, weighted round robin in its own pool. */
   {
      struct TagItem tags[] = {
         { TAG_PoolPolicy_Type, PPT_WEIGHTED_ROUNDROBIN },
         { TAG_PoolPolicy_Parameter_Weight, 3 },
         { TAG_DONE, 0 }
      };
      setAddress(&addrB, "127.0.0.1", portB);
      makeEai(&eaiB, &addrB, 1, IPPROTO_TCP, 0x0000b001);
      CHECK_EQ(rspRegister(PH("BasicB"), &eaiB, tags), RSPERR_OKAY);
      CHECK_EQ(eaiB.ai_pe_id, 0x0000b001);
      CHECK_EQ(resolveId("BasicB", &id), RSPERR_OKAY);
      CHECK_EQ(id, 0x0000b001);
   }

   /* 3.6 A PE on the wildcard address gets the address it reaches the registrar from. */
   setAddress(&addrW, "0.0.0.0", portW);
   makeEai(&eaiW, &addrW, 1, IPPROTO_TCP, 0x0000beef);
   CHECK_EQ(rspRegister(PH("BasicWildcard"), &eaiW, NULL), RSPERR_OKAY);
   res = NULL;
   CHECK_EQ(rspHandleResolution(PH("BasicWildcard"), &res, NULL), RSPERR_OKAY);
   if (res != NULL) {
      CHECK_EQ(res->ai_pe_id, 0x0000beef);
      CHECK_EQ(res->ai_addrs, 1);
      CHECK_EQ(ntohl(res->ai_addr[0].in.sin_addr.s_addr), INADDR_LOOPBACK);
      CHECK_EQ(ntohs(res->ai_addr[0].in.sin_port), portW);
   }
   else {
      CHECK(res != NULL);
   }
   rspFreeEndpointAddressArray(res);

   /* 3.7 Several addresses (28-byte stride): the registrar keeps only those the PE really
      has (over TCP: the connection's address); the port is the first address's. */
   setAddress(&addrM[0], "127.0.0.2", portM);
   setAddress(&addrM[1], "127.0.0.1", 0);
   makeEai(&eaiM, &addrM[0], 1, IPPROTO_TCP, 0x0000aaab); /* only an address we do not have */
   CHECK_EQ(rspRegister(PH("BasicMulti"), &eaiM, NULL), RSPERR_NO_USABLE_USER_ADDRESSES);
   makeEai(&eaiM, addrM, 2, IPPROTO_TCP, 0x0000aaaa);
   CHECK_EQ(rspRegister(PH("BasicMulti"), &eaiM, NULL), RSPERR_OKAY);
   res = NULL;
   CHECK_EQ(rspHandleResolution(PH("BasicMulti"), &res, NULL), RSPERR_OKAY);
   if ((res != NULL) && (res->ai_addrs == 1)) {
      CHECK_EQ(res->ai_pe_id, 0x0000aaaa);
      CHECK_EQ(ntohl(res->ai_addr[0].in.sin_addr.s_addr), INADDR_LOOPBACK);
      CHECK_EQ(ntohs(res->ai_addr[0].in.sin_port), portM);
   }
   else {
      CHECK((res != NULL) && (res->ai_addrs == 1));
   }
   rspFreeEndpointAddressArray(res);

   /* 3.8 The longest pool handle (32 bytes) works. */
   makeEai(&eai, &addrA, 1, IPPROTO_TCP, 0x32323232);
   CHECK_EQ(rspRegister(PH(MAX_HANDLE), &eai, NULL), RSPERR_OKAY);
   CHECK_EQ(resolveId(MAX_HANDLE, &id), RSPERR_OKAY);
   CHECK_EQ(id, 0x32323232);
   CHECK_EQ(rspDeregister(PH(MAX_HANDLE), 0x32323232, NULL), RSPERR_OKAY);

   /* 3.9 Deregistration: the pool is empty afterwards. */
   CHECK_EQ(rspDeregister(PH("BasicA"), idA, NULL), RSPERR_OKAY);
   res = &sentinel;
   CHECK_EQ(rspHandleResolution(PH("BasicA"), &res, NULL), RSPERR_NOT_FOUND);
   CHECK(res == NULL);
   dropResult(res, &sentinel);
   CHECK_EQ(rspGetLastError(), RSPERR_NOT_FOUND);

   /* 3.10 Failure reports: a reported PE leaves the local cache at once (the other PE of the
      pool is selected from the cache). The registrar removes a PE after reports from
      -maxbadpereports distinct hosts; this test is one host, so its reports count once. */
   setAddress(&addrD1, "127.0.0.1", portD1);
   setAddress(&addrD2, "127.0.0.1", portD2);
   makeEai(&eaiD1, &addrD1, 1, IPPROTO_TCP, 0x0000d001);
   makeEai(&eaiD2, &addrD2, 1, IPPROTO_TCP, 0x0000d002);
   CHECK_EQ(rspRegister(PH("BasicReport"), &eaiD1, NULL), RSPERR_OKAY);
   CHECK_EQ(rspRegister(PH("BasicReport"), &eaiD2, NULL), RSPERR_OKAY);
   sawD1 = sawD2 = 0;
   for (i = 0; i < 6; i++) {
      CHECK_EQ(resolveId("BasicReport", &id), RSPERR_OKAY);
      sawD1 |= (id == 0x0000d001);
      sawD2 |= (id == 0x0000d002);
   }
   CHECK(sawD1 && sawD2); /* round robin over both */
   CHECK_EQ(rspReportFailure(PH("BasicReport"), 0x0000d001, NULL), RSPERR_OKAY);
   sawD1 = sawD2 = 0;
   for (i = 0; i < 6; i++) {
      CHECK_EQ(resolveId("BasicReport", &id), RSPERR_OKAY);
      sawD1 |= (id == 0x0000d001);
      sawD2 |= (id == 0x0000d002);
   }
   CHECK(!sawD1 && sawD2);
   (void)rspFailure(PH("BasicReport"), 0x0000d001, NULL);
   CHECK_EQ(rspGetLastError(), RSPERR_OKAY);
   CHECK_EQ(rspReportFailure(PH("BasicReport"), 0x0000d001, NULL), RSPERR_OKAY);
   /* D2 leaves; the registrar still has D1 (one host's reports) and gives it back. */
   CHECK_EQ(rspDeregister(PH("BasicReport"), 0x0000d002, NULL), RSPERR_OKAY);
   CHECK_EQ(resolveUntilId("BasicReport", 0x0000d001, 5000), RSPERR_OKAY);
   CHECK_EQ(rspDeregister(PH("BasicReport"), 0x0000d001, NULL), RSPERR_OKAY);
   CHECK_EQ(resolveUntilNotFound("BasicReport", 5000), RSPERR_NOT_FOUND);

   /* 3.11 rspSelect: select() semantics for the caller's fds, library fds never reported. */
   {
      int            p[2];
      int            bad;
      fd_set         rs, ws, es;
      struct timeval tv;
      unsigned long long t;
      CHECK(pipe(p) == 0);
      FD_ZERO(&rs);
      FD_SET(p[0], &rs);
      tv.tv_sec  = 0;
      tv.tv_usec = 300000;
      t = nowUs();
      CHECK_EQ(rspSelect(p[0] + 1, &rs, NULL, NULL, &tv), 0);
      CHECK(!FD_ISSET(p[0], &rs));
      CHECK(nowUs() - t < 5000000ULL);
      CHECK(write(p[1], "x", 1) == 1);
      FD_ZERO(&rs);
      FD_ZERO(&ws);
      FD_ZERO(&es);
      FD_SET(p[0], &rs);
      FD_SET(p[1], &ws);
      FD_SET(p[0], &es);
      tv.tv_sec  = 5;
      tv.tv_usec = 0;
      CHECK_EQ(rspSelect(((p[0] > p[1]) ? p[0] : p[1]) + 1, &rs, &ws, &es, &tv), 2);
      CHECK(FD_ISSET(p[0], &rs));
      CHECK(FD_ISSET(p[1], &ws));
      CHECK_EQ(bitsSet(&rs), 1);
      CHECK_EQ(bitsSet(&ws), 1);
      CHECK_EQ(bitsSet(&es), 0);
      /* NULL timeout with a ready fd returns at once. */
      FD_ZERO(&rs);
      FD_SET(p[0], &rs);
      CHECK_EQ(rspSelect(p[0] + 1, &rs, NULL, NULL, NULL), 1);
      /* Zero timeout polls. */
      FD_ZERO(&rs);
      FD_SET(p[0], &rs);
      tv.tv_sec  = 0;
      tv.tv_usec = 0;
      CHECK_EQ(rspSelect(p[0] + 1, &rs, NULL, NULL, &tv), 1);
      /* Library traffic (keep-alives for our PEs) runs while we wait with empty sets over all
         fds: nothing is reported to us. */
      error = 0;
      t     = nowUs();
      while (nowUs() - t < 2500000ULL) {
         int n;
         FD_ZERO(&rs);
         FD_ZERO(&ws);
         FD_ZERO(&es);
         tv.tv_sec  = 0;
         tv.tv_usec = 250000;
         n = rspSelect(FD_SETSIZE, &rs, &ws, &es, &tv);
         if ((n != 0) || bitsSet(&rs) || bitsSet(&ws) || bitsSet(&es)) {
            error = 1;
         }
      }
      CHECK(!error);
      /* A closed fd: -1 with errno EBADF, as select() does. */
      bad = dup(p[0]);
      close(bad);
      FD_ZERO(&rs);
      FD_SET(bad, &rs);
      tv.tv_sec  = 1;
      tv.tv_usec = 0;
      errno = 0;
      CHECK_EQ(rspSelect(bad + 1, &rs, NULL, NULL, &tv), -1);
      CHECK_EQ(errno, EBADF);
      close(p[0]);
      close(p[1]);
   }

   /* 3.12 The last error is per thread. */
   {
      pthread_t           thread;
      struct ThreadResult tr = { 0, 0 };
      CHECK_EQ(resolveId("BasicB", &id), RSPERR_OKAY);
      CHECK(pthread_create(&thread, NULL, failingThread, &tr) == 0);
      pthread_join(thread, NULL);
      CHECK_EQ(tr.Call, RSPERR_INVALID_POOL_HANDLE);
      CHECK_EQ(tr.Last, RSPERR_INVALID_POOL_HANDLE);
      CHECK_EQ(rspGetLastError(), RSPERR_OKAY);
   }

   /* 3.13 The keep-alive PE is still there after several keep-alive rounds, without our
      calling rspSelect (the library's thread answers); first resolution of that pool, so the
      answer comes from the registrar. */
   {
      const unsigned long long wanted = 8000000ULL;
      const unsigned long long spent  = nowUs() - registeredK;
      if (spent < wanted) {
         sleepMs((unsigned long)((wanted - spent) / 1000));
      }
      CHECK_EQ(resolveId("BasicKeepAlive", &id), RSPERR_OKAY);
      CHECK_EQ(id, 0x0000a00b);
   }

   /* 3.14 rspCleanUp deregisters (or drops) what is still registered. */
   rspCleanUp();
   checkNotInitialized();

   /* ---- 4. RSPLIB_REGISTRAR with two registrars, the first one dead ------------------- */
   snprintf(twoRegistrars, sizeof(twoRegistrars), "%s;%s", closed, registrar);
   setenv("RSPLIB_REGISTRAR", twoRegistrars, 1);
   CHECK_EQ(rspInitialize(NULL), RSPERR_OKAY);
   CHECK_EQ(resolveUntilNotFound("BasicKeepAlive", 5000), RSPERR_NOT_FOUND);
   CHECK_EQ(resolveUntilNotFound("BasicB", 5000), RSPERR_NOT_FOUND);
   makeEai(&eai, &addrA, 1, IPPROTO_TCP, 0);
   CHECK_EQ(rspRegister(PH("BasicEnv"), &eai, NULL), RSPERR_OKAY);
   CHECK_EQ(resolveId("BasicEnv", &id), RSPERR_OKAY);
   CHECK((id != 0) && (id == eai.ai_pe_id));
   CHECK_EQ(rspDeregister(PH("BasicEnv"), eai.ai_pe_id, NULL), RSPERR_OKAY);
   rspCleanUp();
   unsetenv("RSPLIB_REGISTRAR");

   close(closedSd);
   close(sdA);
   close(sdB);
   close(sdW);
   close(sdD1);
   close(sdD2);
   close(sdK);
   close(sdM);
   return TEST_SUMMARY();
}
