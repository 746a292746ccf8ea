// The registrar's allocator: see `rsplib::registrar::alloc`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    rsplib::registrar::alloc::prefer_huge_pages();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rsplib::registrar::main_with_args(&args));
}
