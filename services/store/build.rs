//! Builds this crate again when a migration is added or changed. `sqlx::migrate!` reads the
//! migrations folders when the crate compiles, and cargo does not otherwise look there: a
//! migration added without a change to this crate's own sources was left out of a build that
//! reused the cache (found adding 20261207000021 to a cached tree).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
