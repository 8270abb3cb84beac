//! The `listing` fuzz target: see `checks::listing`.
#[path = "../checks.rs"]
mod checks;

fn main() {
    afl::fuzz!(|data: &[u8]| checks::listing(data));
}
