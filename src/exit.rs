//! Exit codes: 0 success, 2 bad usage or configuration, 1 anything else.

/// An error the user can fix by changing flags or the config file (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Maps a command's result to the process exit code, printing the error.
pub fn code(result: anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fleetmq: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                2
            } else {
                1
            }
        }
    }
}
