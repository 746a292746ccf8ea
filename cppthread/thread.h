/* thread.h: TDThread, the thread class of the classic rsplib package (libcppthread).
 *
 * Part of rsplib-rs (an independent implementation, no code of the original rsplib). The class
 * layout, the virtual functions (destructor, then run()) and the member names are the classic
 * interface: programs built against the original libcppthread relink against this one.
 *
 *   sizeof(TDThread) == 88 on x86_64: TDMutex (80 bytes), then pthread_t MyThread.
 *
 * A subclass implements run(); start() runs it in a new POSIX thread (false if this object's
 * thread is already running or cannot be created), waitForFinish() joins it, the destructor
 * joins a thread that is still running. MyThread is 0 while no thread runs. The TDMutex base
 * protects whatever the subclass wants to share with its thread (lock()/unlock()).
 */
#ifndef THREAD_H
#define THREAD_H

#include <pthread.h>

#include "mutex.h"

class TDThread : public TDMutex
{
   public:
   TDThread();
   virtual ~TDThread();

   bool start();
   void waitForFinish();
   static void delay(const unsigned int us);

   protected:
   virtual void run() = 0;

   protected:
   pthread_t MyThread;

   private:
   static void* startRoutine(void* object);
};

#endif
