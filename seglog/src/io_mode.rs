//! Whether a directory's files are written with direct I/O or through the page cache.

use std::{path::Path, sync::Mutex};

use futures_lite::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder};

/// How a log's files are written. Either way, data is durable once a sync returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// glommio's DMA files: `O_DIRECT`, no copy into the page cache (on tmpfs glommio leaves
    /// `O_DIRECT` off by itself; the files are still written as DMA files).
    Direct,
    /// Through the page cache, made durable with fdatasync: for filesystems that refuse
    /// `O_DIRECT`.
    Buffered,
}

impl std::fmt::Display for IoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoMode::Direct => "direct",
            IoMode::Buffered => "buffered",
        })
    }
}

/// Name of the file [`probe`] writes and deletes.
const PROBE_FILE: &str = ".direct-io-probe";

/// Filesystems (device ids) whose fallback to buffered I/O was logged already: every log of
/// every shard probes its own directory, and a user needs to read it once per filesystem.
static ANNOUNCED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Picks how files in `dir` (which must exist) are written: direct I/O when a DMA file can be
/// created, written, synced and closed there, buffered I/O otherwise. The fallback is logged
/// once per filesystem, with the error that caused it.
///
/// Call it before the first DMA file is opened on `dir`'s device. glommio decides once per
/// block device whether it takes polled I/O, by reading one block at offset 0 of the first DMA
/// file opened on it; when that file is empty (a fresh log segment) the read returns 0 without
/// reaching the device, the device is taken to poll, and every O_DIRECT read of real data on
/// it then fails with EOPNOTSUPP (a virtio disk without poll queues does this). The probe
/// therefore opens a file that holds a block of data first, so the answer is the device's.
///
/// A probe that fails for another reason (a full disk, no permission) falls back too: the
/// real segment that is created next fails with the same error, and that error is reported
/// where it names the file.
pub async fn probe(dir: &Path) -> IoMode {
    let path = dir.join(PROBE_FILE);
    let outcome = settle_polling(&path).await;
    let outcome = match outcome {
        Ok(()) => try_direct(&path).await,
        Err(e) => Err(e),
    };
    let cleanup = path.clone();
    let _ = crate::blocking(move || std::fs::remove_file(cleanup)).await;
    match outcome {
        Ok(()) => IoMode::Direct,
        Err(e) => {
            announce_fallback(dir, &e);
            IoMode::Buffered
        }
    }
}

/// Writes a block of data through the page cache and opens it as a DMA file, so that glommio's
/// polled-I/O check for the device reads real data (see [`probe`]).
async fn settle_polling(path: &Path) -> std::io::Result<()> {
    let written = path.to_path_buf();
    crate::blocking(move || std::fs::write(written, [0x5a_u8; 4096])).await?;
    DmaFile::open(path).await?.close().await?;
    Ok(())
}

async fn try_direct(path: &Path) -> std::io::Result<()> {
    let file = DmaFile::create(path).await?;
    let mut writer = DmaStreamWriterBuilder::new(file).build();
    // Less than a block: the partial last block is what a log's sync writes most often.
    writer.write_all(b"fleetmq direct I/O probe").await?;
    writer.sync().await?;
    writer.close().await?;
    Ok(())
}

fn announce_fallback(dir: &Path, error: &std::io::Error) {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(dir).map_or(0, |m| m.dev());
    let mut announced = match ANNOUNCED.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if announced.contains(&device) {
        return;
    }
    announced.push(device);
    tracing::info!(
        dir = %dir.display(),
        error = %error,
        "direct I/O is not available here; logs are written through the page cache and made durable with fdatasync"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_takes_direct_io_gets_it_and_keeps_no_probe_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        let mode = glommio::LocalExecutor::default().run(async move { probe(&path).await });
        // Also where the temp dir is tmpfs: glommio writes DMA files there without O_DIRECT,
        // and the probe counts that as direct (no fallback is needed).
        assert_eq!(mode, IoMode::Direct);
        assert!(!dir.path().join(PROBE_FILE).exists());
    }

    #[test]
    fn a_directory_that_cannot_be_written_falls_back_rather_than_failing_here() {
        let missing = std::path::PathBuf::from("/nonexistent-fleetmq-probe-dir");
        let mode = glommio::LocalExecutor::default().run(async move { probe(&missing).await });
        assert_eq!(mode, IoMode::Buffered);
    }
}

#[cfg(test)]
mod regression {
    use futures_lite::AsyncReadExt;
    use glommio::io::{DmaFile, DmaStreamReaderBuilder};

    use super::*;

    /// An empty file opened first used to convince glommio that a virtio disk takes polled
    /// I/O, after which direct reads of real data failed with EOPNOTSUPP (the broker then
    /// could not read its 17-byte snapshot on restart, after a run whose write-ahead log
    /// segment was empty).
    #[test]
    fn an_empty_file_opened_first_does_not_break_direct_reads_after_a_probe() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write_synced = |name: &str, bytes: &[u8]| {
            let mut file = std::fs::File::create(dir.path().join(name)).expect("create");
            std::io::Write::write_all(&mut file, bytes).expect("write");
            file.sync_all().expect("sync");
        };
        write_synced("empty.log", b"");
        write_synced("snapshot", b"seventeen bytes!!");
        let root = dir.path().to_path_buf();
        let read = glommio::LocalExecutor::default().run(async move {
            probe(&root).await;
            DmaFile::open(root.join("empty.log"))
                .await
                .expect("open empty")
                .close()
                .await
                .expect("close");
            let file = DmaFile::open(root.join("snapshot")).await.expect("open");
            let mut reader = DmaStreamReaderBuilder::new(file)
                .with_buffer_size(128 << 10)
                .build();
            let mut buf = Vec::new();
            let read = reader.read_to_end(&mut buf).await;
            let _ = reader.close().await;
            read.map(|_| buf)
        });
        assert_eq!(read.expect("direct read").as_slice(), b"seventeen bytes!!");
    }
}
