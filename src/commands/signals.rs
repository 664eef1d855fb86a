//! SIGINT and SIGTERM as a request to stop a headless run and report what it measured.

use crate::commands::Failure;

/// The signals that end a run, registered when created: from then on they no longer kill the
/// process but wait in [`StopSignals::next`], so one sent while the target starts is not lost.
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> Result<StopSignals, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let failed = |e: std::io::Error| {
                Failure::Target(anyhow::Error::new(e).context("cannot handle SIGINT/SIGTERM"))
            };
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
                terminate: signal(SignalKind::terminate()).map_err(failed)?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for the next signal and names it.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// What a headless run does on a signal: the first asks it to stop so that what it measured is
/// still reported; a second, while it stops, quits at once without results.
pub(crate) fn stop_or_quit(
    signal: &'static str,
    interrupted: &mut Option<&'static str>,
    bar: &indicatif::ProgressBar,
) {
    if interrupted.is_some() {
        bar.finish_and_clear();
        crate::commands::output::stderr(&format!("{signal} again: quitting without results\n"));
        std::process::exit(130);
    }
    bar.suspend(|| {
        crate::commands::output::stderr(&format!(
            "{signal}: stopping; the results so far follow ({signal} again to quit at once)\n"
        ))
    });
    *interrupted = Some(signal);
}
