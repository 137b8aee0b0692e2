//! Standard output for commands whose reader may go away first
//! (`heartbeat members | head`, `heartbeat watch | head`): Rust ignores
//! SIGPIPE, so a write to a closed pipe fails with EPIPE, and `println!`
//! panics on it (exit 101). Here a closed reader ends the command quietly
//! with exit 0, as `ls | head` does; any other write error is reported.

use std::io::Write;
use std::process::ExitCode;

/// Writes `text` to stdout and flushes it. `Err` carries the exit code the
/// command ends with: 0 when the reader went away, 1 for another failure.
pub(crate) fn write(text: &str) -> Result<(), ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// [`write`] of one line.
pub(crate) fn line(text: &str) -> Result<(), ExitCode> {
    write(&format!("{text}\n"))
}
