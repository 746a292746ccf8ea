// libcppthread (rsplib-rs): TDMutex on top of librsplib's recursive threadSafety* mutex.
#include "mutex.h"

TDMutex::TDMutex()
{
   threadSafetyNew(&MyMutex, "TDMutex");
}

TDMutex::~TDMutex()
{
   threadSafetyDelete(&MyMutex);
}
