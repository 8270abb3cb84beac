//! The command line, and the write-once globals it fills.
//!
//! As in the C skeleton, configuration lives in process-wide globals under the
//! skeleton's names. Each is a `OnceLock`: `main` sets it once, before the
//! first connection is accepted, and it never changes afterwards. Handlers
//! read it through the accessor functions below.
#![allow(non_upper_case_globals)]

use std::ffi::OsString;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::log::printable;

/// The concurrency model, one per executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `httpserver`: each connection is handled in the accept loop, one at a time.
    Basic,
    /// `forkserver`: a child process per connection.
    Fork,
    /// `threadserver`: a thread of its own per connection, from a cache of
    /// idle threads (so that a new connection rarely pays for a new thread).
    Thread,
    /// `poolserver`: `--num-threads` workers fed by a work queue.
    Pool,
}

impl Mode {
    pub fn program_name(self) -> &'static str {
        match self {
            Mode::Basic => "httpserver",
            Mode::Fork => "forkserver",
            Mode::Thread => "threadserver",
            Mode::Pool => "poolserver",
        }
    }
}

/// The directory served in files mode (`--files DIR`), absolute, its symlinks kept.
/// Unset in proxy mode.
pub static server_files_directory: OnceLock<PathBuf> = OnceLock::new();
/// The upstream host of proxy mode (`--proxy HOST[:PORT]`). Unset in files mode.
pub static server_proxy_hostname: OnceLock<String> = OnceLock::new();
/// The upstream port of proxy mode; 80 unless `--proxy` names one.
pub static server_proxy_port: OnceLock<u16> = OnceLock::new();
/// The port to listen on (`--port N`, default 8000; 0 lets the OS pick).
pub static server_port: OnceLock<u16> = OnceLock::new();
/// The size of poolserver's worker pool (`--num-threads N`).
pub static num_threads: OnceLock<usize> = OnceLock::new();
/// The knobs the skeleton does not have: logging, timeouts, limits.
pub static server_settings: OnceLock<Settings> = OnceLock::new();

/// Settings beyond the skeleton's globals.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `--quiet`: no line per connection.
    pub quiet: bool,
    /// `--request-timeout SECS`: how long a client may take to send its request head.
    pub request_timeout: Duration,
    /// `--send-timeout SECS`: in files mode, a client that has acknowledged
    /// nothing of its response for this long is dropped (see `progress`).
    /// `None` (0 on the command line) waits for ever.
    pub send_timeout: Option<Duration>,
    /// Files mode sends file bodies with sendfile(2); `--no-sendfile` sends
    /// them with read() and write(), for file systems where sendfile
    /// misbehaves.
    pub sendfile: bool,
    /// `--connect-timeout SECS`: how long the upstream's name lookup, and then
    /// each connect attempt, may take.
    pub connect_timeout: Duration,
    /// `--idle-timeout SECS`: a proxied connection with no byte either way for
    /// this long is closed. `None` (0 on the command line) never closes it.
    pub idle_timeout: Option<Duration>,
    /// `--half-close-timeout SECS`: a proxied connection that one side has
    /// finished sending on, with no byte either way for this long, is closed.
    /// `None` (0 on the command line) waits for the other side forever.
    pub half_close_timeout: Option<Duration>,
    /// `--max-connections N`: forkserver, threadserver and poolserver refuse
    /// connections beyond this many at once (poolserver counts those queued
    /// and those being served).
    pub max_connections: usize,
    /// `--shutdown-timeout SECS`: after SIGINT or SIGTERM, how long open
    /// connections may take to finish before the server exits.
    pub shutdown_timeout: Duration,
    /// `--bind ADDR`: the one address to listen on. `None`, as in the
    /// skeleton, is every interface.
    pub bind: Option<IpAddr>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            quiet: false,
            request_timeout: Duration::from_secs(10),
            send_timeout: Some(Duration::from_secs(60)),
            sendfile: true,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(300)),
            half_close_timeout: Some(Duration::from_secs(30)),
            max_connections: 4096,
            shutdown_timeout: Duration::from_secs(5),
            bind: None,
        }
    }
}

/// What the server does with each connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `--files DIR`: serve this directory (absolute, its symlinks kept).
    Files(PathBuf),
    /// `--proxy HOST[:PORT]`: relay to this upstream.
    Proxy { host: String, port: u16 },
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub port: u16,
    pub target: Target,
    pub num_threads: Option<usize>,
    pub settings: Settings,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Help,
    Version,
    Run(Config),
}

pub const DEFAULT_PORT: u16 = 8000;
const DEFAULT_PROXY_PORT: u16 = 80;
const MAX_THREADS: usize = 65_536;
/// Puts a setting's value in place, given the flag's name (for errors) and
/// the value ("" for a flag).
type SetFn = fn(&mut Settings, &str, &str) -> Result<(), String>;

/// One command-line option: the one place it is named, described, and,
/// for a setting, read. The table drives getopts, the usage text and the
/// check that a value was given.
struct Opt {
    name: &'static str,
    /// The word for its value in the usage; `None` for a flag.
    value: Option<&'static str>,
    help: &'static str,
    /// Where a setting goes; `None` for the options `parse_utf8_args`
    /// reads itself.
    set: Option<SetFn>,
}

/// Every option, in the usage's order.
const OPTIONS: &[Opt] = &[
    Opt { name: "files", value: Some("DIR"), help: "serve the files in DIR", set: None },
    Opt {
        name: "proxy",
        value: Some("HOST[:PORT]"),
        help: "relay every connection to HOST (PORT defaults to 80)",
        set: None,
    },
    Opt {
        name: "port",
        value: Some("N"),
        help: "listen on port N (default 8000; 0 picks a free port)",
        set: None,
    },
    Opt {
        name: "bind",
        value: Some("ADDR"),
        help: "listen on this address only: IPv4, IPv6 or localhost (default: every interface)",
        set: Some(|s, flag, v| {
            s.bind = Some(parse_bind(flag, v)?);
            Ok(())
        }),
    },
    Opt {
        name: "num-threads",
        value: Some("N"),
        help: "size of poolserver's worker pool (required by poolserver)",
        set: None,
    },
    Opt {
        name: "request-timeout",
        value: Some("SECS"),
        help: "time a client has to send its request head (default 10)",
        set: Some(|s, flag, v| {
            s.request_timeout = parse_seconds(flag, v, 1)?;
            Ok(())
        }),
    },
    Opt {
        name: "send-timeout",
        value: Some("SECS"),
        help: "files mode: drop a client that acknowledges nothing this long (default 60; 0 never)",
        set: Some(|s, flag, v| {
            s.send_timeout = parse_optional_seconds(flag, v)?;
            Ok(())
        }),
    },
    Opt {
        name: "connect-timeout",
        value: Some("SECS"),
        help: "time the upstream's lookup, then each connect, may take (default 5)",
        set: Some(|s, flag, v| {
            s.connect_timeout = parse_seconds(flag, v, 1)?;
            Ok(())
        }),
    },
    Opt {
        name: "idle-timeout",
        value: Some("SECS"),
        help: "close a proxied connection idle both ways this long (default 300; 0 never)",
        set: Some(|s, flag, v| {
            s.idle_timeout = parse_optional_seconds(flag, v)?;
            Ok(())
        }),
    },
    Opt {
        name: "half-close-timeout",
        value: Some("SECS"),
        help: "close a half-closed proxied connection idle this long (default 30; 0 never)",
        set: Some(|s, flag, v| {
            s.half_close_timeout = parse_optional_seconds(flag, v)?;
            Ok(())
        }),
    },
    Opt {
        name: "max-connections",
        value: Some("N"),
        help: "fork, thread, poolserver: most connections at once (default 4096)",
        set: Some(|s, flag, v| {
            s.max_connections = parse_number::<usize>(flag, v, 1, 1 << 20)?;
            Ok(())
        }),
    },
    Opt {
        name: "shutdown-timeout",
        value: Some("SECS"),
        help: "on SIGINT/SIGTERM, time open connections get to finish (default 5)",
        set: Some(|s, flag, v| {
            s.shutdown_timeout = parse_seconds(flag, v, 0)?;
            Ok(())
        }),
    },
    Opt {
        name: "no-sendfile",
        value: None,
        help: "files mode: send file bodies with read() and write(), not sendfile(2)",
        set: Some(|s, _, _| {
            s.sendfile = false;
            Ok(())
        }),
    },
    Opt {
        name: "quiet",
        value: None,
        help: "do not log a line per connection or request",
        set: Some(|s, _, _| {
            s.quiet = true;
            Ok(())
        }),
    },
    Opt { name: "help", value: None, help: "print this help and exit", set: None },
    Opt { name: "version", value: None, help: "print the version and exit", set: None },
];

/// The flags the command line takes, for getopts, from [`OPTIONS`].
fn command_line() -> getopts::Options {
    let mut opts = getopts::Options::new();
    for opt in OPTIONS {
        let short = if opt.name == "help" { "h" } else { "" };
        match opt.value {
            Some(hint) => opts.optopt(short, opt.name, opt.help, hint),
            None => opts.optflag(short, opt.name, opt.help),
        };
    }
    opts
}

/// The usage text of `mode`'s program.
pub fn usage(mode: Mode) -> String {
    let prog = mode.program_name();
    let brief = format!(
        "Usage: {prog} --files DIR [--port N] [options]\n       {prog} --proxy HOST[:PORT] [--port N] [options]"
    );
    command_line().usage(&brief)
}

/// Parses the arguments after the program name. An `Err` is one printable
/// line naming what is wrong: what it quotes of the arguments is escaped
/// (`log::printable`), and an argument that is not UTF-8 is named, not a
/// panic.
pub fn parse_args(mode: Mode, args: &[OsString]) -> Result<Command, String> {
    let utf8 = |a: &OsString| {
        a.to_str()
            .map(str::to_string)
            .ok_or_else(|| format!("argument '{}' is not UTF-8", printable(a.as_bytes())))
    };
    let args = args.iter().map(utf8).collect::<Result<Vec<_>, _>>()?;
    parse_utf8_args(mode, &args).map_err(|msg| printable(msg.as_bytes()))
}

fn parse_utf8_args(mode: Mode, args: &[String]) -> Result<Command, String> {
    let matches = command_line().parse(args).map_err(|e| match e {
        getopts::Fail::UnrecognizedOption(name) => unknown_option(&name),
        other => other.to_string(),
    })?;
    if matches.opt_present("help") {
        return Ok(Command::Help);
    }
    if matches.opt_present("version") {
        return Ok(Command::Version);
    }
    // getopts takes the next word as the value even when it is another flag,
    // so `--files --port 80` would serve a directory named "--port".
    for opt in OPTIONS.iter().filter(|opt| opt.value.is_some()) {
        if matches.opt_str(opt.name).is_some_and(|v| v.starts_with("--")) {
            return Err(format!("--{} needs a value", opt.name));
        }
    }
    if let Some(extra) = matches.free.first() {
        return Err(format!("unexpected argument '{extra}'"));
    }
    let port = match matches.opt_str("port") {
        Some(s) => parse_number::<u16>("--port", &s, 0, u16::MAX)?,
        None => DEFAULT_PORT,
    };
    let threads = match matches.opt_str("num-threads") {
        Some(s) => Some(parse_number::<usize>("--num-threads", &s, 1, MAX_THREADS)?),
        None if mode == Mode::Pool => return Err("poolserver needs --num-threads N".into()),
        None => None,
    };
    let target = match (matches.opt_str("files"), matches.opt_str("proxy")) {
        (Some(dir), None) => Target::Files(files_directory(&dir)?),
        (None, Some(upstream)) => {
            let (host, port) = parse_upstream(&upstream)?;
            Target::Proxy { host, port }
        }
        (None, None) => return Err("give either --files DIR or --proxy HOST[:PORT]".into()),
        (Some(_), Some(_)) => return Err("give either --files or --proxy, not both".into()),
    };
    let mut settings = Settings::default();
    for opt in OPTIONS {
        let Some(set) = opt.set else { continue };
        let value = match opt.value {
            Some(_) => matches.opt_str(opt.name),
            None => matches.opt_present(opt.name).then(String::new),
        };
        if let Some(value) = value {
            set(&mut settings, &format!("--{}", opt.name), &value)?;
        }
    }
    Ok(Command::Run(Config { port, target, num_threads: threads, settings }))
}

/// The error for an option no one has: with the nearest one that exists,
/// when a letter or two would make it that one (`--file` → `--files`).
fn unknown_option(name: &str) -> String {
    // getopts names it without its dashes.
    let bare = name.trim_start_matches('-');
    let shown = if bare.chars().count() == 1 { format!("-{bare}") } else { format!("--{bare}") };
    let nearest = OPTIONS.iter().map(|opt| (edit_distance(bare, opt.name), opt.name)).min();
    match nearest {
        Some((d, near)) if d <= 2 && d < bare.len() => {
            format!("unknown option '{shown}': did you mean --{near}?")
        }
        _ => format!("unknown option '{shown}'"),
    }
}

/// How many one-character insertions, deletions and changes turn `a`
/// into `b` (Levenshtein's distance).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let here = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = here;
        }
    }
    row[b.len()]
}

/// A decimal number in `min..=max`; anything else is an error naming `flag`.
fn parse_number<T>(flag: &str, s: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let out_of_range = || format!("{flag} must be a number from {min} to {max}, not '{s}'");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(out_of_range());
    }
    match s.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(out_of_range()),
    }
}

/// A whole number of seconds from `min` to a day.
fn parse_seconds(flag: &str, s: &str, min: u64) -> Result<Duration, String> {
    parse_number::<u64>(flag, s, min, 86_400).map(Duration::from_secs)
}

/// A whole number of seconds up to a day, where 0 means never: `None`.
fn parse_optional_seconds(flag: &str, s: &str) -> Result<Option<Duration>, String> {
    Ok(Some(parse_seconds(flag, s, 0)?).filter(|d| !d.is_zero()))
}

/// The files directory as given, made absolute but with its symlinks kept:
/// it is opened afresh for each request, so a symlinked root that a deploy
/// repoints is followed at once. It must be a directory at startup.
fn files_directory(dir: &str) -> Result<PathBuf, String> {
    let path = Path::new(dir);
    match path.metadata() {
        Ok(meta) if meta.is_dir() => std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .map_err(|e| format!("--files {dir}: {}", crate::log::describe(&e))),
        Ok(_) => Err(format!("--files {dir}: not a directory")),
        Err(e) => Err(format!("--files {dir}: {}", crate::log::describe(&e))),
    }
}

/// `--bind`'s address: an IP address (IPv6 with or without brackets), or
/// `localhost`, which is 127.0.0.1: every client that resolves the name
/// tries it.
fn parse_bind(flag: &str, v: &str) -> Result<IpAddr, String> {
    if v.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    let bare = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(v);
    bare.parse().map_err(|_| {
        format!("{flag} needs an IPv4 or IPv6 address, or localhost, not '{}'", printable(v.as_bytes()))
    })
}

/// Splits `HOST[:PORT]`. An IPv6 literal with a port goes in brackets
/// (`[::1]:8080`); a bare IPv6 literal (`::1`) takes the default port.
pub fn parse_upstream(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("--proxy {s}: expected HOST or HOST:PORT");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').filter(|(h, _)| h.parse::<Ipv6Addr>().is_ok()).ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (s, None),
        }
    };
    if !is_host(host) {
        return Err(format!("--proxy {s}: '{host}' is neither a host name nor an address"));
    }
    let port = match port {
        Some(p) => parse_number::<u16>("the --proxy port", p, 1, u16::MAX)?,
        None => DEFAULT_PROXY_PORT,
    };
    Ok((host.to_string(), port))
}

/// Whether `host` can name a host: an IPv4 or IPv6 address, or a DNS name
/// (labels of letters, digits, `-` and `_`, 1 to 63 bytes each, at most
/// 253 in all, a final dot allowed).
fn is_host(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.parse::<IpAddr>().is_ok() || (name.len() <= 253 && name.split('.').all(label_ok))
}

/// Fills the globals from `config`. Called once, from `main`.
pub fn install(config: Config) {
    let _ = server_port.set(config.port);
    if let Some(n) = config.num_threads {
        let _ = num_threads.set(n);
    }
    match config.target {
        Target::Files(dir) => {
            let _ = server_files_directory.set(dir);
        }
        Target::Proxy { host, port } => {
            let _ = server_proxy_hostname.set(host);
            let _ = server_proxy_port.set(port);
        }
    }
    let _ = server_settings.set(config.settings);
}

/// The served directory, in files mode.
pub fn files_root() -> Option<&'static Path> {
    server_files_directory.get().map(PathBuf::as_path)
}

/// The upstream host and port, in proxy mode.
pub fn proxy_upstream() -> Option<(&'static str, u16)> {
    let host = server_proxy_hostname.get()?;
    Some((host.as_str(), server_proxy_port.get().copied().unwrap_or(DEFAULT_PROXY_PORT)))
}

/// The settings in force (the defaults, before `install`).
pub fn settings() -> &'static Settings {
    server_settings.get_or_init(Settings::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_option_names_the_nearest() {
        let err = |s: &str| parse_args(Mode::Thread, &args(s)).unwrap_err();
        assert_eq!(err("--file www"), "unknown option '--file': did you mean --files?");
        assert_eq!(err("--files www --prot 80"), "unknown option '--prot': did you mean --port?");
        assert_eq!(err("--files www --quite"), "unknown option '--quite': did you mean --quiet?");
        assert_eq!(err("--files www --frobnicate"), "unknown option '--frobnicate'");
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn run(mode: Mode, s: &str) -> Config {
        match parse_args(mode, &args(s)) {
            Ok(Command::Run(c)) => c,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn files_mode_with_defaults() {
        let c = run(Mode::Thread, "--files /");
        assert_eq!(c.port, 8000);
        assert_eq!(c.target, Target::Files(PathBuf::from("/")));
        assert_eq!(c.num_threads, None);
        assert!(!c.settings.quiet);
        assert!(c.settings.sendfile);
        assert!(!run(Mode::Thread, "--files / --no-sendfile").settings.sendfile);
    }

    #[test]
    fn proxy_mode_and_ports() {
        let c = run(Mode::Basic, "--proxy example.com --port 0 --quiet");
        assert_eq!(c.target, Target::Proxy { host: "example.com".into(), port: 80 });
        assert_eq!(c.port, 0);
        assert!(c.settings.quiet);
    }

    #[test]
    fn upstream_forms() {
        assert_eq!(parse_upstream("localhost:8080"), Ok(("localhost".into(), 8080)));
        assert_eq!(parse_upstream("[::1]:81"), Ok(("::1".into(), 81)));
        assert_eq!(parse_upstream("[::1]"), Ok(("::1".into(), 80)));
        assert_eq!(parse_upstream("::1"), Ok(("::1".into(), 80)));
        for bad in ["", ":80", "host:", "host:x", "host:0", "host:65536", "[::1", "[::1]x", "a b"] {
            assert!(parse_upstream(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn bind_addresses() {
        let bind = |v: &str| run(Mode::Thread, &format!("--files / --bind {v}")).settings.bind;
        assert_eq!(bind("localhost"), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(bind("LOCALHOST"), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(bind("10.1.2.3"), Some(IpAddr::from([10, 1, 2, 3])));
        assert_eq!(bind("::1"), Some(IpAddr::from(Ipv6Addr::LOCALHOST)));
        assert_eq!(bind("[::1]"), Some(IpAddr::from(Ipv6Addr::LOCALHOST)));
        assert_eq!(run(Mode::Thread, "--files /").settings.bind, None);
        for bad in ["example.com", "127.0.0.1:80", "1.2.3", "[::1", "''"] {
            let err = parse_args(Mode::Thread, &args(&format!("--files / --bind {bad}"))).unwrap_err();
            assert!(err.starts_with("--bind needs an IPv4 or IPv6 address"), "{bad}: {err}");
        }
    }

    #[test]
    fn numbers_are_checked_not_atoi() {
        for bad in ["--port x", "--port -1", "--port 65536", "--port 80x", "--port ''"] {
            let err = parse_args(Mode::Thread, &args(&format!("--files / {bad}"))).unwrap_err();
            assert!(err.contains("--port"), "{bad}: {err}");
        }
        for bad in ["0", "-3", "many", "99999999999999999999"] {
            let err = parse_args(Mode::Pool, &args(&format!("--files / --num-threads {bad}"))).unwrap_err();
            assert!(err.contains("--num-threads"), "{bad}: {err}");
        }
        assert_eq!(run(Mode::Pool, "--files / --num-threads 4").num_threads, Some(4));
    }

    #[test]
    fn mode_and_target_errors() {
        let err = |m, s: &str| parse_args(m, &args(s)).unwrap_err();
        assert!(err(Mode::Pool, "--files /").contains("--num-threads"));
        assert!(err(Mode::Thread, "--port 1").contains("--files"));
        assert!(err(Mode::Thread, "--files / --proxy x").contains("not both"));
        assert!(err(Mode::Thread, "--files /no/such/dir").contains("/no/such/dir"));
        assert!(err(Mode::Thread, "--bogus").contains("bogus"));
        assert!(err(Mode::Thread, "--files").contains("files"));
        assert_eq!(err(Mode::Thread, "--files --port 80"), "--files needs a value");
        assert!(err(Mode::Thread, "--files / extra").contains("extra"));
    }

    #[test]
    fn timeouts() {
        let c = run(Mode::Thread, "--proxy h --idle-timeout 0 --half-close-timeout 7 --connect-timeout 2");
        assert_eq!(c.settings.idle_timeout, None);
        assert_eq!(c.settings.half_close_timeout, Some(Duration::from_secs(7)));
        assert_eq!(c.settings.connect_timeout, Duration::from_secs(2));
        let d = run(Mode::Thread, "--proxy h").settings;
        assert_eq!(d.send_timeout, Some(Duration::from_secs(60)));
        assert_eq!(run(Mode::Thread, "--files / --send-timeout 0").settings.send_timeout, None);
        assert_eq!(
            run(Mode::Thread, "--files / --send-timeout 2").settings.send_timeout,
            Some(Duration::from_secs(2))
        );
        assert_eq!(d.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(d.half_close_timeout, Some(Duration::from_secs(30)));
        for bad in [
            "--connect-timeout 0",
            "--idle-timeout -1",
            "--send-timeout x",
            "--request-timeout x",
            "--idle-timeout 86401",
        ] {
            let err = parse_args(Mode::Thread, &args(&format!("--proxy h {bad}"))).unwrap_err();
            assert!(err.contains(bad.split(' ').next().unwrap()), "{bad}: {err}");
        }
    }

    #[test]
    fn help_wins() {
        assert_eq!(parse_args(Mode::Thread, &args("--help")), Ok(Command::Help));
        assert_eq!(parse_args(Mode::Thread, &args("--version --port x")), Ok(Command::Version));
        assert!(usage(Mode::Fork).contains("forkserver --files DIR"));
    }
}
