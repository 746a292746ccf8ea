// The registrar's allocator. At 10^6 PEs the handlespace is a few hundred MiB of small objects
// visited at random: under glibc's malloc a pool's small arrays end up scattered over the whole
// heap and most visits miss the TLB as well as the caches. mimalloc keeps each size class
// together and backs its arenas with transparent huge pages (its default on Linux;
// `MIMALLOC_ALLOW_THP=0` turns that off). See docs/handlespace.md, "The allocator". Only this
// program installs it: the C library keeps the allocator of the program that loads it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rsplib::registrar::main_with_args(&args));
}
