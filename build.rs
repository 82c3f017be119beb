//! `diesel_migrations::embed_migrations!` reads `migrations/` at compile time; a new migration
//! directory changes no Rust source, so without this the binary would keep the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
