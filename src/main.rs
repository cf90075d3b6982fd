// Config loading and keying allocate many small strings; mimalloc makes that a third cheaper
// than glibc's malloc here (see benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let code = lifeos::cli::main();
    // Exit codes are 0..=130; anything else would be a bug, reported as a plain failure.
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
