// Config loading and keying allocate many small strings; mimalloc makes that a third cheaper
// than glibc's malloc here (see benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lifeos::allocator::tune();
    let code = run();
    lifeos::allocator::at_exit();
    // Exit codes are 0..=130; anything else would be a bug, reported as a plain failure.
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Parse the command line, set up, and dispatch: the command's exit code.
fn run() -> i32 {
    let cli = match lifeos::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                lifeos::exit::USAGE
            } else {
                lifeos::exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    if let Some(dir) = &cli.global.dir {
        if let Err(e) = std::env::set_current_dir(dir) {
            eprintln!("error: cannot change to {}: {e}", dir.display());
            return lifeos::exit::USAGE;
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return lifeos::exit::ENVIRONMENT;
        }
    };
    let code = rt.block_on(lifeos::commands::dispatch(cli));
    // Not leaked like the project: shutting the runtime down drops the engine connections,
    // and for an ssh:// engine each one is an ssh process, killed with it.
    drop(rt);
    code
}
