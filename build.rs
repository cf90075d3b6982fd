// Link the lifeos binary as a fixed-address executable: a PIE has ~21,000 relocations for
// the loader to apply at every start, about a tenth of a `lifeos build` no-op (benches/).
// Not for a static C runtime (musl, `+crt-static`): there `-no-pie` on top of rustc's
// `-static-pie` links a binary that crashes at start; .cargo/config.toml asks for
// `relocation-model=static` instead, which makes rustc link `-static -no-pie` itself.
fn main() {
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if !features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
