//! Bridges between the async store and the blocking CSV/JSON code, with bounded buffers: a
//! [`ChannelReader`] fed by ranged reads, and [`ChannelWriter`]s drained by multipart uploads.
//! At most a few chunks are in flight in each direction, whatever the file's size.

use std::io::{Read, Write};

use bytes::Bytes;
use maas_store::{ETag, ObjectWriter, SharedStore, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes read from the store per request.
pub const READ_CHUNK: u64 = 8 * 1024 * 1024;
/// Bytes a writer gathers before handing them to the uploader.
pub const WRITE_CHUNK: usize = 1024 * 1024;
/// Chunks that may wait in a channel.
const IN_FLIGHT: usize = 2;

/// A blocking reader over chunks produced by an async task.
pub struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, StoreError>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// How the reading task of [`read_object`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// Every byte was read, or the reader stopped listening.
    Done,
    /// The object was overwritten while it was being read (a ranged read pinned to its first
    /// ETag failed): what was read belongs to a version that no longer exists.
    Changed,
    /// A read failed for another reason (the reader got the error).
    Failed,
}

/// Streams `key` (of `size` bytes, tagged `etag`) in ranged reads into a [`ChannelReader`]. Every
/// read is pinned to `etag`, so the bytes all come from one version of the object: if it is
/// overwritten midway, the next read fails and the task ends with [`ReadEnd::Changed`].
pub fn read_object(
    store: SharedStore,
    key: String,
    size: u64,
    etag: ETag,
) -> (JoinHandle<ReadEnd>, ChannelReader) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let task = tokio::spawn(async move {
        let mut offset = 0;
        while offset < size {
            let end = (offset + READ_CHUNK).min(size);
            let chunk = match store.get_range(&key, offset, end, Some(&etag)).await {
                // The object is `size` bytes at this ETag: a shorter answer is a body cut short,
                // not the end of the file.
                Ok(bytes) if bytes.len() as u64 != end - offset => Err(StoreError::Backend {
                    op: "get",
                    key: key.clone(),
                    message: format!(
                        "a read of bytes {offset}..{end} returned {} bytes",
                        bytes.len()
                    ),
                }),
                other => other,
            };
            let end_state = match &chunk {
                Ok(_) => None,
                Err(StoreError::PreconditionFailed { .. }) => Some(ReadEnd::Changed),
                Err(_) => Some(ReadEnd::Failed),
            };
            if tx.send(chunk).await.is_err() {
                return end_state.unwrap_or(ReadEnd::Done);
            }
            if let Some(end_state) = end_state {
                return end_state;
            }
            offset = end;
        }
        ReadEnd::Done
    });
    (
        task,
        ChannelReader {
            rx,
            current: Bytes::new(),
        },
    )
}

/// A blocking writer whose bytes an async task uploads.
pub struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= WRITE_CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

/// The uploader task: hands the still-open writer back when its channel closes.
pub type UploadTask = JoinHandle<Result<Box<dyn ObjectWriter>, StoreError>>;

/// Feeds an [`ObjectWriter`] from a [`ChannelWriter`]. The task returns the writer once the
/// channel closes, so the caller decides whether to complete or abort it.
pub fn upload_object(mut writer: Box<dyn ObjectWriter>) -> (UploadTask, ChannelWriter) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
    let task = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = writer.write(chunk).await {
                let _ = writer.abort().await;
                return Err(e);
            }
        }
        Ok(writer)
    });
    (
        task,
        ChannelWriter {
            tx,
            buffer: Vec::with_capacity(WRITE_CHUNK),
        },
    )
}
