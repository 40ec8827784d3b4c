//! DATA as it arrives: the first bytes in memory, the rest in an unnamed file in the data
//! folder, so that many sessions sending large messages at once hold little memory. A message
//! is read back whole only under the intake's memory budget, a few at a time.

use crate::budget::Budget;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::SemaphorePermit;

/// DATA bytes a session keeps in memory before it writes to a file: most calendar mail fits.
const IN_MEMORY: usize = 64 * 1024;

/// One message's DATA while it arrives. Bytes past `max` are counted, not kept.
pub struct Incoming {
    memory: Vec<u8>,
    file: Option<tokio::fs::File>,
    dir: PathBuf,
    size: usize,
    max: usize,
    failed: Option<std::io::Error>,
}

impl Incoming {
    /// An empty message that spills into `dir` past the in-memory share.
    pub fn new(dir: &Path, max: usize) -> Self {
        Incoming {
            memory: Vec::with_capacity(16 * 1024),
            file: None,
            dir: dir.to_path_buf(),
            size: 0,
            max,
            failed: None,
        }
    }

    /// Appends bytes of the message.
    pub async fn push(&mut self, bytes: &[u8]) {
        self.size += bytes.len();
        if self.too_large() || self.failed.is_some() {
            self.memory = Vec::new();
            self.file = None;
            return;
        }
        if self.file.is_none() && self.memory.len() + bytes.len() <= IN_MEMORY {
            self.memory.extend_from_slice(bytes);
            return;
        }
        if let Err(e) = self.spill(bytes).await {
            self.failed = Some(e);
            self.memory = Vec::new();
            self.file = None;
        }
    }

    async fn spill(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let dir = self.dir.clone();
                // Unnamed: nothing is left behind by a crash.
                let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
                    .await
                    .map_err(std::io::Error::other)??;
                let mut file = tokio::fs::File::from_std(file);
                file.write_all(&self.memory).await?;
                self.memory = Vec::new();
                self.file.insert(file)
            }
        };
        file.write_all(bytes).await
    }

    /// Bytes received so far, kept or not.
    pub fn size(&self) -> usize {
        self.size
    }

    /// True when the message is over the size limit.
    pub fn too_large(&self) -> bool {
        self.size > self.max
    }

    /// The whole message, read once the budget has room for it; the permit holds that room
    /// until the message is processed. Fails when the spill file could not be written.
    pub async fn into_bytes(
        self,
        budget: &Budget,
    ) -> std::io::Result<(Vec<u8>, SemaphorePermit<'_>)> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let permit = budget.reserve(self.size).await;
        let bytes = match self.file {
            None => self.memory,
            Some(mut file) => {
                file.flush().await?;
                file.seek(SeekFrom::Start(0)).await?;
                let mut bytes = Vec::with_capacity(self.size);
                file.read_to_end(&mut bytes).await?;
                bytes
            }
        };
        Ok((bytes, permit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_messages_go_through_a_file_and_come_back_whole() {
        let dir = std::env::temp_dir();
        let budget = Budget::new(1024 * 1024, 1024 * 1024);
        let mut incoming = Incoming::new(&dir, 1024 * 1024);
        let chunk: Vec<u8> = (0..=255u8).cycle().take(50_000).collect();
        for _ in 0..10 {
            incoming.push(&chunk).await;
        }
        assert!(incoming.file.is_some() && incoming.memory.is_empty());
        let (bytes, _permit) = incoming.into_bytes(&budget).await.unwrap();
        assert_eq!(bytes.len(), 500_000);
        assert!(bytes.chunks(50_000).all(|c| c == chunk.as_slice()));
    }

    #[tokio::test]
    async fn past_the_limit_nothing_is_kept() {
        let mut incoming = Incoming::new(&std::env::temp_dir(), 100_000);
        incoming.push(&[b'x'; 90_000]).await;
        incoming.push(&[b'x'; 20_000]).await;
        assert!(incoming.too_large());
        assert!(incoming.memory.is_empty() && incoming.file.is_none());
        assert_eq!(incoming.size(), 110_000);
    }
}
