// Compiled as C++17 with -Wall -Wextra -Werror: all 23 headers, extern "C", built-in bool,
// the classic CPP_DEFAULT default arguments, the ext_* macros as ::calls, loglevel.h's LOG_*
// blocks.
#include "all_headers.h"
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iostream>

static bool callback(void* userData) { return userData != nullptr; }

int main()
{
   FailoverCallbackPtr cb = callback;
   TagItem tags[2] = { { TAG_RspLib_GetVersion, 99 }, { TAG_DONE, 0 } };
   // std::min/max still work: tdtypes.h defines the min/max macros for C only.
   const int m = std::min(1, 2) + std::max(0, 1);
   const bool found = tagListFind(tags, TAG_RspLib_GetVersion) != nullptr;
   std::cout << rspGetErrorDescription(RSPERR_NOT_FOUND) << " " << m << " " << found << " "
             << cb(nullptr) << std::endl;
   static_assert(sizeof(bool) == 1, "bool is one byte");
   static_assert(sizeof(EndpointAddressInfo) == 56, "EndpointAddressInfo layout");
   static_assert(sizeof(ThreadSafety) == 72, "ThreadSafety layout");
   static_assert(sizeof(CSPReporter) == 168, "CSPReporter layout");
   static_assert(sizeof(ComponentStatusProtocolHeader) == 296, "CSP header layout");

   // Helpers with C++ types.
   ThreadSafety ts;
   threadSafetyNew(&ts, "c++");
   threadSafetyLock(&ts);
   threadSafetyUnlock(&ts);
   threadSafetyDelete(&ts);
   sockaddr_union a;
   const bool parsed = string2address("[::1]:7", &a) && getPort(&a.sa) == 7;
   const int sd = ext_socket(AF_INET, SOCK_DGRAM, 0);
   const bool nonblocking = sd >= 0 && setNonBlocking(sd) && setBlocking(sd);
   if (sd >= 0) {
      ext_close(sd);
   }
   const bool logging = initLogging("-loglevel=1") && !initLogging("-nonsense");
   beginLogging();
   // loglevel.h's blocks in C++: at level 1 the error block runs, the verbose one is skipped
   // with its arguments.
   static_assert(sizeof(gLogMutex) == 72, "gLogMutex is a ThreadSafety");
   int evaluated = 0;
   LOG_ERROR
   std::fprintf(stdlog, "C++ log block at level %u\n", gLogLevel);
   LOG_END
   LOG_VERBOSE std::fprintf(stdlog, "%d\n", ++evaluated); LOG_END
   errno = EINVAL;
   logerror("C++ logerror");
   const bool blocks = evaluated == 0 && gLogLevel == LOGLEVEL_ERROR && stdlog == stderr;
   finishLogging();
   const uint64_t id = CID_COMPOUND(CID_GROUP_POOLUSER, 5);
   const bool ok = found && m == 2 && parsed && nonblocking && logging && blocks &&
                   getMicroTime() > 0 &&
                   ntoh64(hton64(id)) == id && CID_GROUP(id) == CID_GROUP_POOLUSER;
   std::cout << (ok ? "C++ helpers ok" : "C++ helpers FAILED") << std::endl;
   return ok ? 0 : 1;
}
