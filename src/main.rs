// Config loading and keying allocate many small strings; mimalloc makes that a third cheaper
// than glibc's malloc here (see benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(lifeos::cli::main());
}
