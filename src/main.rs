// Config loading and keying allocate many small strings; mimalloc makes that a third cheaper
// than glibc's malloc here (see benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Huge pages off before the runtime and mimalloc allocate anything: an `.init_array` entry runs
// ahead of Rust's start-up code. lifeos turns them back on for big projects and child
// processes (lifeos_tasks::huge_pages says why).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static HUGE_PAGES_OFF: extern "C" fn() = lifeos_tasks::huge_pages::disable;

fn main() {
    let code = lifeos::cli::main();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Straight out, without the exit handlers: they only hand memory back (mimalloc purges
    // its arenas), which the kernel does anyway, and a no-op is a few milliseconds in all.
    // SAFETY: every file lifeos writes is closed and renamed by now; stdout is flushed.
    unsafe { libc::_exit(code) }
}
