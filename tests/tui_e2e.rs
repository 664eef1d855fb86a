//! The real binary in a real terminal (tmux): it starts on the built-in demo, shows live numbers, a
//! rate change reaches the achieved rate, a tenant is added and removed, and quitting — or a panic —
//! restores the terminal. `.ci/run` installs tmux where it is missing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Session {
    name: String,
}

impl Session {
    /// Runs `perseus` in a detached 160×48 tmux session; after it exits the shell prints its exit
    /// status and the terminal modes, so the test can see that raw mode was undone.
    fn start(tag: &str, env: &str, data_dir: &Path) -> Session {
        let name = format!("perseus-e2e-{tag}-{}", std::process::id());
        let cmd = format!(
            "{env} PERSEUS_DATA_DIR={} PERSEUS_CONFIG={} {} ; echo EXITED=$?; stty -a; sleep 60",
            data_dir.display(),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config.sample.toml")
                .display(),
            env!("CARGO_BIN_EXE_perseus"),
        );
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "48",
                "-s",
                &name,
                &cmd,
            ])
            .status()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(status.success(), "tmux new-session failed");
        Session { name }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let status = Command::new("tmux")
                .args(["send-keys", "-t", &self.name, k])
                .status()
                .expect("tmux send-keys");
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits until `pred` holds for the screen, or fails with the last screen.
    fn wait(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not seen in {limit:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// The tenant table row of `model`, split into cells.
fn row<'a>(screen: &'a str, model: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .find(|l| l.contains(&format!(" {model} ")) && l.contains("/s"))
        .map(|l| l.split_whitespace().collect())
}

/// The first "N/s" cell after the model name is the target, the second the achieved rate.
fn rates(screen: &str, model: &str) -> Option<(f64, f64)> {
    let cells = row(screen, model)?;
    let mut per_s = cells
        .iter()
        .filter_map(|c| c.strip_suffix("/s"))
        .filter_map(|c| c.parse::<f64>().ok());
    Some((per_s.next()?, per_s.next()?))
}

fn restored(screen: &str) -> bool {
    // After the program, the shell's `stty -a` must show a cooked terminal again.
    screen.contains(" icanon") && screen.contains(" echo") && !screen.contains("-icanon")
}

#[test]
fn the_dashboard_runs_live_and_restores_the_terminal() {
    let data = tempfile::tempdir().unwrap();
    let s = Session::start("live", "", data.path());
    let screen = s.wait(
        "three tenants with live rates",
        Duration::from_secs(60),
        |sc| {
            ["resnet50", "mobilenet_v2", "inception_v3"]
                .iter()
                .all(|m| rates(sc, m).is_some_and(|(_, achieved)| achieved > 0.0))
        },
    );
    assert!(screen.contains("connected"), "{screen}");
    let (target, _) = rates(&screen, "resnet50").unwrap();
    assert_eq!(target, 150.0, "the demo's resnet50 rate:\n{screen}");

    // Step 100, raise once: 150 → 250/s, and the achieved rate follows.
    s.keys(&["]", "+"]);
    s.wait(
        "resnet50 achieving about 250/s",
        Duration::from_secs(40),
        |sc| rates(sc, "resnet50").is_some_and(|(t, a)| t == 250.0 && a > 220.0 && a < 280.0),
    );

    // Add a tenant from the picker (its first entry), then remove it again.
    s.keys(&["a"]);
    let picker = s.wait("the model picker", Duration::from_secs(10), |sc| {
        sc.contains("Add a tenant")
    });
    let first = picker
        .lines()
        .find(|l| l.contains('▶') && l.contains("MiB"))
        .and_then(|l| l.split('▶').nth(1))
        .and_then(|r| r.split_whitespace().next())
        .expect("a selected model in the picker")
        .to_string();
    s.keys(&["Enter"]);
    s.wait("the added tenant running", Duration::from_secs(30), |sc| {
        sc.contains("Tenants (4") && rates(sc, &first).is_some_and(|(_, achieved)| achieved > 0.0)
    });
    // Select it (the last row) and remove it.
    s.keys(&["j", "j", "j", "d"]);
    s.wait("the remove confirmation", Duration::from_secs(10), |sc| {
        sc.contains(&format!("Remove {first}?"))
    });
    s.keys(&["y"]);
    s.wait("three tenants again", Duration::from_secs(20), |sc| {
        sc.contains("Tenants (3")
    });

    s.keys(&["q"]);
    let end = s.wait("the program to exit", Duration::from_secs(20), |sc| {
        sc.contains("EXITED=")
    });
    assert!(end.contains("EXITED=0"), "{end}");
    assert!(restored(&end), "terminal restored after quit:\n{end}");
}

#[test]
fn a_panic_restores_the_terminal() {
    let data = tempfile::tempdir().unwrap();
    // Debug builds of the dashboard panic on request after this many milliseconds.
    let s = Session::start("panic", "PERSEUS_TEST_PANIC_AFTER_MS=3000", data.path());
    let end = s.wait("the program to exit", Duration::from_secs(60), |sc| {
        sc.contains("EXITED=")
    });
    assert!(
        !end.contains("EXITED=0"),
        "a panic is not a clean exit:\n{end}"
    );
    assert!(restored(&end), "terminal restored after a panic:\n{end}");
}
