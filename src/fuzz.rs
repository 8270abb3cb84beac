//! Random inputs for the property tests of the request parser, the path
//! normaliser and the files resolver: seeded, so a failure can be replayed.

/// xorshift64*: small, fast, and good enough to explore inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Pieces that path attacks are made of, and some harmless ones.
const PATH_PIECES: &[&str] = &[
    "/",
    "//",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%00",
    "%",
    "%zz",
    "%2",
    "etc",
    "passwd",
    "a",
    "b c",
    "%20",
    "index.html",
    "?",
    "#",
    "~",
    "%252e",
    "..%2f",
    "%c0%ae",
    "\u{2713}",
    "out",
    "in",
];

/// A request target made of attack pieces, usually starting with `/`.
pub fn target(rng: &mut Rng) -> String {
    let mut t = String::from(if rng.below(10) == 0 { "" } else { "/" });
    for _ in 0..rng.below(12) {
        t.push_str(rng.pick(PATH_PIECES));
        if rng.below(3) == 0 {
            t.push('/');
        }
    }
    t
}

/// A request head: sometimes well-formed around a hostile target, sometimes
/// mangled, sometimes raw bytes.
pub fn head(rng: &mut Rng) -> Vec<u8> {
    match rng.below(3) {
        0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        1 => {
            let method = rng.pick(&["GET", "POST", "G\0T", "", "get", "GET GET"]);
            let version = rng.pick(&["HTTP/1.0", "HTTP/1.1", "HTTP/9", "", "HTTP/1.0 x"]);
            let header = rng.pick(&["Host: x", "Host x", ": y", "A:\r", "B: \0", ""]);
            format!("{method} {} {version}\r\n{header}\r\n\r\n", target(rng)).into_bytes()
        }
        _ => {
            let mut h = format!("GET {} HTTP/1.0\r\n\r\n", target(rng)).into_bytes();
            for _ in 0..rng.below(4) {
                let at = rng.below(h.len());
                h[at] = rng.next() as u8;
            }
            h
        }
    }
}
