//! `fleetmq passwd FILE USER`: adds a user or changes their password in a mosquitto-format
//! password file (`$7$` PBKDF2-SHA512), or removes them with `--delete`.
//!
//! The password is prompted for twice on a terminal, or read as one line from stdin when
//! piped (`echo "$PW" | fleetmq passwd users.txt v17`). The file is replaced atomically and
//! created readable by its owner only; a running broker picks it up on SIGHUP.

use std::{
    io::{BufRead, IsTerminal, Write},
    num::NonZeroU32,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context;
use broker::security::passwd;
use clap::Args;

use crate::exit::UsageError;

/// Flags of `fleetmq passwd`.
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The password file (created if missing).
    file: PathBuf,
    /// The user to add, change or delete.
    user: String,
    /// Remove the user instead.
    #[arg(long)]
    delete: bool,
    /// PBKDF2 iterations for the new hash.
    #[arg(long, value_name = "N", default_value_t = passwd::DEFAULT_ITERATIONS)]
    iterations: u32,
}

/// Runs the command.
pub fn run(args: PasswdArgs) -> anyhow::Result<()> {
    passwd::check_user(&args.user).map_err(|e| UsageError(format!("USER: {e}")))?;
    let iterations = NonZeroU32::new(args.iterations)
        .filter(|n| n.get() <= 1_000_000)
        .ok_or_else(|| UsageError("--iterations must be between 1 and 1000000".into()))?;
    let existing = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !args.delete => String::new(),
        Err(e) => {
            return Err(UsageError(format!("cannot read {}: {e}", args.file.display())).into())
        }
    };
    let line = if args.delete {
        let known = existing
            .lines()
            .any(|l| l.split_once(':').is_some_and(|(u, _)| u == args.user));
        if !known {
            return Err(UsageError(format!(
                "{}: no user {:?} to delete",
                args.file.display(),
                args.user
            ))
            .into());
        }
        None
    } else {
        let password = read_password()?;
        let hash = passwd::hash_password(password.as_bytes(), iterations)?;
        Some(format!("{}:{hash}", args.user))
    };
    let text = passwd::with_user(&existing, &args.user, line.as_deref());
    write_private(&args.file, &text)
}

/// The new password: prompted twice on a terminal, one line from a pipe.
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again =
            rpassword::prompt_password("Reenter password: ").context("reading the password")?;
        if first != again {
            return Err(UsageError("the passwords do not match".into()).into());
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        return Err(UsageError("the password is empty".into()).into());
    }
    Ok(password)
}

/// Replaces `path` with `text` atomically (temporary file, fsync, rename), mode 0600.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| UsageError(format!("{} is not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}
