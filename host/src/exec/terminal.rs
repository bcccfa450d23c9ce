//! A pseudo-terminal for processes that report progress only to a terminal:
//! the child gets the terminal's secondary side as stdout and stderr; the host
//! reads the primary side like a pipe. Output post-processing is off, so a
//! line ends in `\n` as the program wrote it, not `\r\n`.

use std::os::fd::OwnedFd;

use nix::pty::openpty;
use nix::sys::termios::{tcgetattr, tcsetattr, OutputFlags, SetArg};

/// The host's side (read as the process's output) and the child's stdout and stderr.
pub(super) struct Terminal {
    /// What the process writes arrives here; reading it fails (EIO) once
    /// every holder of the other side has closed it, which ends the capture.
    pub primary: tokio::fs::File,
    /// For the child's stdout.
    pub stdout: OwnedFd,
    /// For the child's stderr.
    pub stderr: OwnedFd,
}

/// Opens a terminal pair.
pub(super) fn open() -> std::io::Result<Terminal> {
    let pair = openpty(None, None)?;
    let mut settings = tcgetattr(&pair.slave)?;
    settings.output_flags.remove(OutputFlags::OPOST);
    tcsetattr(&pair.slave, SetArg::TCSANOW, &settings)?;
    let second: OwnedFd = pair.slave.try_clone()?;
    Ok(Terminal {
        primary: tokio::fs::File::from_std(std::fs::File::from(pair.master)),
        stdout: pair.slave,
        stderr: second,
    })
}
