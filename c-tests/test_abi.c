/* Sizes, offsets and constant values of the classic API (rsplib 0.8/1.0's rsplib.h), written
   out here as the values a program built against the original header has compiled in. */
#include <stddef.h>
#include <rsplib.h>
#include "testlib.h"

static void test_layouts(void)
{
   CHECK_EQ(sizeof(tag_t), 4);
   CHECK_EQ(sizeof(tagdata_t), 8);
   CHECK_EQ(sizeof(struct TagItem), 16);
   CHECK_EQ(offsetof(struct TagItem, Tag), 0);
   CHECK_EQ(offsetof(struct TagItem, Data), 8);

   CHECK_EQ(sizeof(struct EndpointAddressInfo), 56);
   CHECK_EQ(offsetof(struct EndpointAddressInfo, ai_family), 0);
   CHECK_EQ(offsetof(struct EndpointAddressInfo, ai_socktype), 4);
   CHECK_EQ(offsetof(struct EndpointAddressInfo, ai_protocol), 8);
   CHECK_EQ(offsetof(struct EndpointAddressInfo, ai_addrlen), 16);
   CHECK_EQ(offsetof(struct EndpointAddressInfo, ai_addrs), 24);
   CHECK_EQ(offsetof(struct EndpointAddressInfo, ai_addr), 32);
   CHECK_EQ(offsetof(struct EndpointAddressInfo, ai_next), 40);
   CHECK_EQ(offsetof(struct EndpointAddressInfo, ai_pe_id), 48);
   CHECK_EQ(sizeof(((struct EndpointAddressInfo*)0)->ai_pe_id), 4);

   CHECK_EQ(sizeof(union sockaddr_union), 28);
   CHECK_EQ(sizeof(union sockaddr_union), sizeof(struct sockaddr_in6));
   CHECK_EQ(offsetof(union sockaddr_union, sa), 0);
   CHECK_EQ(offsetof(union sockaddr_union, in), 0);
   CHECK_EQ(offsetof(union sockaddr_union, in6), 0);

   CHECK_EQ(sizeof(struct PoolPolicySettings), 16);
   CHECK_EQ(offsetof(struct PoolPolicySettings, PolicyType), 0);
   CHECK_EQ(offsetof(struct PoolPolicySettings, Weight), 4);
   CHECK_EQ(offsetof(struct PoolPolicySettings, Load), 8);
   CHECK_EQ(offsetof(struct PoolPolicySettings, LoadDegradation), 12);

   CHECK_EQ(sizeof(bool), 1);
   CHECK_EQ(sizeof(FailoverCallbackPtr), sizeof(void*));
   CHECK_EQ(sizeof(card8), 1);
   CHECK_EQ(sizeof(card16), 2);
   CHECK_EQ(sizeof(card32), 4);
   CHECK_EQ(sizeof(card64), 8);
   CHECK_EQ(sizeof(int8), 1);
   CHECK_EQ(sizeof(int16), 2);
   CHECK_EQ(sizeof(int32), 4);
   CHECK_EQ(sizeof(int64), 8);
   CHECK_EQ(sizeof(sbyte), 1);
   CHECK_EQ(sizeof(ubyte), 1);
   CHECK_EQ(sizeof(integer), 4);
   CHECK_EQ(sizeof(cardinal), 4);
   CHECK((card64)-1 > 0);
   CHECK((int64)-1 < 0);
   CHECK((ubyte)-1 > 0);
}

static void test_constants(void)
{
   CHECK_EQ(RSPLIB_VERSION, 0);
   CHECK_EQ(RSPLIB_REVISION, 8001);
   CHECK_EQ(RspSelect_Read, 1);
   CHECK_EQ(RspSelect_Write, 2);
   CHECK_EQ(RspSelect_Except, 4);

   CHECK_EQ(TAG_DONE, 0);
   CHECK_EQ(TAG_END, 0);
   CHECK_EQ(TAG_IGNORE, 1);
   CHECK_EQ(TAG_MORE, 2);
   CHECK_EQ(TAG_SKIP, 3);
   CHECK_EQ(TAG_USER, 1000000);

   CHECK_EQ(RspRead_Timeout, -1);
   CHECK_EQ(RspRead_ReadError, -2);
   CHECK_EQ(RspRead_WrongPPID, -3);
   CHECK_EQ(RspRead_PartialRead, -4);
   CHECK_EQ(RspRead_TooBig, -5);
   CHECK_EQ(RspRead_Failover, -6);
   CHECK_EQ(RspRead_ControlRead, -7);

   CHECK_EQ(RSPERR_OKAY, 0x0000);
   CHECK_EQ(RSPERR_UNRECOGNIZED_PARAMETER, 0x0001);
   CHECK_EQ(RSPERR_UNRECOGNIZED_MESSAGE, 0x0002);
   CHECK_EQ(RSPERR_AUTHORIZATION_FAILURE, 0x0003);
   CHECK_EQ(RSPERR_INVALID_VALUES, 0x0004);
   CHECK_EQ(RSPERR_NOT_INITIALIZED, 0x1000);
   CHECK_EQ(RSPERR_BUFFERSIZE_EXCEEDED, 0x1001);
   CHECK_EQ(RSPERR_OUT_OF_MEMORY, 0x1002);
   CHECK_EQ(RSPERR_READ_ERROR, 0x1003);
   CHECK_EQ(RSPERR_WRITE_ERROR, 0x1004);
   CHECK_EQ(RSPERR_CONNECTION_FAILURE_SOCKET, 0x1005);
   CHECK_EQ(RSPERR_CONNECTION_FAILURE_CONNECT, 0x1006);
   CHECK_EQ(RSPERR_NO_REGISTRAR, 0x1007);
   CHECK_EQ(RSPERR_NO_RESOURCES, 0xf002);
   CHECK_EQ(RSPERR_NOT_FOUND, 0xf003);
   CHECK_EQ(RSPERR_INVALID_ID, 0xf004);
   CHECK_EQ(RSPERR_DUPLICATE_ID, 0xf005);
   CHECK_EQ(RSPERR_WRONG_PROTOCOL, 0xf006);
   CHECK_EQ(RSPERR_WRONG_CONTROLCHANNEL_HANDLING, 0xf007);
   CHECK_EQ(RSPERR_INCOMPATIBLE_POOL_POLICY, 0xf008);
   CHECK_EQ(RSPERR_INVALID_POOL_POLICY, 0xf009);
   CHECK_EQ(RSPERR_INVALID_POOL_HANDLE, 0xf00a);
   CHECK_EQ(RSPERR_INVALID_ADDRESSES, 0xf00b);
   CHECK_EQ(RSPERR_INVALID_REGISTRATOR, 0xf00c);
   CHECK_EQ(RSPERR_NO_USABLE_ASAP_ADDRESSES, 0xf00d);
   CHECK_EQ(RSPERR_NO_USABLE_USER_ADDRESSES, 0xf00e);

   CHECK_EQ(PPT_UNDEFINED, 0x00);
   CHECK_EQ(PPT_ROUNDROBIN, 0x01);
   CHECK_EQ(PPT_WEIGHTED_ROUNDROBIN, 0x02);
   CHECK_EQ(PPT_RANDOM, 0x03);
   CHECK_EQ(PPT_WEIGHTED_RANDOM, 0x04);
   CHECK_EQ(PPT_LEASTUSED, 0x05);
   CHECK_EQ(PPT_LEASTUSED_DEGRADATION, 0x06);
   CHECK_EQ(PPT_RANDOMIZED_LEASTUSED, 0x07);
   CHECK_EQ(PPT_RANDOMIZED_LEASTUSED_DEGRADATION, 0x08);
   CHECK_EQ(PPT_PRIORITY_LEASTUSED, 0x09);
   CHECK_EQ(PPT_PRIORITY_LEASTUSED_DEGRADATION, 0x0a);
   CHECK_EQ(PPT_RANDOMIZED_PRIORITY_LEASTUSED, 0x0b);
   CHECK_EQ(PPT_RANDOMIZED_PRIORITY_LEASTUSED_DEGRADATION, 0x0c);
   CHECK_EQ(PEPS_MIN_WEIGHT, 0);
   CHECK_EQ(PEPS_MAX_WEIGHT, 0xffffffffUL);
   CHECK_EQ(PEPS_MIN_LOAD, 0);
   CHECK_EQ(PEPS_MAX_LOAD, 0xffffff);
   CHECK_EQ(PEPS_MIN_LOADDEGRADATION, 0);
   CHECK_EQ(PEPS_MAX_LOADDEGRADATION, 0xffffff);

   CHECK_EQ(TAG_PoolPolicy_Type, 1001000);
   CHECK_EQ(TAG_PoolPolicy_Parameter_Weight, 1001001);
   CHECK_EQ(TAG_PoolPolicy_Parameter_Load, 1001002);
   CHECK_EQ(TAG_PoolPolicy_Parameter_LoadDegradation, 1001003);
   CHECK_EQ(TAG_PoolElement_ReregistrationInterval, 1002000);
   CHECK_EQ(TAG_PoolElement_RegistrationLife, 1002001);
   CHECK_EQ(TAG_PoolElement_SocketDomain, 1002002);
   CHECK_EQ(TAG_PoolElement_SocketType, 1002003);
   CHECK_EQ(TAG_PoolElement_SocketProtocol, 1002004);
   CHECK_EQ(TAG_PoolElement_LocalPort, 1002005);
   CHECK_EQ(TAG_PoolElement_Identifier, 1002006);
   CHECK_EQ(TAG_RspLib_CacheElementTimeout, 1007000);
   CHECK_EQ(TAG_RspLib_RegistrarAnnounceAddress, 1007001);
   CHECK_EQ(TAG_RspLib_RegistrarAnnounceTimeout, 1007002);
   CHECK_EQ(TAG_RspLib_RegistrarConnectMaxTrials, 1007003);
   CHECK_EQ(TAG_RspLib_RegistrarConnectTimeout, 1007004);
   CHECK_EQ(TAG_RspLib_RegistrarRequestMaxTrials, 1007005);
   CHECK_EQ(TAG_RspLib_RegistrarRequestTimeout, 1007006);
   CHECK_EQ(TAG_RspLib_RegistrarResponseTimeout, 1007007);
   CHECK_EQ(TAG_RspSession_ConnectTimeout, 1007000);
   CHECK_EQ(TAG_RspSession_HandleResolutionRetryDelay, 1007001);
   CHECK_EQ(TAG_RspSession_FailoverCallback, 1007005);
   CHECK_EQ(TAG_RspSession_FailoverUserData, 1007006);
   CHECK_EQ(TAG_UserTransport_HasControlChannel, 1007500);
   CHECK_EQ(TAG_RspIO_Flags, 1008000);
   CHECK_EQ(TAG_RspIO_Timeout, 1008001);
   CHECK_EQ(TAG_RspIO_PE_ID, 1008002);
   CHECK_EQ(TAG_RspIO_SCTP_AssocID, 1008003);
   CHECK_EQ(TAG_RspIO_SCTP_StreamID, 1008004);
   CHECK_EQ(TAG_RspIO_SCTP_PPID, 1008005);
   CHECK_EQ(TAG_RspIO_SCTP_TimeToLive, 1008006);
   CHECK_EQ(TAG_RspIO_MakeFailover, 1008007);
   CHECK_EQ(TAG_RspIO_MsgIsCookieEcho, 1008008);
   CHECK_EQ(TAG_RspIO_MsgIsCookie, 1008008);
   CHECK_EQ(TAG_RspSelect_MaxFD, 1009000);
   CHECK_EQ(TAG_RspSelect_ReadFDs, 1009001);
   CHECK_EQ(TAG_RspSelect_WriteFDs, 1009002);
   CHECK_EQ(TAG_RspSelect_ExceptFDs, 1009003);
   CHECK_EQ(TAG_RspSelect_Timeout, 1009004);
   CHECK_EQ(TAG_RspSelect_RsplibEventLoop, 1009005);
   CHECK_EQ(TAG_RspLib_GetVersion, 1010000);
   CHECK_EQ(TAG_RspLib_GetRevision, 1010001);
   CHECK_EQ(TAG_RspLib_GetBuildDate, 1010002);
   CHECK_EQ(TAG_RspLib_GetBuildTime, 1010003);
   CHECK_EQ(TAG_RspLib_IsThreadSafe, 1010004);
   CHECK_EQ(TAG_RspLib_CSPIdentifier, 1010010);
   CHECK_EQ(TAG_RspLib_CSPReportAddress, 1010011);
   CHECK_EQ(TAG_RspLib_CSPReportInterval, 1010012);
   CHECK_EQ(TAG_RspLib_NameServerAnnounceAddress, 1007001);
   CHECK_EQ(TAG_RspLib_NameServerAnnounceTimeout, 1007002);
   CHECK_EQ(TAG_RspLib_NameServerConnectMaxTrials, 1007003);
   CHECK_EQ(TAG_RspLib_NameServerConnectTimeout, 1007004);
   CHECK_EQ(TAG_RspLib_NameServerRequestMaxTrials, 1007005);
   CHECK_EQ(TAG_RspLib_NameServerRequestTimeout, 1007006);
   CHECK_EQ(TAG_RspLib_NameServerResponseTimeout, 1007007);
   CHECK_EQ(TAG_RspSession_NameResolutionRetryDelay, 1007001);
}

static const unsigned int all_codes[] = {
   RSPERR_OKAY, RSPERR_UNRECOGNIZED_PARAMETER, RSPERR_UNRECOGNIZED_MESSAGE,
   RSPERR_AUTHORIZATION_FAILURE, RSPERR_INVALID_VALUES, RSPERR_NOT_INITIALIZED,
   RSPERR_BUFFERSIZE_EXCEEDED, RSPERR_OUT_OF_MEMORY, RSPERR_READ_ERROR, RSPERR_WRITE_ERROR,
   RSPERR_CONNECTION_FAILURE_SOCKET, RSPERR_CONNECTION_FAILURE_CONNECT, RSPERR_NO_REGISTRAR,
   RSPERR_NO_RESOURCES, RSPERR_NOT_FOUND, RSPERR_INVALID_ID, RSPERR_DUPLICATE_ID,
   RSPERR_WRONG_PROTOCOL, RSPERR_WRONG_CONTROLCHANNEL_HANDLING, RSPERR_INCOMPATIBLE_POOL_POLICY,
   RSPERR_INVALID_POOL_POLICY, RSPERR_INVALID_POOL_HANDLE, RSPERR_INVALID_ADDRESSES,
   RSPERR_INVALID_REGISTRATOR, RSPERR_NO_USABLE_ASAP_ADDRESSES, RSPERR_NO_USABLE_USER_ADDRESSES
};

static void test_error_descriptions(void)
{
   const size_t n = sizeof(all_codes) / sizeof(all_codes[0]);
   const char*  unknown = rspGetErrorDescription(0xdead);
   size_t       i, j;
   char         buffer[256];
   FILE*        f;

   CHECK(unknown != NULL && strlen(unknown) > 0);
   CHECK(rserpoolErrorGetDescription(0xffffffffU) != NULL);
   for (i = 0; i < n; i++) {
      const char* d = rspGetErrorDescription(all_codes[i]);
      CHECK(d != NULL && strlen(d) > 0);
      CHECK(strcmp(d, unknown) != 0);  /* every listed code has its own text */
      CHECK(strcmp(d, rserpoolErrorGetDescription(all_codes[i])) == 0);
      for (j = 0; j < i; j++) {
         CHECK(strcmp(d, rspGetErrorDescription(all_codes[j])) != 0);
      }
   }
   CHECK(strcmp(rspGetErrorDescription(RSPERR_NOT_FOUND), "Not found") == 0);

   /* rserpoolErrorPrint writes the description; a NULL FILE* is ignored. */
   f = tmpfile();
   CHECK(f != NULL);
   if (f != NULL) {
      rserpoolErrorPrint(RSPERR_INVALID_POOL_HANDLE, f);
      rewind(f);
      memset(buffer, 0, sizeof(buffer));
      CHECK(fgets(buffer, sizeof(buffer), f) != NULL);
      CHECK(strcmp(buffer, rspGetErrorDescription(RSPERR_INVALID_POOL_HANDLE)) == 0);
      fclose(f);
   }
   rserpoolErrorPrint(RSPERR_OKAY, NULL);
}

static void test_free_endpoint_address_array(void)
{
   struct EndpointAddressInfo* a = (struct EndpointAddressInfo*)calloc(1, sizeof(*a));
   struct EndpointAddressInfo* b = (struct EndpointAddressInfo*)calloc(1, sizeof(*b));
   CHECK(a != NULL && b != NULL);
   if (a && b) {
      a->ai_addrs = 2;
      a->ai_addrlen = sizeof(union sockaddr_union);
      a->ai_addr = (union sockaddr_union*)calloc(2, sizeof(union sockaddr_union));
      a->ai_next = b;
      b->ai_addr = NULL;
      rspFreeEndpointAddressArray(a); /* valgrind reports a leak if anything is left */
   }
   rspFreeEndpointAddressArray(NULL);
}

int main(void)
{
   test_layouts();
   test_constants();
   test_error_descriptions();
   test_free_endpoint_address_array();
   return TEST_SUMMARY();
}
