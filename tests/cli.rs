//! The command line: help, every kind of bad input, and ports that cannot be had.

mod common;

use std::process::{Command, Output};

use common::{Server, TempDir};

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(common::bin(name)).args(args).output().expect("run server")
}

/// Bad input: exit status 2, a first line on stderr that names the program
/// and the problem, then the usage.
fn assert_usage_error(name: &str, args: &[&str], problem: &str) {
    let out = run(name, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
    let first = stderr.lines().next().unwrap_or("");
    assert!(first.starts_with(&format!("{name}: ")), "{name} {args:?}: {first}");
    assert!(first.contains(problem), "{name} {args:?}: expected {problem:?} in {first:?}");
    assert!(stderr.contains(&format!("Usage: {name} --files DIR")), "{name} {args:?}: no usage in {stderr}");
    assert!(out.stdout.is_empty(), "{name} {args:?} wrote to stdout");
    assert!(!stderr.contains("(os error"), "{name} {args:?}: std's error suffix in {first:?}");
}

per_server! {
    fn help_prints_usage_on_stdout_and_exits_0(name) {
        let out = run(name, &["--help"]);
        assert_eq!(out.status.code(), Some(0), "{name}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        for needle in
            [format!("Usage: {name} --files DIR"), "--proxy HOST[:PORT]".into(), "--num-threads N".into()]
        {
            assert!(stdout.contains(&needle), "{name}: {needle} not in {stdout}");
        }
    }
}

per_server! {
    fn every_kind_of_bad_input_exits_2_with_a_message_and_usage(name) {
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
        assert_usage_error(
            name,
            &[&["--files", d, "--proxy", "localhost:80"][..], threads].concat(),
            "not both",
        );
        assert_usage_error(name, &with(&["--files", "/no/such/directory"]), "/no/such/directory");
        assert_usage_error(name, &with(&["--proxy", "localhost:http"]), "--proxy");
        assert_usage_error(name, &[&["--files", d, "stray"][..], threads].concat(), "stray");
        assert_usage_error("poolserver", &["--files", d], "--num-threads");
    }
}

per_server! {
    fn a_port_in_use_is_a_clear_error(name) {
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
}

#[test]
fn port_0_picks_a_real_port_and_says_which() {
    let dir = TempDir::new("cli-port0");
    let server = Server::start("threadserver", &["--files", dir.str(), "--quiet"]);
    assert_ne!(server.port, 0);
    assert!(std::net::TcpStream::connect(server.addr()).is_ok());
    assert!(std::net::TcpStream::connect(("::1", server.port)).is_ok(), "IPv6 is served too");
}
