//! Whole-file reads, directory syncs and blocking work, off the executor's thread.

use std::{io, path::Path};

use bytes::Bytes;
use glommio::io::Directory;

/// Runs blocking file-system work on glommio's blocking thread pool.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    glommio::executor().spawn_blocking(f).await
}

/// Reads a whole file through the page cache.
///
/// Logs are read once, at start-up, from first byte to last, so the page cache costs nothing
/// here, and a buffered read works on every filesystem. It also does not depend on glommio's
/// guess of whether the device takes polled I/O, which an empty file can mislead into failing
/// every direct read with EOPNOTSUPP (see [`crate::probe`]).
///
/// # Errors
/// The file cannot be opened or read (the caller names the path).
pub async fn read_whole(path: &Path) -> io::Result<Bytes> {
    let owned = path.to_path_buf();
    blocking(move || std::fs::read(owned))
        .await
        .map(Bytes::from)
}

/// Makes the entries of `dir` durable (files created, renamed or deleted in it).
///
/// # Errors
/// The directory cannot be opened or synced (the error names it).
pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    let named = |e: glommio::GlommioError<()>| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("{}: {e}", dir.display()))
    };
    let directory = Directory::open(dir).await.map_err(named)?;
    directory.sync().await.map_err(named)?;
    let _ = directory.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_shorter_than_a_block_reads_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("snapshot");
        std::fs::write(&path, b"seventeen bytes!!").expect("write");
        let read = glommio::LocalExecutor::default()
            .run(async move { read_whole(&path).await })
            .expect("read");
        assert_eq!(&read[..], b"seventeen bytes!!");
    }

    #[test]
    fn a_missing_file_is_an_error_of_its_kind() {
        let path = Path::new("/nonexistent-fleetmq/snapshot").to_path_buf();
        let err = glommio::LocalExecutor::default()
            .run(async move { read_whole(&path).await })
            .expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
