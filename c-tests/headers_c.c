/* Compiled in every C language mode with -Wall -Wextra -Werror: the public headers must be
   clean in C89, C99 (with and without <stdbool.h> first), C11 and C2x. */
#ifdef INCLUDE_STDBOOL_FIRST
#include <stdbool.h>
#endif
#include <rsplib.h>
#include <rsplib.h> /* include guards */
#include <tagitem.h>
#include <rsplib-tags.h>
#include <rserpoolerror.h>
#include <poolpolicysettings.h>
#include <sockaddrunion.h>
#include <tdtypes.h>

/* bool is one byte and usable as a type in every mode. */
typedef char bool_is_one_byte[(sizeof(bool) == 1) ? 1 : -1];
typedef char tagitem_is_16_bytes[(sizeof(struct TagItem) == 16) ? 1 : -1];
typedef char eai_is_56_bytes[(sizeof(struct EndpointAddressInfo) == 56) ? 1 : -1];
typedef char sockaddr_union_is_28_bytes[(sizeof(union sockaddr_union) == 28) ? 1 : -1];

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
   tags[0].Tag = TAG_PoolPolicy_Type;
   tags[0].Data = PPT_ROUNDROBIN;
   tags[1].Tag = TAG_DONE;
   tags[1].Data = 0;
   return (int)tagListGetData(tags, TAG_PoolPolicy_Type, 0) + (int)big + min(1, 2) + max(0, 1) +
          (cb(NULL) ? 1 : 0) + (rspGetErrorDescription(RSPERR_OKAY) != NULL);
}
