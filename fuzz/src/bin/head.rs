//! The `head` fuzz target: see `checks::head`.
#[path = "../checks.rs"]
mod checks;

fn main() {
    afl::fuzz!(|data: &[u8]| checks::head(data));
}
