// Link the lifeos binary as a fixed-address executable: a PIE has ~21,000 relocations for
// the loader to apply at every start, about a tenth of a `lifeos build` no-op (benches/).
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
