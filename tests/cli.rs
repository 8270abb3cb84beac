//! The command line: help, every kind of bad input, and ports that cannot be had.

mod common;

use std::process::{Command, Output};

use common::{Server, TempDir};

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(common::bin(name)).args(args).output().expect("run server")
}

/// Bad input: exit status 2, a line on stderr that names the program and
/// the problem, and one that says where the usage is: not the whole usage,
/// which would scroll the line that matters off a small terminal.
fn assert_usage_error(name: &str, args: &[&str], problem: &str) {
    let out = run(name, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
    let first = stderr.lines().next().unwrap_or("");
    assert!(first.starts_with(&format!("{name}: ")), "{name} {args:?}: {first}");
    assert!(first.contains(problem), "{name} {args:?}: expected {problem:?} in {first:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{name} {args:?}: {stderr}");
    assert_eq!(lines[1], format!("Try '{name} --help'."), "{name} {args:?}");
    assert!(out.stdout.is_empty(), "{name} {args:?} wrote to stdout");
    assert!(!stderr.contains("(os error"), "{name} {args:?}: std's error suffix in {first:?}");
}

per_server!(a_misspelt_option_is_named_and_the_version_printed);
/// A misspelt long option names the nearest one; `--version` prints
/// the crate's version on stdout.
fn a_misspelt_option_is_named_and_the_version_printed(name: &'static str) {
    let threads: &[&str] = if name == "poolserver" { &["--num-threads", "2"] } else { &[] };
    let args = [&["--file", "www"][..], threads].concat();
    assert_usage_error(name, &args, "unknown option '--file': did you mean --files?");
    let out = run(name, &["--version"]);
    assert_eq!(out.status.code(), Some(0), "{name}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{name} {}\n", env!("CARGO_PKG_VERSION")));
}

per_server!(help_prints_usage_on_stdout_and_exits_0);
fn help_prints_usage_on_stdout_and_exits_0(name: &'static str) {
    let out = run(name, &["--help"]);
    assert_eq!(out.status.code(), Some(0), "{name}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needle in
        [format!("Usage: {name} --files DIR"), "--proxy HOST[:PORT]".into(), "--num-threads N".into()]
    {
        assert!(stdout.contains(&needle), "{name}: {needle} not in {stdout}");
    }
}

per_server!(every_kind_of_bad_input_exits_2_with_a_message_and_usage);
fn every_kind_of_bad_input_exits_2_with_a_message_and_usage(name: &'static str) {
    let dir = TempDir::new("cli");
    let d = dir.str();
    let threads: &[&str] = if name == "poolserver" { &["--num-threads", "2"] } else { &[] };
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut v: Vec<&str> = extra.to_vec();
        v.extend_from_slice(threads);
        v
    };
    assert_usage_error(name, &with(&["--files"]), "files");
    assert_usage_error(name, &[&["--files", d, "--port"][..], threads].concat(), "port");
    for bad_port in ["abc", "-1", "65536", "8o8o", "99999999999"] {
        assert_usage_error(name, &[&["--files", d, "--port", bad_port][..], threads].concat(), "--port");
    }
    for bad_threads in ["0", "-2", "x", "4.5"] {
        assert_usage_error(name, &["--files", d, "--num-threads", bad_threads], "--num-threads");
    }
    assert_usage_error(name, &[&["--files", d, "--frobnicate"][..], threads].concat(), "frobnicate");
    assert_usage_error(name, &with(&["--port", "0"]), "--files");
    assert_usage_error(name, &[&["--files", d, "--proxy", "localhost:80"][..], threads].concat(), "not both");
    assert_usage_error(name, &with(&["--files", "/no/such/directory"]), "/no/such/directory");
    assert_usage_error(name, &with(&["--proxy", "localhost:http"]), "--proxy");
    assert_usage_error(name, &[&["--files", d, "stray"][..], threads].concat(), "stray");
    assert_usage_error("poolserver", &["--files", d], "--num-threads");
}

per_server!(a_port_in_use_is_a_clear_error);
fn a_port_in_use_is_a_clear_error(name: &'static str) {
    let dir = TempDir::new("cli-port");
    let first = Server::start("threadserver", &["--files", dir.str(), "--quiet"]);
    let port = first.port.to_string();
    let mut args = vec!["--files", dir.str(), "--port", &port];
    if name == "poolserver" {
        args.extend(["--num-threads", "2"]);
    }
    let Err((status, stderr)) = Server::spawn(name, &args) else {
        panic!("{name} listened on port {port}, which is taken");
    };
    let code = status.and_then(|s| s.code());
    assert!(code.is_some() && code != Some(0), "{name}: exit {status:?}");
    assert!(stderr.contains(&format!("listen on port {port}")), "{name}: {stderr}");
    assert!(stderr.contains("Address already in use"), "{name}: {stderr}");
    assert!(!stderr.contains("(os error"), "{name}: {stderr}");
}

#[test]
fn port_0_picks_a_real_port_and_says_which() {
    let dir = TempDir::new("cli-port0");
    let server = Server::start("threadserver", &["--files", dir.str(), "--quiet"]);
    assert_ne!(server.port, 0);
    assert!(std::net::TcpStream::connect(server.addr()).is_ok());
    assert!(std::net::TcpStream::connect(("::1", server.port)).is_ok(), "IPv6 is served too");
}

per_server!(arguments_that_cannot_be_taken_get_one_printable_line);
/// Found by fuzzing: an argument that is not UTF-8 panicked (exit 101),
/// a CR in an argument reached the terminal raw, and `--proxy` took hosts
/// that can never resolve. Each is now one printable line, where the
/// usage is, and exit status 2.
fn arguments_that_cannot_be_taken_get_one_printable_line(name: &'static str) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let threads: &[&str] = if name == "poolserver" { &["--num-threads", "2"] } else { &[] };
    let not_utf8 = OsStr::from_bytes(b"/tmp/\xff");
    let out = Command::new(common::bin(name)).arg("--files").arg(not_utf8).args(threads).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
    let first = stderr.lines().next().unwrap_or("");
    assert!(first.contains("not UTF-8") && first.contains("\\xff"), "{name}: {first:?}");
    assert!(stderr.ends_with(&format!("\nTry '{name} --help'.\n")), "{name}: {stderr}");
    for raw in ["\r", "--files\u{1b}[2J", "x\ny"] {
        let out = run(name, &[&[raw][..], threads].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {raw:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(!first.chars().any(char::is_control), "{name} {raw:?}: {first:?}");
        assert!(!stderr.contains('\r') && !stderr.contains('\u{1b}'), "{name} {raw:?}: {stderr:?}");
    }
    for host in
        ["localhost:23001:1", "\u{10}", "bad host", "a..b", "-x.example", "[localhost]:80", "exa$mple.com"]
    {
        assert_usage_error(name, &[&["--proxy", host][..], threads].concat(), "--proxy");
    }
}

per_server!(proxy_hosts_that_can_be_hosts_start);
/// Every form of upstream that can be one still starts.
fn proxy_hosts_that_can_be_hosts_start(name: &'static str) {
    for host in
        ["localhost:1", "127.0.0.1:80", "[::1]:8080", "::1", "my_host.example.", "xn--bcher-kva.example:99"]
    {
        let srv = Server::start(name, &["--proxy", host]);
        drop(srv);
    }
}
