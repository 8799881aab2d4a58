//! A directory of numbered segment files, `{n:020}.{extension}` (zero-padded so names sort
//! like numbers): naming, listing, creating durably, cutting a torn tail, deleting.

use std::path::{Path, PathBuf};

use crate::{blocking, AppendFile, IoMode, LOG_BUFFER};

/// The segments of one log.
#[derive(Debug, Clone)]
pub struct Segments {
    dir: PathBuf,
    extension: &'static str,
}

impl Segments {
    /// The segments named `*.{extension}` in `dir`.
    pub fn new(dir: impl Into<PathBuf>, extension: &'static str) -> Segments {
        Segments {
            dir: dir.into(),
            extension,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of segment `n`.
    pub fn path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:020}.{}", self.extension))
    }

    /// The segment number a file name stands for, if it is one of these segments.
    pub fn parse_name(&self, name: &str) -> Option<u64> {
        name.strip_suffix(self.extension)?
            .strip_suffix('.')?
            .parse()
            .ok()
    }

    /// Segment numbers on disk, ascending (blocking: call through [`blocking`]).
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn list(&self) -> std::io::Result<Vec<u64>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            if let Some(n) = entry?.file_name().to_str().and_then(|n| self.parse_name(n)) {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Creates segment `n` for appending and makes its directory entry durable, so that a
    /// crash cannot lose the file that later syncs made durable.
    ///
    /// # Errors
    /// The file cannot be created or the directory synced.
    pub async fn create(&self, n: u64, io: IoMode) -> std::io::Result<AppendFile> {
        let file = AppendFile::create(&self.path(n), io, LOG_BUFFER).await?;
        crate::sync_dir(&self.dir).await?;
        Ok(file)
    }

    /// Cuts segment `n` to its first `len` bytes (its valid prefix), durably.
    ///
    /// # Errors
    /// The file cannot be opened, truncated or synced.
    pub async fn truncate(&self, n: u64, len: u64) -> std::io::Result<()> {
        let path = self.path(n);
        blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
        })
        .await
    }

    /// Deletes segment `n`; a failure is logged, not returned (an old segment left behind is
    /// skipped, or deleted again, by the next recovery).
    pub async fn remove(&self, n: u64) {
        let path = self.path(n);
        let shown = path.display().to_string();
        if let Err(e) = blocking(move || std::fs::remove_file(path)).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = shown, error = %e, "cannot delete an old log segment");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_numbers_and_only_this_logs_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segments = Segments::new(dir.path(), "wal");
        assert_eq!(segments.parse_name("00000000000000000042.wal"), Some(42));
        assert!(segments.path(9) < segments.path(10));
        assert_eq!(segments.parse_name("checkpoint"), None);
        assert_eq!(segments.parse_name("00000000000000000001.log"), None);
        assert_eq!(segments.parse_name("1xwal"), None);
        for name in [
            segments.path(10),
            segments.path(2),
            dir.path().join("snapshot"),
            Segments::new(dir.path(), "log").path(5),
        ] {
            std::fs::write(name, b"").expect("write");
        }
        assert_eq!(segments.list().expect("list"), vec![2, 10]);
    }
}
