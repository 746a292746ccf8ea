// libcppthread (TDMutex, TDThread) as a classic C++ program uses it, built with
// `pkg-config --cflags --libs cppthread` against the installed library, run under valgrind:
// the class layout of the classic package, start/waitForFinish/delay, the recursive mutex,
// destruction through a base pointer (virtual destructors), the destructor joining a thread.
#include <thread.h>
#include <cstddef>
#include <type_traits>
#include <sys/time.h>
#include "testlib.h"

static_assert(sizeof(TDMutex) == 8 + sizeof(ThreadSafety), "TDMutex: vtable pointer + ThreadSafety");
static_assert(sizeof(TDMutex) == 80, "TDMutex is 80 bytes on x86_64");
static_assert(sizeof(TDThread) == sizeof(TDMutex) + sizeof(pthread_t), "TDThread: TDMutex + pthread_t");
static_assert(std::has_virtual_destructor<TDMutex>::value, "virtual ~TDMutex");
static_assert(std::is_abstract<TDThread>::value, "run() is pure virtual");

static unsigned long long now_us()
{
   struct timeval tv;
   gettimeofday(&tv, NULL);
   return (unsigned long long)tv.tv_sec * 1000000ULL + tv.tv_usec;
}

// Counts to a limit in its thread, the counter guarded by the object's own mutex (recursive:
// run() locks twice).
class Counter : public TDThread
{
   public:
   Counter(int limit, int* destroyed) : Limit(limit), Count(0), Destroyed(destroyed) {}
   ~Counter() { waitForFinish(); (*Destroyed)++; }
   int count() { lock(); const int c = Count; unlock(); return c; }
   pthread_t threadId() const { return MyThread; }
   std::size_t offsetOfMyThread() const
   {
      return (std::size_t)((const char*)&MyThread - (const char*)static_cast<const TDThread*>(this));
   }

   protected:
   void run()
   {
      for (int i = 0; i < Limit; i++) {
         lock();
         lock();
         Count++;
         unlock();
         unlock();
      }
      delay(20000);
   }

   private:
   int  Limit;
   int  Count;
   int* Destroyed;
};

// Shared state behind a TDMutex, changed by several threads.
struct Total : public TDMutex
{
   Total() : Value(0) {}
   long Value;
};

class Adder : public TDThread
{
   public:
   explicit Adder(Total* total) : Sum(total) {}
   ~Adder() {}

   protected:
   void run()
   {
      for (int i = 0; i < 10000; i++) {
         Sum->lock();
         Sum->Value++;
         Sum->unlock();
      }
   }

   private:
   Total* Sum;
};

int main()
{
   int destroyed = 0;

   {
      Counter c(1000, &destroyed);
      CHECK_EQ(c.offsetOfMyThread(), 80); // MyThread right after the TDMutex part
      CHECK(c.threadId() == 0);
      CHECK(c.start());
      CHECK(c.threadId() != 0);
      CHECK(!c.start()); // already running
      c.waitForFinish();
      CHECK(c.threadId() == 0);
      CHECK_EQ(c.count(), 1000);
      CHECK(c.start()); // may run again once finished
      c.waitForFinish();
      CHECK_EQ(c.count(), 2000);
      c.waitForFinish(); // nothing running: returns at once
   }
   CHECK_EQ(destroyed, 1);

   // Deleting through a TDMutex* runs the whole destructor chain; the destructor joins.
   {
      Counter* c = new Counter(10, &destroyed);
      CHECK(c->start());
      TDMutex* base = c;
      delete base;
      CHECK_EQ(destroyed, 2);
   }

   // Four threads add to one total under its TDMutex.
   {
      Total total;
      Adder* adders[4];
      for (int i = 0; i < 4; i++) {
         adders[i] = new Adder(&total);
         CHECK(adders[i]->start());
      }
      for (int i = 0; i < 4; i++) {
         adders[i]->waitForFinish();
         delete adders[i];
      }
      CHECK_EQ(total.Value, 40000);
   }

   // delay() waits at least the time asked for.
   {
      const unsigned long long t0 = now_us();
      TDThread::delay(30000);
      CHECK(now_us() - t0 >= 30000);
   }
   return TEST_SUMMARY();
}
