/* mutex.h: TDMutex, the recursive mutex class of the classic rsplib package (libcppthread).
 *
 * Part of rsplib-rs (an independent implementation, no code of the original rsplib). The class
 * layout, the virtual destructor and the member names are the classic interface: programs built
 * against the original libcppthread relink against this one unchanged.
 *
 *   sizeof(TDMutex) == 80 on x86_64: the vtable pointer, then a struct ThreadSafety (72 bytes).
 *
 * lock()/unlock() are inline calls into librsplib (threadSafetyLock/Unlock); the mutex is
 * recursive, so a thread that holds it may lock it again (and unlocks it as often).
 */
#ifndef MUTEX_H
#define MUTEX_H

#include "threadsafety.h"

class TDMutex
{
   public:
   TDMutex();
   virtual ~TDMutex();

   inline void lock() {
      threadSafetyLock(&MyMutex);
   }
   inline void unlock() {
      threadSafetyUnlock(&MyMutex);
   }

   private:
   struct ThreadSafety MyMutex;
};

#endif
