//! A spinner on standard error for work that takes more than a second (an
//! upload the server compiles, a build): the only module that speaks
//! `indicatif`. Nothing is drawn when standard error is not a terminal.

use std::sync::mpsc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget};

/// How long work may take before the spinner shows, unless
/// `PULSEHOST_PROGRESS_AFTER_MS` says otherwise.
const SHOW_AFTER: Duration = Duration::from_secs(1);

fn show_after() -> Duration {
    std::env::var("PULSEHOST_PROGRESS_AFTER_MS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(SHOW_AFTER, Duration::from_millis)
}

/// Runs `work`, showing `message` with a spinner once it has taken a second.
pub fn while_working<T>(message: &str, work: impl FnOnce() -> T) -> T {
    let bar = ProgressBar::new_spinner();
    bar.set_draw_target(ProgressDrawTarget::hidden());
    bar.set_message(message.to_owned());
    let (done, finished) = mpsc::channel::<()>();
    let after = show_after();
    let shown = bar.clone();
    let painter = std::thread::spawn(move || {
        if finished.recv_timeout(after).is_err() {
            shown.set_draw_target(ProgressDrawTarget::stderr());
            shown.enable_steady_tick(Duration::from_millis(120));
            let _ = finished.recv();
        }
        shown.finish_and_clear();
    });
    let result = work();
    let _ = done.send(());
    let _ = painter.join();
    result
}
