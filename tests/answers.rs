//! `make answers` (bench/answers.py) runs end to end: a tiny sweep of ab
//! against the four servers writes answers.md and its plot. No figure is
//! asserted, only that every run was measured and reported.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::TempDir;

#[test]
fn the_answers_script_measures_every_server_and_writes_its_report() {
    assert!(
        Command::new("ab").arg("-V").output().is_ok(),
        "the answers script needs ab: apt-get install -y apache2-utils"
    );
    let out = TempDir::new("answers");
    let bin_dir = Path::new(common::bin("httpserver")).parent().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/answers.py");
    let run = Command::new("python3")
        .arg(&script)
        .args(["--n", "20,40", "--c", "1,4", "--threads", "1,3", "--pool", "2"])
        .arg("--out")
        .arg(out.path())
        .arg("--bin-dir")
        .arg(bin_dir)
        .output()
        .expect("run python3");
    let said = String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "answers.py failed: {said}");

    let md = fs::read_to_string(out.path().join("answers.md")).unwrap();
    for server in ["httpserver", "forkserver", "threadserver", "poolserver"] {
        for n in [20, 40] {
            let row = md.lines().find(|l| l.starts_with(&format!("| {server} | {n} |")));
            let row = row.unwrap_or_else(|| panic!("no row for {server} n={n} in:\n{md}"));
            assert_eq!(row.matches(" req/s").count(), 2, "{row}");
            assert_eq!(row.matches("<br>0 failed").count(), 2, "{row}");
        }
    }
    for threads in [1, 3] {
        let row = md.lines().find(|l| l.starts_with(&format!("| poolserver --num-threads {threads} | 40 |")));
        let row = row.unwrap_or_else(|| panic!("no pool row for {threads} threads in:\n{md}"));
        assert_eq!(row.matches(" req/s").count(), 2, "{row}");
    }
    for heading in ["### 1. ", "### 2. ", "### 3. ", "### 4. "] {
        assert!(md.contains(heading), "no answer {heading:?} in:\n{md}");
    }
    assert!(!md.contains("(failed)"), "an answer cites a failed run:\n{md}");

    let svg = fs::read_to_string(out.path().join("time_per_request.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 4, "one line per server: {svg}");
}
