//! Which part of each shard's log is safely in the archive, and its persistence.
//!
//! Each submitted batch covers the log range `(start, end]` of one shard, where `start` is the
//! end of the shard's previous batch. Every writer thread sees every batch (its share may be
//! empty) and reports, per shard, the highest position below which it holds nothing
//! unpublished: the `start` of the oldest batch that still has rows in one of its open files,
//! or the end of the last batch it saw when it holds none. The shard's checkpoint is the
//! minimum over the writers. It is persisted as `{data}/wal/shard-{n}/checkpoint` (written to a
//! temporary file, fsynced, renamed, directory fsynced) only after the files it accounts for
//! were published, so a restart replays exactly the part of the log that may be missing.

use std::{
    collections::HashMap,
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use crate::{ArchiveError, WalPosition};

const FILE_NAME: &str = "checkpoint";

#[derive(Debug, Clone)]
struct Shard {
    /// End of the last batch submitted.
    submitted: WalPosition,
    /// Per writer: everything below is published.
    safe: Vec<WalPosition>,
    /// Minimum of `safe`.
    checkpoint: WalPosition,
    /// What the checkpoint file says.
    persisted: WalPosition,
}

/// Per-shard log progress, shared by `submit` and the writer threads.
#[derive(Debug)]
pub(crate) struct Progress {
    wal_root: PathBuf,
    writers: usize,
    shards: Mutex<HashMap<usize, Shard>>,
    /// Serialises checkpoint file writes (two writers may persist at once).
    persist: Mutex<()>,
}

impl Progress {
    /// Loads every `{wal_root}/shard-{n}/checkpoint`.
    pub fn load(wal_root: &Path, writers: usize) -> Result<Progress, ArchiveError> {
        let mut shards = HashMap::new();
        let entries = match std::fs::read_dir(wal_root) {
            Ok(entries) => Some(entries),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(ArchiveError::io(wal_root, e)),
        };
        for entry in entries.into_iter().flatten() {
            let entry = entry.map_err(|e| ArchiveError::io(wal_root, e))?;
            let name = entry.file_name();
            let Some(shard) = name
                .to_str()
                .and_then(|n| n.strip_prefix("shard-"))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if let Some(position) = read_checkpoint(&entry.path().join(FILE_NAME))? {
                shards.insert(shard, Shard::at(position, writers));
            }
        }
        Ok(Progress {
            wal_root: wal_root.to_owned(),
            writers,
            shards: Mutex::new(shards),
            persist: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<usize, Shard>> {
        // A writer that panicked while holding the lock left consistent data behind (every
        // update is a single assignment), so poisoning is ignored.
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checkpoint of `shard` (the start of the log when it has none).
    pub fn checkpoint(&self, shard: usize) -> WalPosition {
        self.lock()
            .get(&shard)
            .map_or(WalPosition::ZERO, |s| s.checkpoint)
    }

    /// Registers a batch ending at `end`; returns its start, or `None` when `end` is not past
    /// what was already submitted (a second submission of the same records).
    pub fn begin_batch(&self, shard: usize, end: WalPosition) -> Option<WalPosition> {
        let mut shards = self.lock();
        let state = shards
            .entry(shard)
            .or_insert_with(|| Shard::at(WalPosition::ZERO, self.writers));
        if end <= state.submitted {
            return None;
        }
        Some(std::mem::replace(&mut state.submitted, end))
    }

    /// Writer `writer` holds nothing of `shard` unpublished below `safe`.
    pub fn report(&self, writer: usize, shard: usize, safe: WalPosition) {
        let mut shards = self.lock();
        if let Some(state) = shards.get_mut(&shard) {
            if let Some(slot) = state.safe.get_mut(writer) {
                *slot = (*slot).max(safe);
            }
            if let Some(min) = state.safe.iter().min() {
                state.checkpoint = state.checkpoint.max(*min);
            }
        }
    }

    /// Writes the checkpoint file of every shard whose checkpoint moved. Call only after the
    /// files that moved it are published.
    ///
    /// # Errors
    /// The first file that could not be written (the others are still attempted next time).
    pub fn persist(&self) -> Result<(), ArchiveError> {
        let _serial = self.persist.lock().unwrap_or_else(|p| p.into_inner());
        let due: Vec<(usize, WalPosition)> = self
            .lock()
            .iter()
            .filter(|(_, s)| s.checkpoint > s.persisted)
            .map(|(shard, s)| (*shard, s.checkpoint))
            .collect();
        for (shard, position) in due {
            let dir = self.wal_root.join(format!("shard-{shard}"));
            write_checkpoint(&dir, position)?;
            if let Some(state) = self.lock().get_mut(&shard) {
                state.persisted = state.persisted.max(position);
            }
        }
        Ok(())
    }
}

impl Shard {
    fn at(position: WalPosition, writers: usize) -> Shard {
        Shard {
            submitted: position,
            safe: vec![position; writers],
            checkpoint: position,
            persisted: position,
        }
    }
}

/// Reads a checkpoint file: `{segment} {offset}\n`.
pub(crate) fn read_checkpoint(path: &Path) -> Result<Option<WalPosition>, ArchiveError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ArchiveError::io(path, e)),
    };
    let mut parts = text.split_ascii_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset)), None) => Ok(Some(WalPosition::new(segment, offset))),
        _ => Err(ArchiveError::Corrupt {
            path: path.to_owned(),
            message: format!("not a checkpoint (`segment offset`): {text:?}"),
        }),
    }
}

/// Atomically replaces `{dir}/checkpoint`.
fn write_checkpoint(dir: &Path, position: WalPosition) -> Result<(), ArchiveError> {
    let text = format!("{} {}\n", position.segment, position.offset);
    crate::writer::file::replace_file(dir, FILE_NAME, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(segment: u64, offset: u64) -> WalPosition {
        WalPosition::new(segment, offset)
    }

    #[test]
    fn checkpoint_is_the_minimum_over_writers() {
        let dir = tempfile::tempdir().unwrap();
        let progress = Progress::load(dir.path(), 2).unwrap();
        assert_eq!(progress.begin_batch(0, p(0, 10)), Some(p(0, 0)));
        assert_eq!(progress.begin_batch(0, p(0, 20)), Some(p(0, 10)));
        // Resubmitting an old range is recognised.
        assert_eq!(progress.begin_batch(0, p(0, 15)), None);
        progress.report(0, 0, p(0, 20));
        assert_eq!(progress.checkpoint(0), p(0, 0));
        progress.report(1, 0, p(0, 10));
        assert_eq!(progress.checkpoint(0), p(0, 10));
        assert_eq!(progress.checkpoint(7), WalPosition::ZERO);
    }

    #[test]
    fn persisted_checkpoints_are_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let progress = Progress::load(dir.path(), 1).unwrap();
        progress.begin_batch(3, p(2, 99));
        progress.report(0, 3, p(2, 99));
        progress.persist().unwrap();
        let again = Progress::load(dir.path(), 1).unwrap();
        assert_eq!(again.checkpoint(3), p(2, 99));
        assert_eq!(again.begin_batch(3, p(2, 50)), None);
    }

    #[test]
    fn a_garbled_checkpoint_is_an_error_not_a_restart_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shard-0")).unwrap();
        std::fs::write(dir.path().join("shard-0/checkpoint"), "12 x\n").unwrap();
        assert!(matches!(
            Progress::load(dir.path(), 1),
            Err(ArchiveError::Corrupt { .. })
        ));
    }
}
