//! The file sink: one JSON object per line, appended; the file is reopened (created if it was
//! moved away) after [`super::Notifier::reopen`], so logrotate can rename it.

use super::deliver::Deliver;
use super::event::{json_lines, Event};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

pub(super) struct FileSink {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl FileSink {
    pub fn new(path: PathBuf) -> FileSink {
        FileSink { path, file: None }
    }
}

#[async_trait::async_trait]
impl Deliver for FileSink {
    async fn deliver(&mut self, batch: &[Arc<Event>]) -> Result<(), String> {
        let at = self.path.display().to_string();
        if self.file.is_none() {
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| format!("{at}: {e}"))?;
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else {
            return Err(format!("{at}: not open"));
        };
        let written = async {
            f.write_all(&json_lines(batch)).await?;
            f.flush().await
        }
        .await;
        if let Err(e) = written {
            // Reopened on the next attempt (a full disk, a file gone).
            self.file = None;
            return Err(format!("{at}: {e}"));
        }
        Ok(())
    }

    fn reopen(&mut self) {
        self.file = None;
    }
}
