// Compiled as C++17 with -Wall -Wextra -Werror: extern "C", built-in bool, and the classic
// CPP_DEFAULT default arguments.
#include <rsplib.h>
#include <tagitem.h>
#include <rsplib-tags.h>
#include <rserpoolerror.h>
#include <poolpolicysettings.h>
#include <sockaddrunion.h>
#include <tdtypes.h>
#include <algorithm>
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
   return (found && m == 2) ? 0 : 1;
}
