/* Compiled in every C language mode with -Wall -Wextra -Werror: all 23 public headers must be
   clean in C89, C99 (with and without <stdbool.h> first), C11 and C2x, with and without
   <netinet/sctp.h> (-DRSPLIB_NO_NETINET_SCTP_H). */
#ifdef INCLUDE_STDBOOL_FIRST
#include <stdbool.h>
#endif
#include "all_headers.h"

/* bool is one byte and usable as a type in every mode. */
typedef char bool_is_one_byte[(sizeof(bool) == 1) ? 1 : -1];
typedef char tagitem_is_16_bytes[(sizeof(struct TagItem) == 16) ? 1 : -1];
typedef char eai_is_56_bytes[(sizeof(struct EndpointAddressInfo) == 56) ? 1 : -1];
typedef char sockaddr_union_is_28_bytes[(sizeof(union sockaddr_union) == 28) ? 1 : -1];
typedef char pps_is_16_bytes[(sizeof(struct PoolPolicySettings) == 16) ? 1 : -1];
typedef char cae_is_24_bytes[(sizeof(struct ComponentAssociationEntry) == 24) ? 1 : -1];
typedef char csph_is_296_bytes[(sizeof(struct ComponentStatusProtocolHeader) == 296) ? 1 : -1];
typedef char cspreporter_is_168_bytes[(sizeof(struct CSPReporter) == 168) ? 1 : -1];
typedef char threadsafety_is_72_bytes[(sizeof(struct ThreadSafety) == 72) ? 1 : -1];
typedef char sctp_assoc_t_is_4_bytes[(sizeof(sctp_assoc_t) == 4) ? 1 : -1];
typedef char tune_tags[(TAG_TuneSCTP_CookieLife == 1015008) ? 1 : -1];

bool headers_c_callback(void* userData);
bool headers_c_callback(void* userData)
{
   return (userData != NULL) ? true : false;
}

int headers_c_use(void);
int headers_c_use(void)
{
   FailoverCallbackPtr cb = headers_c_callback;
   struct TagItem tags[2];
   card64 big = 1;
   struct ThreadSafety ts;
   union sockaddr_union a;
   uint64_t id = CID_COMPOUND(CID_GROUP_POOLELEMENT, 7);
   int sd;
   tags[0].Tag = TAG_PoolPolicy_Type;
   tags[0].Data = PPT_ROUNDROBIN;
   tags[1].Tag = TAG_DONE;
   tags[1].Data = 0;
   threadSafetyNew(&ts, "headers");
   threadSafetyLock(&ts);
   threadSafetyUnlock(&ts);
   threadSafetyDelete(&ts);
   sd = ext_socket(AF_INET, SOCK_DGRAM, 0);
   if (sd >= 0) {
      ext_close(sd);
   }
   CHECK(string2address("127.0.0.1:1", &a));
   return (int)tagListGetData(tags, TAG_PoolPolicy_Type, 0) + (int)big + min(1, 2) + max(0, 1) +
          (cb(NULL) ? 1 : 0) + (rspGetErrorDescription(RSPERR_OKAY) != NULL) +
          (int)CID_GROUP(id) + LOGLEVEL_ERROR + (int)(getMicroTime() > 0) +
          (initLogging("-logcolor=off") ? 1 : 0) + (int)(breakDetected() ? 1 : 0);
}
