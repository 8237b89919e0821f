//! Streaming response bodies: RecordIO records from a channel, with a callback when the
//! client goes away (the body is dropped).

use crate::service::RecordReceiver;
use axum::body::Body;
use bytes::Bytes;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A record stream that runs `on_drop` once the response body is dropped.
pub struct GuardedStream {
    records: RecordReceiver,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl GuardedStream {
    pub fn new(records: RecordReceiver, on_drop: impl FnOnce() + Send + 'static) -> Self {
        GuardedStream {
            records,
            on_drop: Some(Box::new(on_drop)),
        }
    }

    pub fn into_body(self) -> Body {
        Body::from_stream(self)
    }
}

impl futures::Stream for GuardedStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.records.poll_recv(cx).map(|r| r.map(Ok))
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}
