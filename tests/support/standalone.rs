//! A `perseus emulate` child process: the emulator as a user runs it, a real server in its own
//! process that a test can kill outright (SIGKILL, no clean shutdown) and start again.
// Each test file that includes this uses its own part of it.
#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

pub struct Standalone {
    child: Child,
    /// The gRPC address it printed (`127.0.0.1:PORT`).
    pub grpc: String,
}

impl Standalone {
    /// Starts `perseus emulate ARGS…` with gRPC on `grpc` (port 0: any free port) and HTTP and
    /// metrics on free ports, and waits for it to print its gRPC address; `None` when it exits first
    /// (a port still taken, say).
    pub fn try_spawn(grpc: &str, args: &[&str]) -> Option<Standalone> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_perseus"))
            .arg("emulate")
            .args(args)
            .args(["--listen", grpc])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("perseus emulate starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let grpc = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("gRPC"))
            .and_then(|l| l.split_whitespace().last().map(str::to_string));
        let Some(grpc) = grpc else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        // Keep reading: a closed pipe would kill the emulator at its next line of output.
        std::thread::spawn(move || lines.for_each(drop));
        Some(Standalone { child, grpc })
    }

    /// [`Standalone::try_spawn`] on free ports, which cannot be taken.
    pub fn spawn(args: &[&str]) -> Standalone {
        Standalone::try_spawn("127.0.0.1:0", args).expect("the emulator prints its gRPC address")
    }

    /// Sends a signal by name (`STOP`, `CONT`) with `kill`, to stall the server and resume it.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Kills the process outright (SIGKILL on Unix) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.kill();
    }
}
