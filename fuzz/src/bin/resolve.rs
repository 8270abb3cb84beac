//! The `resolve` fuzz target: see `checks::resolve`.
#[path = "../checks.rs"]
mod checks;

fn main() {
    afl::fuzz!(|data: &[u8]| checks::resolve(data));
}
