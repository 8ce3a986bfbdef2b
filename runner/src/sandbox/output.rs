//! Captured stdout and stderr: a byte cap that truncates, never fails.
//!
//! A plugin's output goes into a [`CappedPipe`]. Past the cap the bytes are
//! counted and dropped; the plugin's writes keep succeeding, so log spam
//! cannot kill a step (wasmtime's own `MemoryOutputPipe` traps the guest when
//! full). Nothing a plugin prints ever reaches the host's terminal.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// An in-memory sink keeping the first `cap` bytes written to it.
#[derive(Debug, Clone)]
pub struct CappedPipe {
    inner: Arc<Mutex<Captured>>,
    cap: usize,
}

/// What a [`CappedPipe`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes written, at most the cap.
    pub bytes: Vec<u8>,
    /// How many bytes were dropped after the cap was reached.
    pub dropped: u64,
}

impl CappedPipe {
    /// A pipe keeping at most `cap` bytes.
    pub fn new(cap: u64) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        CappedPipe { inner: Arc::new(Mutex::new(Captured::default())), cap }
    }

    /// What was captured so far.
    pub fn contents(&self) -> Captured {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // A poisoned lock only means another writer panicked mid-append; the
        // bytes are still a valid prefix, so keep using them.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, buf: &[u8]) {
        let mut captured = self.lock();
        let room = self.cap.saturating_sub(captured.bytes.len());
        let kept = room.min(buf.len());
        captured.bytes.extend_from_slice(&buf[..kept]);
        captured.dropped += (buf.len() - kept) as u64;
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CappedPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_past_the_cap_are_counted_and_dropped() {
        let pipe = CappedPipe::new(4);
        pipe.append(b"abc");
        pipe.append(b"defg");
        let captured = pipe.contents();
        assert_eq!(captured.bytes, b"abcd");
        assert_eq!(captured.dropped, 3);
    }
}
