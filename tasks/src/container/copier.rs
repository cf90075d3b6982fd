//! How `lifeos watch` copies one service's batches into its container: through the
//! container's resident receiver (a few ms a batch) while one runs, else through the archive
//! endpoint (deletes by exec, then `PUT /containers/{id}/archive`: ~75 ms on Docker 20.10).
//! The archive is the fallback: an image without the receiver's tools, a receiver that will
//! not start, or one that stops again right after it was re-opened.

use lifeos_engine::TaskError;

use super::frame::Frame;
use super::receiver::{Ack, OpenError, Receiver};
use super::sync::{self, Changes};

/// What the receiver needs in the image (receiver.sh checks each), for the fallback's message.
const NEEDS: &str = "sh, tar, dd (with iflag=fullblock), xargs, rm and chown, as busybox has them";

/// The way a batch went in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Via {
    Stream,
    Archive,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Stream => "stream",
            Via::Archive => "archive",
        }
    }
}

/// What [`Copier::apply`] did besides copying.
#[derive(Debug, Clone)]
pub struct Copied {
    pub via: Via,
    /// Why this container gets archives from now on; set once per service.
    pub fallback: Option<String>,
    /// The receiver's error for this batch, which then went through the archive endpoint.
    pub stream_error: Option<String>,
    /// The receiver had stopped (container restarted, engine reconnected) and was re-opened.
    pub reopened: bool,
}

#[derive(Default)]
pub struct Copier {
    rx: Option<Receiver>,
    /// The container that gets archives only, and why.
    off: Option<(String, String)>,
    /// The fallback was said (once per service, whatever its containers).
    said: bool,
}

impl Copier {
    /// Start the receiver for this container unless one runs there: the first batch then
    /// need not wait for it. Some(why) when the container gets archives (said once).
    pub async fn open(&mut self, d: &bollard::Docker, id: &str) -> Option<String> {
        if self.rx.as_ref().is_some_and(|r| r.container() == id) {
            return None;
        }
        self.close().await;
        if self.off.as_ref().is_some_and(|(c, _)| c == id) {
            return None;
        }
        match Receiver::open(d, id).await {
            Ok(r) => {
                self.rx = Some(r);
                None
            }
            Err(OpenError::Unsupported(why)) => self.turn_off(
                id,
                format!("the container cannot run lifeos's receiver ({why}); it needs {NEEDS}"),
            ),
            // Not the container's doing: the next batch tries again.
            Err(OpenError::Engine(_)) => None,
        }
    }

    /// The receiver is gone (its container restarted): drop it without waiting for it.
    pub fn forget(&mut self) {
        self.rx = None;
    }

    /// Stop the receiver (lifeos exits, or its container is gone).
    pub async fn close(&mut self) {
        if let Some(r) = self.rx.take() {
            r.close().await;
        }
    }

    fn turn_off(&mut self, id: &str, why: String) -> Option<String> {
        self.off = Some((id.to_string(), why.clone()));
        self.rx = None;
        (!std::mem::replace(&mut self.said, true)).then_some(why)
    }

    /// Apply one batch to container `id`, every copied entry owned by `owner`.
    pub async fn apply(
        &mut self,
        d: &bollard::Docker,
        id: &str,
        owner: (u64, u64),
        changes: &Changes,
    ) -> (Result<(), TaskError>, Copied) {
        let mut copied = Copied {
            via: Via::Archive,
            fallback: None,
            stream_error: None,
            reopened: false,
        };
        let packed = match sync::pack(owner, changes).await {
            Ok(p) => p,
            Err(e) => return (Err(e), copied),
        };
        let Some(frame) = Frame::new(owner, changes, packed) else {
            return (sync::apply(d, id, owner, changes).await, copied);
        };
        if self.off.as_ref().is_none_or(|(c, _)| c != id) {
            // A receiver that stopped is re-opened once; stopping again makes it archives.
            for attempt in 0..2 {
                if let Some(why) = self.open(d, id).await {
                    copied.fallback = Some(why);
                }
                let Some(rx) = self.rx.as_mut() else { break };
                copied.reopened = attempt == 1;
                match rx.send(&frame).await {
                    Ok(Ack::Done) => {
                        copied.via = Via::Stream;
                        return (Ok(()), copied);
                    }
                    // The endpoint's own way decides this batch; the receiver has exited
                    // (the next batch starts another).
                    Ok(Ack::Failed(e)) => {
                        self.rx = None;
                        copied.stream_error = Some(e);
                        break;
                    }
                    Err(why) => {
                        self.rx = None;
                        if attempt == 1 {
                            let why = format!("its sync receiver stopped again: {why}");
                            copied.fallback = self.turn_off(id, why).or(copied.fallback);
                        }
                    }
                }
            }
        }
        let result = match sync::delete(d, id, &changes.deletes).await {
            Ok(()) if changes.dirs.is_empty() && changes.files.is_empty() => Ok(()),
            Ok(()) => sync::upload(d, id, frame.into_tar()).await,
            Err(e) => Err(e),
        };
        (result, copied)
    }
}
