/* taglist-demo: how classic rsplib programs pass options — a TAG_DONE-terminated array of
   struct TagItem, here the policy tags a pool element would give rspRegister().
   Build: cc taglist-demo.c $(pkg-config --cflags --libs rsplib) -o taglist-demo
   Usage: taglist-demo [weight] */
#include <rsplib.h>

int main(int argc, char** argv)
{
   struct TagItem  tags[8];
   struct TagItem* copy;
   const tag_t     policyOnly[] = { TAG_PoolPolicy_Type, TAG_PoolPolicy_Parameter_Weight, TAG_DONE };
   unsigned long   weight = (argc > 1) ? strtoul(argv[1], NULL, 0) : 7;

   tags[0].Tag  = TAG_PoolPolicy_Type;
   tags[0].Data = PPT_WEIGHTED_ROUNDROBIN;
   tags[1].Tag  = TAG_PoolPolicy_Parameter_Weight;
   tags[1].Data = weight;
   tags[2].Tag  = TAG_IGNORE;                    /* switched off: not seen by the library */
   tags[2].Data = 0;
   tags[3].Tag  = TAG_UserTransport_HasControlChannel;
   tags[3].Data = 1;
   tags[4].Tag  = TAG_PoolElement_RegistrationLife;
   tags[4].Data = 30000000;                      /* µs */
   tags[5].Tag  = TAG_DONE;

   printf("All tags the library would see:\n");
   tagListPrint(tags, stdout);

   printf("\nWeight: %lu, control channel: %s, unset load defaults to %lu\n",
          (unsigned long)tagListGetData(tags, TAG_PoolPolicy_Parameter_Weight, 1),
          tagListGetData(tags, TAG_UserTransport_HasControlChannel, 0) ? "yes" : "no",
          (unsigned long)tagListGetData(tags, TAG_PoolPolicy_Parameter_Load, 0));

   copy = tagListDuplicateFilter(tags, policyOnly);
   if (copy == NULL) {
      fprintf(stderr, "taglist-demo: %s\n", rspGetErrorDescription(RSPERR_OUT_OF_MEMORY));
      return 1;
   }
   printf("\nOnly the policy tags (%u items incl. TAG_DONE):\n", (unsigned int)tagListGetSize(copy));
   tagListPrint(copy, stdout);
   tagListFree(copy);

   printf("\nError %#x reads \"%s\"\n", RSPERR_INVALID_POOL_HANDLE,
          rspGetErrorDescription(RSPERR_INVALID_POOL_HANDLE));
   return 0;
}
