// libcppthread (rsplib-rs): TDThread, one POSIX thread per object running its run().
#include <stdio.h>
#include <time.h>
#include <errno.h>

#include "thread.h"

TDThread::TDThread()
   : MyThread(0)
{
}

// A thread still running is joined: its object must not go away under it.
TDThread::~TDThread()
{
   waitForFinish();
}

// The entry point handed to pthread_create: run() of the object.
void* TDThread::startRoutine(void* object)
{
   static_cast<TDThread*>(object)->run();
   return NULL;
}

bool TDThread::start()
{
   if (MyThread != 0) {
      fputs("TDThread::start(): this thread is already running\n", stderr);
      return false;
   }
   // Straight into MyThread, as the original did (glibc stores it before the thread runs).
   const int error = pthread_create(&MyThread, NULL, &TDThread::startRoutine, this);
   if (error != 0) {
      MyThread = 0;
      fprintf(stderr, "TDThread::start(): cannot create a thread (error %d)\n", error);
      return false;
   }
   return true;
}

void TDThread::waitForFinish()
{
   if (MyThread != 0) {
      pthread_join(MyThread, NULL);
      MyThread = 0;
   }
}

// Sleeps for us microseconds, resuming after signals until the time is up.
void TDThread::delay(const unsigned int us)
{
   struct timespec left;
   left.tv_sec  = us / 1000000;
   left.tv_nsec = (long)(us % 1000000) * 1000;
   while (nanosleep(&left, &left) != 0 && errno == EINTR) {
   }
}
