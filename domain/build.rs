//! `sqlx::migrate!` embeds the migrations when the crate compiles, but cargo
//! does not know it reads that directory: without this, a new migration is
//! left out of an incremental build (sqlx's documented fix).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
