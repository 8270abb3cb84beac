//! What the machine lets this process hold, checked once at start, before
//! any thread: `--max-connections` and `--num-threads` are lowered to what
//! the process can really hold, with one line on stderr for each that says
//! which limit and how much. A server that took more connections than its
//! fds, threads or memory maps allow would find out at the worst moment, in
//! the middle of thousands of connections; lowered here, the connections
//! past the limit are refused as any others over `--max-connections` are
//! (503 in files mode, closed in proxy mode), and those it holds are served.
//!
//! What each connection needs, by mode (`need`):
//! - **fds**: a proxied connection holds 2 (the client and the upstream), a
//!   files-mode one up to 3 (the client, the root, the file). forkserver's
//!   children hold theirs in their own processes.
//! - **tasks** (threads and processes, which `kernel.threads-max`,
//!   `kernel.pid_max` and `RLIMIT_NPROC` count alike): a proxied connection
//!   has two threads, one per direction, a files-mode one has one. In
//!   poolserver the workers are the connections' first threads, so each
//!   worker counts with its second.
//! - **memory maps** (`vm.max_map_count`, per process): each thread's stack
//!   and its guard page are two (`sys::Stack`, or glibc's for `sys::spawn`).
//!   The stacks kept for new threads (`stacks`) are never more than the
//!   threads that ran at once, so they need no maps beyond those. forkserver's
//!   children have maps of their own.
//!
//! The soft fd limit is first raised to the hard one (`sys::raise_fd_limit`).

use std::fs;

use crate::config::{Config, Mode, Target};
use crate::sys;

/// Fds kept for what is not a connection, beyond those open at start (the
/// standard streams): the listener, the refusals waiting for their 503
/// (`modes::REFUSALS_QUEUED`), a resolver's files.
const SPARE_FDS: u64 = 80;
/// Memory maps kept for the program, its libraries, malloc's arenas and
/// large buffers.
const SPARE_MAPS: u64 = 1024;
/// Memory maps of one thread: its stack and its guard page.
const MAPS_PER_THREAD: u64 = 2;

/// The limits the process runs under, as read at start. `u64::MAX` for
/// none.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    /// `RLIMIT_NOFILE` (soft, after raising it), and the fds open now.
    pub fds: (u64, u64),
    /// `RLIMIT_NPROC` (not enforced for root), and this process's threads.
    pub nproc: (u64, u64),
    /// `kernel.threads-max`, `kernel.pid_max`, and the tasks on the machine now.
    pub threads_max: u64,
    pub pid_max: u64,
    pub tasks_now: u64,
    /// `vm.max_map_count`, and this process's maps now.
    pub max_maps: (u64, u64),
}

/// What one connection needs of each limit, in this mode, and what the
/// server's own helper threads take first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Need {
    fds: u64,
    tasks: u64,
    /// Whether its threads are this process's (not a forked child's).
    maps: bool,
    /// The helper threads: the signal thread, files mode's refuser (not
    /// in the basic server), forkserver's reaper.
    helpers: u64,
}

fn need(mode: Mode, proxy: bool) -> Need {
    let tasks = if proxy { 2 } else { 1 };
    let helpers = 1 + u64::from(!proxy && mode != Mode::Basic) + u64::from(mode == Mode::Fork);
    match mode {
        Mode::Fork => Need { fds: 0, tasks, maps: false, helpers },
        _ => Need { fds: if proxy { 2 } else { 3 }, tasks, maps: true, helpers },
    }
}

/// How many connections (poolserver: workers, each with its connection)
/// `machine` lets the process hold, and the limit that says so.
fn most(machine: &Machine, need: Need, proxy: bool) -> Vec<(u64, String)> {
    let what = if proxy { "proxied connection" } else { "connection" };
    let left = |limit: u64, used: u64, spare: u64| limit.saturating_sub(used).saturating_sub(spare);
    let mut most = Vec::new();
    if need.fds > 0 && machine.fds.0 != u64::MAX {
        let n = left(machine.fds.0, machine.fds.1, SPARE_FDS) / need.fds;
        most.push((n, format!("RLIMIT_NOFILE is {}, {} fds a {what}", machine.fds.0, need.fds)));
    }
    let per = need.tasks;
    if per == 0 {
        return most;
    }
    for (limit, name) in [(machine.threads_max, "kernel.threads-max"), (machine.pid_max, "kernel.pid_max")] {
        if limit != u64::MAX {
            let n = left(limit, machine.tasks_now, need.helpers) / per;
            let now = machine.tasks_now;
            most.push((n, format!("{name} is {limit} with {now} tasks running, {per} threads a {what}")));
        }
    }
    if machine.nproc.0 != u64::MAX {
        let n = left(machine.nproc.0, machine.nproc.1, need.helpers) / per;
        most.push((n, format!("RLIMIT_NPROC is {}, {per} threads a {what}", machine.nproc.0)));
    }
    if need.maps && machine.max_maps.0 != u64::MAX {
        let spare = SPARE_MAPS + need.helpers * MAPS_PER_THREAD;
        let n = left(machine.max_maps.0, machine.max_maps.1, spare) / (per * MAPS_PER_THREAD);
        let each = per * MAPS_PER_THREAD;
        most.push((n, format!("vm.max_map_count is {}, {each} memory maps a {what}", machine.max_maps.0)));
    }
    most
}

/// Lowers `config`'s `--max-connections` (forkserver, threadserver,
/// poolserver) and `--num-threads` (poolserver) to what `machine` allows.
/// Returns one line for each value lowered.
pub fn fit(mode: Mode, config: &mut Config, machine: &Machine) -> Vec<String> {
    let proxy = matches!(config.target, Target::Proxy { .. });
    let need = need(mode, proxy);
    let mut lines = Vec::new();
    let mut lower = |flag: &str, value: &mut usize, limits: Vec<(u64, String)>| {
        if let Some((n, why)) = limits.into_iter().min_by_key(|(n, _)| *n) {
            let n = usize::try_from(n).unwrap_or(usize::MAX).max(1);
            if n < *value {
                lines.push(format!("{flag} {} lowered to {n}: {why}", *value));
                *value = n;
            }
        }
    };
    match mode {
        Mode::Basic => {}
        Mode::Pool => {
            // The workers, each with a connection's threads and maps (its
            // fds are the connections', below).
            if let Some(workers) = config.num_threads.as_mut() {
                lower("--num-threads", workers, most(machine, Need { fds: 0, ..need }, proxy));
            }
            // The connections, served or queued, by their fds: the workers
            // are their threads.
            let fds_only = Need { tasks: 0, maps: false, ..need };
            lower("--max-connections", &mut config.settings.max_connections, most(machine, fds_only, proxy));
        }
        Mode::Fork | Mode::Thread => {
            lower("--max-connections", &mut config.settings.max_connections, most(machine, need, proxy));
        }
    }
    lines
}

/// Reads the limits this process runs under, raising its soft fd limit to
/// the hard one first. What cannot be read counts as no limit.
pub fn read_machine() -> Machine {
    let fds = sys::raise_fd_limit().unwrap_or(u64::MAX);
    let count = |dir: &str| fs::read_dir(dir).map_or(0, |d| d.count() as u64);
    let number = |path: &str| fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let nproc = if sys::is_root() {
        u64::MAX
    } else {
        sys::getrlimit(libc::RLIMIT_NPROC).map_or(u64::MAX, |(soft, _)| soft)
    };
    // /proc/loadavg's fourth field: running/total tasks.
    let tasks_now = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace().nth(3).and_then(|f| f.split_once('/')).and_then(|(_, t)| t.parse().ok())
        })
        .unwrap_or(0);
    let maps_now = fs::read_to_string("/proc/self/maps").map_or(0, |s| s.lines().count() as u64);
    Machine {
        fds: (fds, count("/proc/self/fd")),
        nproc: (nproc, count("/proc/self/task")),
        threads_max: number("/proc/sys/kernel/threads-max").unwrap_or(u64::MAX),
        pid_max: number("/proc/sys/kernel/pid_max").unwrap_or(u64::MAX),
        tasks_now,
        max_maps: (number("/proc/sys/vm/max_map_count").unwrap_or(u64::MAX), maps_now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    /// This project's machine: 20,000 fds, 65,530 maps, pid_max 32,768.
    fn machine() -> Machine {
        Machine {
            fds: (20_000, 4),
            nproc: (u64::MAX, 1),
            threads_max: 192_739,
            pid_max: 32_768,
            tasks_now: 200,
            max_maps: (65_530, 100),
        }
    }

    fn config(target: Target, max_connections: usize, num_threads: Option<usize>) -> Config {
        let settings = Settings { max_connections, ..Settings::default() };
        Config { port: 0, target, num_threads, settings }
    }

    fn proxy() -> Target {
        Target::Proxy { host: "localhost".into(), port: 8080 }
    }

    #[test]
    fn what_fits_is_left_alone() {
        let mut c = config(proxy(), 4096, None);
        assert!(fit(Mode::Thread, &mut c, &machine()).is_empty());
        assert_eq!(c.settings.max_connections, 4096);
    }

    #[test]
    fn fds_bound_a_threadserver_proxy_and_the_line_says_so() {
        let mut c = config(proxy(), 10_000, None);
        let lines = fit(Mode::Thread, &mut c, &machine());
        // (20,000 - 4 - 80) / 2
        assert_eq!(c.settings.max_connections, 9_958);
        assert_eq!(
            lines,
            ["--max-connections 10000 lowered to 9958: RLIMIT_NOFILE is 20000, 2 fds a proxied connection"]
        );
    }

    #[test]
    fn the_tightest_limit_wins() {
        let mut m = machine();
        m.max_maps = (8_000, 100);
        let mut c = config(proxy(), 10_000, None);
        let lines = fit(Mode::Thread, &mut c, &m);
        // (8,000 - 100 - 1,024 - 2) / 4
        assert_eq!(c.settings.max_connections, 1_718);
        assert!(lines[0].contains("vm.max_map_count is 8000, 4 memory maps"), "{lines:?}");
    }

    #[test]
    fn a_pool_is_lowered_by_tasks_and_its_queue_by_fds() {
        let mut m = machine();
        m.pid_max = 10_000;
        let mut c = config(proxy(), 20_000, Some(10_000));
        let lines = fit(Mode::Pool, &mut c, &m);
        // (10,000 - 200 - 1) / 2 workers; (20,000 - 4 - 80) / 2 connections.
        assert_eq!(c.num_threads, Some(4_899));
        assert_eq!(c.settings.max_connections, 9_958);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("--num-threads 10000 lowered to 4899: kernel.pid_max is 10000"),
            "{lines:?}"
        );
    }

    #[test]
    fn forked_children_count_as_tasks_only() {
        let mut m = machine();
        m.fds = (64, 4);
        let mut c = config(Target::Files("/".into()), 4096, None);
        assert!(fit(Mode::Fork, &mut c, &m).is_empty());
        let mut c = config(Target::Files("/".into()), 40_000, None);
        let lines = fit(Mode::Fork, &mut c, &m);
        // The signal thread, the refuser and the reaper come first.
        assert_eq!(c.settings.max_connections, 32_768 - 200 - 3);
        assert!(lines[0].contains("kernel.pid_max"), "{lines:?}");
    }

    #[test]
    fn a_task_limit_leaves_room_for_the_helpers_first() {
        // RLIMIT_NPROC 5 with the main thread running: the signal thread and
        // the refuser take two, two connections fit.
        let mut m = machine();
        m.nproc = (5, 1);
        let mut c = config(Target::Files("/".into()), 4096, None);
        fit(Mode::Thread, &mut c, &m);
        assert_eq!(c.settings.max_connections, 2);
        // Proxied, two threads a connection: one fits, and at least one is always allowed.
        let mut c = config(proxy(), 4096, None);
        fit(Mode::Thread, &mut c, &m);
        assert_eq!(c.settings.max_connections, 1);
        m.nproc = (2, 1);
        fit(Mode::Thread, &mut c, &m);
        assert_eq!(c.settings.max_connections, 1);
    }

    #[test]
    fn the_basic_server_has_nothing_to_lower() {
        let mut m = machine();
        m.fds = (10, 4);
        let mut c = config(proxy(), 4096, None);
        assert!(fit(Mode::Basic, &mut c, &m).is_empty());
    }
}
