/*
 * The handlespace workload of benches/handlespace.rs, run against Debian's rsplib 3.4
 * handlespace library (librsphsmgt.so.3, class SimpleRedBlackTree), loaded with dlopen().
 *
 * Our own code: the types below are declared from the layout facts of rsplib's public
 * headers (struct sizes we do not need are over-allocated; the one field offset we read, a
 * pool element's identifier, is checked at run time against the ids we registered).
 *
 *   harness [-l LIB] [-s 1000,10000] [-L single,pools] [-p RR,LU,...] [-r REPS] [-w WARMUP]
 *
 * One line per (layout, size, policy) on stdout:
 *   HS impl=rsplib layout=single n=1000 pools=1 policy=LU reg=… rereg=… hr=… dereg=… bpe=…
 * rates in operations per second (median of REPS runs, default 1, after WARMUP runs that are
 * not counted, default 0: the first touches of fresh memory are paid there), bpe = heap bytes per PE
 * after registration (glibc's mallinfo2: chunk sizes, so malloc's per-block overhead included,
 * and the PE's copied transport address block of 52 bytes included).
 * Exit status 77 if the library cannot be loaded (the driver then skips).
 *
 * Workload (as benches/handlespace.rs): PE ids ((i + 1) * 0x9e3779b1) mod 2^32; PE i goes to
 * pool i mod pools ("pool-%05u"; pools = 1 or n / 100); time i µs at registration, n + i at
 * re-registration, and every (re-)registration restarts the PE's expiry timer (90 s), as
 * rsplib's registrar re-arms a timer on each; re-registration changes load and weight; 100 000
 * resolutions of 3 PEs (maxIncrement 0 = the policy's default, as the registrar) from pools
 * drawn by a xorshift64 from 0x12345678; deregistration in registration order.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

/* ---- declarations from the layout facts of rsplib's headers ----------------------------- */

#define POOL_HANDLE_MAX 32
struct PoolHandle {
   size_t        Size;
   unsigned char Handle[POOL_HANDLE_MAX];
};

struct PoolPolicySettings {
   unsigned int PolicyType;
   unsigned int Weight;
   unsigned int Load;
   unsigned int LoadDegradation;
   unsigned int LoadDPF;
   unsigned int WeightDPF;
   unsigned int Distance;
};

union AddressUnion {
   struct sockaddr     sa;
   struct sockaddr_in  in;
   struct sockaddr_in6 in6;
};

/* A block with exactly one address (the library copies it). */
struct TransportBlock1 {
   void*              Next;
   int                Protocol;
   uint16_t           Port;
   uint16_t           Flags;
   size_t             Addresses;
   union AddressUnion Address[1];
};

/* The management object embeds the whole handlespace node (trees, checksums, ...): opaque to
   us, over-allocated. */
#define MANAGEMENT_BYTES 65536

/* A pool element node starts with five tree nodes (three pointers, a colour, two 64-bit
   values: 48 bytes each) and the owner pool pointer; then the 32-bit identifier. */
#define PE_ID_OFFSET (5 * 48 + 8)

typedef void (*new_fn)(void* mgmt, uint32_t home, void* d1, void* d2, void* user);
typedef void (*delete_fn)(void* mgmt);
typedef unsigned int (*register_fn)(void* mgmt, const struct PoolHandle* ph, uint32_t home,
                                    uint32_t id, unsigned int life,
                                    const struct PoolPolicySettings* pps,
                                    const void* userTransport, const void* registratorTransport,
                                    int sd, int32_t assoc, unsigned long long now, void** node);
typedef void (*restart_fn)(void* mgmt, void* node, unsigned long long timeout);
typedef unsigned int (*resolve_fn)(void* mgmt, const struct PoolHandle* ph, void** nodes,
                                   size_t* count, size_t max, size_t maxIncrement);
typedef unsigned int (*deregister_fn)(void* mgmt, const struct PoolHandle* ph, uint32_t id);
typedef void* (*find_fn)(void* mgmt, const struct PoolHandle* ph, uint32_t id);
typedef size_t (*count_fn)(const void* mgmt);

static new_fn        hsNew;
static delete_fn     hsDelete;
static register_fn   hsRegister;
static restart_fn    hsRestart;
static resolve_fn    hsResolve;
static deregister_fn hsDeregister;
static find_fn       hsFind;
static count_fn      hsCount;

/* ---- the workload ------------------------------------------------------------------------ */

struct Policy {
   const char*  name;
   unsigned int code;
};

/* Short names shared with benches/handlespace.rs (HS_BENCH_POLICY), wire codes of RFC 5356 and
   rsplib's extensions. */
static const struct Policy POLICIES[] = {
   {"RR", 0x00000001},       {"WRR", 0x00000002},      {"RAND", 0x00000003},
   {"WRAND", 0x00000004},    {"PRIO", 0x00000005},     {"LU", 0x40000001},
   {"LUD", 0x40000002},      {"PLU", 0x40000003},      {"RLU", 0x40000004},
   {"RPLU", 0xb0001001},     {"RLUD", 0xb0001002},     {"PLUD", 0xb0001003},
   {"RPLUD", 0xb0001004},    {"WRANDDPF", 0xb0002001}, {"LUDPF", 0xb0002002},
   {"LUDDPF", 0xb0002003},   {"PLUDPF", 0xb0002004},   {"PLUDDPF", 0xb0002005},
};
#define POLICY_COUNT (sizeof(POLICIES) / sizeof(POLICIES[0]))

static uint32_t pe_id(size_t i)
{
   return (uint32_t)(i + 1) * 0x9e3779b1u;
}

/* The policy values of PE i in generation g (0: registration, 1: re-registration); the same
   formulas as benches/handlespace.rs. */
static void policy_of(size_t i, unsigned int code, uint32_t g, struct PoolPolicySettings* pps)
{
   memset(pps, 0, sizeof(*pps));
   pps->PolicyType      = code;
   pps->Weight          = 1 + ((uint32_t)i + g) % 7;
   pps->Load            = (((uint32_t)i * 2654435761u) >> 8) + g;
   pps->LoadDegradation = 1u << 20;
   pps->LoadDPF         = 1u << 12;
   pps->WeightDPF       = 1u << 12;
   pps->Distance        = (uint32_t)(i % 50);
}

static void transport_of(size_t i, struct TransportBlock1* t)
{
   memset(t, 0, sizeof(*t));
   t->Protocol                 = IPPROTO_SCTP;
   t->Port                     = 4711;
   t->Addresses                = 1;
   t->Address[0].in.sin_family = AF_INET;
   t->Address[0].in.sin_port   = htons(4711);
   t->Address[0].in.sin_addr.s_addr = htonl((uint32_t)i + 1);
}

static double now_s(void)
{
   struct timespec ts;
   clock_gettime(CLOCK_MONOTONIC, &ts);
   return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char* what)
{
   fprintf(stderr, "harness: %s\n", what);
   exit(1);
}

static uint32_t node_id(const void* node)
{
   uint32_t id;
   memcpy(&id, (const char*)node + PE_ID_OFFSET, sizeof(id));
   return id;
}

#define RESOLUTIONS 100000
#define LIFE_MS     90000

/* One run: rates of [reg, rereg, hr, dereg] and heap bytes per PE. */
static void run(size_t n, size_t pools, unsigned int code, const struct PoolHandle* handles,
                double rates[4], double* bpe)
{
   void*                     mgmt = calloc(1, MANAGEMENT_BYTES);
   struct PoolPolicySettings pps;
   struct TransportBlock1    t;
   void*                     node;
   double                    t0;
   size_t                    i;

   if(!mgmt) die("out of memory");
   hsNew(mgmt, 1, NULL, NULL, NULL);

   struct mallinfo2 before = mallinfo2();
   t0 = now_s();
   for(i = 0; i < n; i++) {
      policy_of(i, code, 0, &pps);
      transport_of(i, &t);
      node = NULL;
      if(hsRegister(mgmt, &handles[i % pools], 1 + (uint32_t)(i % 3), pe_id(i), LIFE_MS, &pps,
                    &t, NULL, -1, 0, (unsigned long long)i, &node) != 0) {
         die("registration refused");
      }
      hsRestart(mgmt, node, (unsigned long long)LIFE_MS * 1000);
      if(i == 0 && node_id(node) != pe_id(0)) {
         die("layout check failed: a registered node does not carry its identifier where "
             "expected");
      }
   }
   rates[0] = n / (now_s() - t0);
   struct mallinfo2 after = mallinfo2();
   *bpe = ((double)after.uordblks - (double)before.uordblks) / n;
   if(hsCount(mgmt) != n) die("wrong number of PEs after registration");

   t0 = now_s();
   for(i = 0; i < n; i++) {
      policy_of(i, code, 1, &pps);
      transport_of(i, &t);
      if(hsRegister(mgmt, &handles[i % pools], 1 + (uint32_t)(i % 3), pe_id(i), LIFE_MS, &pps,
                    &t, NULL, -1, 0, (unsigned long long)(n + i), &node) != 0) {
         die("re-registration refused");
      }
      hsRestart(mgmt, node, (unsigned long long)LIFE_MS * 1000);
   }
   rates[1] = n / (now_s() - t0);
   if(hsCount(mgmt) != n) die("re-registration added PEs");

   void*    nodes[3];
   size_t   count;
   uint64_t x = 0x12345678;
   t0 = now_s();
   for(i = 0; i < RESOLUTIONS; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      count = 3;
      if(hsResolve(mgmt, &handles[x % pools], nodes, &count, 3, 0) != 0) {
         die("resolution failed");
      }
   }
   rates[2] = RESOLUTIONS / (now_s() - t0);

   /* Check (untimed): resolutions return PEs of the pool asked for, found again by their ids. */
   for(i = 0; i < 100; i++) {
      const struct PoolHandle* h = &handles[i % pools];
      size_t                   k;
      count = 3;
      if(hsResolve(mgmt, h, nodes, &count, 3, 0) != 0) die("check resolution failed");
      if(count != (n / pools < 3 ? n / pools : 3)) die("resolution returned too few PEs");
      for(k = 0; k < count; k++) {
         if(hsFind(mgmt, h, node_id(nodes[k])) != nodes[k]) {
            die("layout check failed: a resolved node is not the PE of its identifier");
         }
      }
   }

   t0 = now_s();
   for(i = 0; i < n; i++) {
      if(hsDeregister(mgmt, &handles[i % pools], pe_id(i)) != 0) die("deregistration failed");
   }
   rates[3] = n / (now_s() - t0);
   if(hsCount(mgmt) != 0) die("PEs left after deregistration");

   hsDelete(mgmt);
   free(mgmt);
}

static int cmp_double(const void* a, const void* b)
{
   double x = *(const double*)a, y = *(const double*)b;
   return (x > y) - (x < y);
}

static double median(double* v, size_t k)
{
   qsort(v, k, sizeof(double), cmp_double);
   return (k % 2) ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

static void* sym(void* lib, const char* name)
{
   void* p = dlsym(lib, name);
   if(!p) {
      fprintf(stderr, "harness: %s not found in the library\n", name);
      exit(77);
   }
   return p;
}

int main(int argc, char** argv)
{
   const char* libname  = "librsphsmgt.so.3";
   char        sizes[256]    = "1000,10000,100000,1000000";
   char        layouts[64]   = "single,pools";
   char        policies[512] = "RR,WRR,RAND,WRAND,LU";
   int         reps          = 1;
   int         warmup        = 0;
   int         o;

   for(o = 1; o < argc; o++) {
      const char* v = (o + 1 < argc) ? argv[o + 1] : NULL;
      if(!v) die("option without value");
      if(!strcmp(argv[o], "-l")) libname = v;
      else if(!strcmp(argv[o], "-s")) snprintf(sizes, sizeof(sizes), "%s", v);
      else if(!strcmp(argv[o], "-L")) snprintf(layouts, sizeof(layouts), "%s", v);
      else if(!strcmp(argv[o], "-p")) snprintf(policies, sizeof(policies), "%s", v);
      else if(!strcmp(argv[o], "-r")) reps = atoi(v);
      else if(!strcmp(argv[o], "-w")) warmup = atoi(v);
      else die("usage: harness [-l LIB] [-s SIZES] [-L single,pools] [-p POLICIES] [-r REPS] [-w WARMUP]");
      o++;
   }
   if(reps < 1 || reps > 100) die("-r: 1 to 100");
   if(warmup < 0 || warmup > 100) die("-w: 0 to 100");

   void* lib = dlopen(libname, RTLD_NOW | RTLD_LOCAL);
   if(!lib) {
      fprintf(stderr, "harness: cannot load %s: %s\n", libname, dlerror());
      return 77;
   }
#define SRBT "_SimpleRedBlackTree"
   hsNew        = (new_fn)sym(lib, "poolHandlespaceManagementNew" SRBT);
   hsDelete     = (delete_fn)sym(lib, "poolHandlespaceManagementDelete" SRBT);
   hsRegister   = (register_fn)sym(lib, "poolHandlespaceManagementRegisterPoolElement" SRBT);
   hsRestart    = (restart_fn)sym(lib, "poolHandlespaceManagementRestartPoolElementExpiryTimer" SRBT);
   hsResolve    = (resolve_fn)sym(lib, "poolHandlespaceManagementHandleResolution" SRBT);
   hsDeregister = (deregister_fn)sym(lib, "poolHandlespaceManagementDeregisterPoolElement" SRBT);
   hsFind       = (find_fn)sym(lib, "poolHandlespaceManagementFindPoolElement" SRBT);
   hsCount      = (count_fn)sym(lib, "poolHandlespaceManagementGetPoolElements" SRBT);

   char* lsave;
   for(char* layout = strtok_r(layouts, ",", &lsave); layout;
       layout = strtok_r(NULL, ",", &lsave)) {
      int pooled = !strcmp(layout, "pools");
      if(!pooled && strcmp(layout, "single")) die("layout: single or pools");
      char  sizes_copy[256];
      char* ssave;
      snprintf(sizes_copy, sizeof(sizes_copy), "%s", sizes);
      for(char* s = strtok_r(sizes_copy, ",", &ssave); s; s = strtok_r(NULL, ",", &ssave)) {
         size_t n     = strtoul(s, NULL, 10);
         size_t pools = pooled ? n / 100 : 1;
         if(n < 100) die("sizes: at least 100");
         struct PoolHandle* handles = calloc(pools, sizeof(*handles));
         if(!handles) die("out of memory");
         for(size_t p = 0; p < pools; p++) {
            int len = snprintf((char*)handles[p].Handle, POOL_HANDLE_MAX, "pool-%05u",
                               (unsigned int)p);
            handles[p].Size = (size_t)len;
         }
         char  policies_copy[512];
         char* psave;
         snprintf(policies_copy, sizeof(policies_copy), "%s", policies);
         for(char* name = strtok_r(policies_copy, ",", &psave); name;
             name = strtok_r(NULL, ",", &psave)) {
            size_t k;
            for(k = 0; k < POLICY_COUNT && strcmp(POLICIES[k].name, name); k++) {
            }
            if(k == POLICY_COUNT) die("unknown policy name");
            double r[4][100], bpe = 0;
            for(int rep = -warmup; rep < reps; rep++) {
               double rates[4];
               run(n, pools, POLICIES[k].code, handles, rates, &bpe);
               if(rep >= 0) {
                  for(int c = 0; c < 4; c++) r[c][rep] = rates[c];
               }
            }
            printf("HS impl=rsplib layout=%s n=%zu pools=%zu policy=%s reg=%.0f rereg=%.0f "
                   "hr=%.0f dereg=%.0f bpe=%.1f\n",
                   layout, n, pools, name, median(r[0], reps), median(r[1], reps),
                   median(r[2], reps), median(r[3], reps), bpe);
            fflush(stdout);
         }
         free(handles);
      }
   }
   return 0;
}
