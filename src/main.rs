fn main() {
    std::process::exit(lifeos::cli::main());
}
