//! [`AppendFile`]: a segment file written from its start, in order, and synced at will.

use std::{io, path::Path};

use futures_lite::AsyncWriteExt;
use glommio::io::{BufferedFile, DmaFile, DmaStreamWriter, DmaStreamWriterBuilder};

use crate::IoMode;

/// Buffer size for a log segment that is synced often. glommio's DMA writer writes its whole
/// buffer at every sync of a partly filled one (padded with zeros, rewritten by the next), and
/// copies it into a fresh one: with 256 KiB, a lone 150-byte record cost a 256 KiB write
/// (0.58 ms here, on an io-wq thread) before its fdatasync. 16 KiB holds a round of a busy
/// connection's records in one write and keeps a lone record's write small.
pub const LOG_BUFFER: usize = 16 << 10;

/// A new file that is only appended to, written with direct I/O or through the page cache
/// ([`IoMode`]). Bytes given to [`AppendFile::write_all`] are buffered up to the buffer size;
/// [`AppendFile::sync`] writes what is buffered and makes everything durable.
///
/// In direct mode a sync pads the last block with zeros on disk (the next write overwrites
/// them), so readers of a log treat zeros at the end of a file as its end.
#[derive(Debug)]
pub struct AppendFile {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Direct(DmaStreamWriter),
    Buffered {
        file: BufferedFile,
        /// Bytes written to the file so far (its length, as nothing else writes it).
        written: u64,
        /// Bytes not yet written to the file.
        pending: Vec<u8>,
        /// How much `pending` may hold before a write goes out without being asked for.
        buffer_size: usize,
    },
}

impl AppendFile {
    /// Creates (or truncates) the file at `path`. `buffer_size` bounds what is held in memory
    /// between writes. The directory entry is not synced: see [`crate::sync_dir`].
    ///
    /// # Errors
    /// The file cannot be created (the error names the path).
    pub async fn create(path: &Path, mode: IoMode, buffer_size: usize) -> io::Result<AppendFile> {
        let named = |e: glommio::GlommioError<()>| {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        };
        let inner = match mode {
            IoMode::Direct => {
                let file = DmaFile::create(path).await.map_err(named)?;
                Inner::Direct(
                    DmaStreamWriterBuilder::new(file)
                        .with_buffer_size(buffer_size)
                        .with_write_behind(2)
                        .build(),
                )
            }
            IoMode::Buffered => Inner::Buffered {
                file: BufferedFile::create(path).await.map_err(named)?,
                written: 0,
                pending: Vec::new(),
                buffer_size,
            },
        };
        Ok(AppendFile { inner })
    }

    /// Appends `bytes`. They are in the file once [`AppendFile::flush`] or
    /// [`AppendFile::sync`] returns.
    ///
    /// # Errors
    /// A write to the file failed.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::Direct(writer) => writer.write_all(bytes).await,
            Inner::Buffered {
                pending,
                buffer_size,
                ..
            } => {
                pending.extend_from_slice(bytes);
                if pending.len() >= *buffer_size {
                    self.write_pending().await?;
                }
                Ok(())
            }
        }
    }

    /// Hands everything appended to the kernel, without waiting for the disk.
    ///
    /// # Errors
    /// A write to the file failed.
    pub async fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Direct(writer) => writer.flush().await,
            Inner::Buffered { .. } => self.write_pending().await,
        }
    }

    /// Writes everything appended and makes it durable (fdatasync).
    ///
    /// # Errors
    /// A write or the sync failed: what was appended since the last successful sync may not
    /// be on disk.
    pub async fn sync(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Direct(writer) => writer.sync().await.map(drop).map_err(io::Error::from),
            Inner::Buffered { .. } => {
                self.write_pending().await?;
                if let Inner::Buffered { file, .. } = &self.inner {
                    file.fdatasync().await.map_err(io::Error::from)?;
                }
                Ok(())
            }
        }
    }

    /// Bytes appended so far, buffered ones included: the file's length once flushed.
    pub fn position(&self) -> u64 {
        match &self.inner {
            Inner::Direct(writer) => writer.current_pos(),
            Inner::Buffered {
                written, pending, ..
            } => *written + pending.len() as u64,
        }
    }

    /// Syncs and closes the file.
    ///
    /// # Errors
    /// The final write, sync or close failed.
    pub async fn close(mut self) -> io::Result<()> {
        match self.inner {
            Inner::Direct(mut writer) => writer.close().await,
            Inner::Buffered { .. } => {
                self.sync().await?;
                if let Inner::Buffered { file, .. } = self.inner {
                    file.close().await.map_err(io::Error::from)?;
                }
                Ok(())
            }
        }
    }

    /// Writes the buffered bytes at the end of the file; after a short write the rest goes
    /// in another.
    async fn write_pending(&mut self) -> io::Result<()> {
        let Inner::Buffered {
            file,
            written,
            pending,
            ..
        } = &mut self.inner
        else {
            return Ok(());
        };
        while !pending.is_empty() {
            // glommio takes the buffer it writes; a copy keeps what a short write leaves.
            let n = file
                .write_at(pending.clone(), *written)
                .await
                .map_err(io::Error::from)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file took none of the bytes written to it",
                ));
            }
            *written += n as u64;
            pending.drain(..n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_and_read_back(mode: IoMode) -> (u64, Vec<u8>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("segment");
        let shown = path.clone();
        let position = glommio::LocalExecutor::default().run(async move {
            // A buffer smaller than what is written, so both paths write more than once.
            let mut file = AppendFile::create(&shown, mode, 8).await.expect("create");
            file.write_all(b"hello, ").await.expect("write");
            file.sync().await.expect("sync");
            file.write_all(b"durable world").await.expect("write");
            file.sync().await.expect("sync");
            let position = file.position();
            file.close().await.expect("close");
            position
        });
        (position, std::fs::read(&path).expect("read back"))
    }

    #[test]
    fn both_modes_keep_every_byte_in_order() {
        for mode in [IoMode::Direct, IoMode::Buffered] {
            let (position, bytes) = write_and_read_back(mode);
            assert_eq!(position, 20, "{mode}");
            // Direct I/O may leave the zero padding of its last block after the data.
            let data = &bytes[..20];
            assert_eq!(data, b"hello, durable world", "{mode}");
            assert!(bytes[20..].iter().all(|b| *b == 0), "{mode}");
        }
    }

    #[test]
    fn buffered_mode_writes_exactly_what_was_appended() {
        let (_, bytes) = write_and_read_back(IoMode::Buffered);
        assert_eq!(bytes, b"hello, durable world");
    }
}
