//! The real binary in a real terminal: a pseudo-terminal opened from the test (portable-pty) whose
//! output a terminal emulator (vt100) turns back into a screen, so the test needs nothing but the
//! toolchain. It starts on the built-in demo, shows live numbers, a rate change reaches the achieved
//! rate, a tenant is added and removed, and quitting — or a panic — restores the terminal.

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, PtySize, native_pty_system};

const ROWS: u16 = 48;
const COLS: u16 = 160;

/// What the terminal shows, and how it is set, at one moment.
struct Screen {
    text: String,
    alternate: bool,
    cursor_hidden: bool,
    mouse_captured: bool,
}

/// `perseus` running in a 160×48 pseudo-terminal through `sh -c`, so that after it exits the shell
/// prints the terminal modes (`stty -a`, to see that raw mode was undone) and then its exit status.
struct Session {
    parser: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    reader: Option<JoinHandle<()>>,
}

impl Session {
    fn start(extra_env: &[(&str, &str)], data_dir: &Path) -> Session {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut cmd = CommandBuilder::new("sh");
        cmd.arg("-c");
        // The exit status is printed last so that a long panic message cannot scroll it away.
        cmd.arg(format!(
            "'{}'; status=$?; stty -a; echo EXITED=$status",
            env!("CARGO_BIN_EXE_perseus")
        ));
        cmd.env("TERM", "xterm-256color");
        // A backtrace would scroll the panic message off the 48 rows the test reads back.
        cmd.env("RUST_BACKTRACE", "0");
        cmd.env("PERSEUS_DATA_DIR", data_dir);
        cmd.env(
            "PERSEUS_CONFIG",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config.sample.toml"),
        );
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = pty.slave.spawn_command(cmd).expect("spawn perseus");
        // Only the child may hold the terminal's other end, so that reading ends when it exits.
        drop(pty.slave);

        let size = |n| NonZeroU16::new(n).expect("a terminal size is not zero");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(size(ROWS), size(COLS), 0)));
        let mut output = pty.master.try_clone_reader().expect("pty reader");
        let sink = Arc::clone(&parser);
        // Drained on its own thread: a full pty buffer would block the dashboard's writes.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().expect("pty writer");
        // The master stays open through the reader and writer handles; dropping it here is fine.
        drop(pty.master);
        Session {
            parser,
            writer,
            child,
            reader: Some(reader),
        }
    }

    fn screen(&self) -> Screen {
        let parser = self.parser.lock().unwrap();
        let s = parser.screen();
        Screen {
            text: s.contents(),
            alternate: s.alternate_screen(),
            cursor_hidden: s.hide_cursor(),
            mouse_captured: s.mouse_protocol_mode() != vt100::MouseProtocolMode::None,
        }
    }

    /// Types each key as a terminal would send it, with a pause so each lands in its own read.
    fn keys(&mut self, keys: &[&str]) {
        for k in keys {
            let bytes: &[u8] = match *k {
                "Enter" => b"\r",
                other => other.as_bytes(),
            };
            self.writer.write_all(bytes).expect("type into the pty");
            self.writer.flush().expect("flush the pty");
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits until `pred` holds for the screen, or fails with the last screen.
    fn wait(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> Screen {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s.text) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not seen in {limit:?}; screen:\n{}",
                s.text
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for the shell to print the exit status, then for the output to be drained.
    fn finish(&mut self, limit: Duration) -> Screen {
        self.wait("the program to exit", limit, |sc| sc.contains("EXITED="));
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.screen()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A failed assertion leaves the dashboard running: hang up on it.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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

/// The terminal as the shell had it: main screen, cursor shown, no mouse reports, and (by the
/// shell's `stty -a`) canonical mode and echo back on.
fn assert_restored(end: &Screen, after: &str) {
    assert!(!end.alternate, "alternate screen left after {after}");
    assert!(!end.cursor_hidden, "cursor shown after {after}");
    assert!(!end.mouse_captured, "mouse capture off after {after}");
    let stty = &end.text;
    assert!(
        stty.contains(" icanon") && stty.contains(" echo") && !stty.contains("-icanon"),
        "raw mode off after {after}:\n{stty}"
    );
}

#[test]
fn the_dashboard_runs_live_and_restores_the_terminal() {
    let data = tempfile::tempdir().unwrap();
    let mut s = Session::start(&[], data.path());
    let screen = s.wait(
        "three tenants with live rates",
        Duration::from_secs(60),
        |sc| {
            ["resnet50", "mobilenet_v2", "inception_v3"]
                .iter()
                .all(|m| rates(sc, m).is_some_and(|(_, achieved)| achieved > 0.0))
        },
    );
    assert!(
        screen.alternate,
        "the dashboard draws on the alternate screen"
    );
    assert!(screen.text.contains("connected"), "{}", screen.text);
    let (target, _) = rates(&screen.text, "resnet50").unwrap();
    assert_eq!(target, 150.0, "the demo's resnet50 rate:\n{}", screen.text);

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
        .text
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
    let end = s.finish(Duration::from_secs(20));
    assert!(end.text.contains("EXITED=0"), "{}", end.text);
    assert_restored(&end, "quit");
}

#[test]
fn a_panic_restores_the_terminal() {
    let data = tempfile::tempdir().unwrap();
    // Debug builds of the dashboard panic on request after this many milliseconds.
    let mut s = Session::start(&[("PERSEUS_TEST_PANIC_AFTER_MS", "3000")], data.path());
    let end = s.finish(Duration::from_secs(60));
    assert!(
        end.text.contains("EXITED=") && !end.text.contains("EXITED=0"),
        "a panic is not a clean exit:\n{}",
        end.text
    );
    assert!(
        end.text.contains("injected panic"),
        "the panic came from the running dashboard and landed on the restored screen:\n{}",
        end.text
    );
    assert_restored(&end, "a panic");
}
