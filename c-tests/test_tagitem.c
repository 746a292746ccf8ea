/* tagList* helpers: TAG_DONE/IGNORE/MORE/SKIP semantics, allocation, copies, NULL handling. */
#include <rsplib.h>
#include "testlib.h"

#define T1 (TAG_USER + 1)
#define T2 (TAG_USER + 2)
#define T3 (TAG_USER + 3)
#define T4 (TAG_USER + 4)
#define T5 (TAG_USER + 5)
#define T9 (TAG_USER + 9)

static void set(struct TagItem* item, tag_t tag, tagdata_t data)
{
   item->Tag  = tag;
   item->Data = data;
}

static void test_walk(void)
{
   struct TagItem  tail[3];
   struct TagItem  list[9];
   struct TagItem* p;

   set(&tail[0], TAG_IGNORE, 0);
   set(&tail[1], T5, 50);
   set(&tail[2], TAG_DONE, 0);

   set(&list[0], TAG_IGNORE, 111);
   set(&list[1], T1, 10);
   set(&list[2], TAG_SKIP, 2);     /* hides T2 and T3 */
   set(&list[3], T2, 20);
   set(&list[4], T3, 30);
   set(&list[5], T4, 40);
   set(&list[6], TAG_MORE, (tagdata_t)tail);
   set(&list[7], T9, 90);          /* after TAG_MORE: never seen */
   set(&list[8], TAG_DONE, 0);

   /* Find: first visible item only. */
   CHECK(tagListFind(list, T1) == &list[1]);
   CHECK(tagListFind(list, T2) == NULL);
   CHECK(tagListFind(list, T3) == NULL);
   CHECK(tagListFind(list, T4) == &list[5]);
   CHECK(tagListFind(list, T5) == &tail[1]);
   CHECK(tagListFind(list, T9) == NULL);
   CHECK(tagListFind(list, TAG_IGNORE) == NULL);
   CHECK(tagListFind(list, TAG_DONE) == NULL);

   /* Next: visible items in order, NULL at the end. */
   p = tagListNext(&list[0]);
   CHECK(p == &list[1]);
   p = tagListNext(p);
   CHECK(p == &list[5]);
   p = tagListNext(p);
   CHECK(p == &tail[1]);
   p = tagListNext(p);
   CHECK(p == NULL);
   CHECK(tagListNext(&list[8]) == NULL);
   CHECK(tagListNext(NULL) == NULL);

   /* GetData / SetData. */
   CHECK_EQ(tagListGetData(list, T1, 7), 10);
   CHECK_EQ(tagListGetData(list, T2, 7), 7);
   CHECK_EQ(tagListGetData(list, T5, 7), 50);
   CHECK(tagListSetData(list, T5, 55) == &tail[1]);
   CHECK_EQ(tail[1].Data, 55);
   CHECK(tagListSetData(list, T3, 1) == NULL);
   CHECK_EQ(list[4].Data, 30);   /* hidden item untouched */
   CHECK(tagListSetData(list, T9, 1) == NULL);
   CHECK_EQ(list[7].Data, 90);

   /* Size: items of this array incl. its terminator; TAG_MORE ends the array. */
   CHECK_EQ(tagListGetSize(list), 7);
   CHECK_EQ(tagListGetSize(tail), 3);
}

static void test_first_item_duplicates(void)
{
   struct TagItem list[3];
   set(&list[0], T1, 1);
   set(&list[1], T1, 2);
   set(&list[2], TAG_DONE, 0);
   CHECK_EQ(tagListGetData(list, T1, 0), 1);
}

static void test_more_as_first_item(void)
{
   struct TagItem tail[2];
   struct TagItem list[2];
   set(&tail[0], T2, 22);
   set(&tail[1], TAG_DONE, 0);
   set(&list[0], TAG_MORE, (tagdata_t)tail);
   set(&list[1], TAG_DONE, 0);
   /* The first item of the chained array is seen (the original walker's quirk is not kept). */
   CHECK(tagListFind(list, T2) == &tail[0]);
   set(&list[0], TAG_MORE, 0);  /* NULL continuation ends the walk */
   CHECK(tagListFind(list, T2) == NULL);
}

static void test_allocation_and_copies(void)
{
   struct TagItem* a = tagListAllocate(4);
   struct TagItem* d;
   struct TagItem* f;
   struct TagItem  src[5];
   const tag_t     filter[] = { T3, T1, TAG_DONE };
   size_t          i;

   CHECK(a != NULL);
   if (a != NULL) {
      for (i = 0; i < 4; i++) {
         CHECK_EQ(a[i].Tag, TAG_DONE);
         CHECK_EQ(a[i].Data, 0);
      }
      CHECK_EQ(tagListGetSize(a), 1);
      tagListFree(a);
   }

   set(&src[0], T1, 1);
   set(&src[1], TAG_IGNORE, 0);
   set(&src[2], T2, 2);
   set(&src[3], T3, 3);
   set(&src[4], TAG_DONE, 0);

   d = tagListDuplicate(src);
   CHECK(d != NULL && d != src);
   if (d != NULL) {
      CHECK_EQ(tagListGetSize(d), 5);
      for (i = 0; i < 5; i++) {
         CHECK_EQ(d[i].Tag, src[i].Tag);
         CHECK_EQ(d[i].Data, src[i].Data);
      }
      tagListFree(d);
   }

   f = tagListDuplicateFilter(src, filter);
   CHECK(f != NULL);
   if (f != NULL) {
      CHECK_EQ(tagListGetSize(f), 3);
      CHECK_EQ(f[0].Tag, T1);
      CHECK_EQ(f[1].Tag, T3);
      CHECK_EQ(f[1].Data, 3);
      CHECK_EQ(f[2].Tag, TAG_DONE);
      tagListFree(f);
   }
   f = tagListDuplicateFilter(src, NULL);
   CHECK(f != NULL && f[0].Tag == TAG_DONE);
   tagListFree(f);
}

static void test_null_lists(void)
{
   struct TagItem* d;
   CHECK(tagListFind(NULL, T1) == NULL);
   CHECK_EQ(tagListGetData(NULL, T1, 42), 42);
   CHECK(tagListSetData(NULL, T1, 1) == NULL);
   CHECK_EQ(tagListGetSize(NULL), 0);
   d = tagListDuplicate(NULL);  /* a usable empty list */
   CHECK(d != NULL && d[0].Tag == TAG_DONE);
   tagListFree(d);
   d = tagListDuplicateFilter(NULL, NULL);
   CHECK(d != NULL && d[0].Tag == TAG_DONE);
   tagListFree(d);
   tagListFree(NULL);
   tagListPrint(NULL, stdout);
   tagListPrint(NULL, NULL);
}

static void test_cycle_and_garbage(void)
{
   struct TagItem list[2];
   set(&list[0], TAG_MORE, (tagdata_t)list);   /* a TAG_MORE chain pointing at itself */
   set(&list[1], TAG_DONE, 0);
   CHECK(tagListFind(list, T1) == NULL);        /* terminates */
   set(&list[0], TAG_SKIP, ~(tagdata_t)0);      /* absurd skip count */
   CHECK(tagListFind(list, T1) == NULL);
}

static void test_print(void)
{
   struct TagItem list[3];
   char           buffer[512];
   size_t         n;
   FILE*          f = tmpfile();
   set(&list[0], TAG_PoolPolicy_Type, PPT_WEIGHTED_ROUNDROBIN);
   set(&list[1], TAG_IGNORE, 0);
   set(&list[2], TAG_DONE, 0);
   CHECK(f != NULL);
   if (f != NULL) {
      tagListPrint(list, f);
      rewind(f);
      n = fread(buffer, 1, sizeof(buffer) - 1, f);
      buffer[n] = 0;
      CHECK(strstr(buffer, "1001000") != NULL);
      CHECK(strchr(buffer, '\n') == strrchr(buffer, '\n'));  /* one line: IGNORE not shown */
      fclose(f);
   }
}

int main(void)
{
   test_walk();
   test_first_item_duplicates();
   test_more_as_first_item();
   test_allocation_and_copies();
   test_null_lists();
   test_cycle_and_garbage();
   test_print();
   return TEST_SUMMARY();
}
