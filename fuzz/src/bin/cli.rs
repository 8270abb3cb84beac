//! The `cli` fuzz target: see `checks::cli`.
#[path = "../checks.rs"]
mod checks;

fn main() {
    afl::fuzz!(|data: &[u8]| checks::cli(data));
}
