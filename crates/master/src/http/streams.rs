//! Streaming response bodies: RecordIO records from a channel, with a callback when the
//! client goes away (the body is dropped). Records already waiting go out together, as
//! one chunk: a busy framework's stream otherwise cost a chunk, and often a write, per
//! event.

use crate::service::RecordReceiver;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The most bytes of waiting records joined into one chunk.
const MAX_CHUNK: usize = 256 * 1024;

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
        let Some(first) = std::task::ready!(self.records.poll_recv(cx)) else {
            return Poll::Ready(None);
        };
        let mut joined: Option<BytesMut> = None;
        while joined.as_ref().map_or(first.len(), BytesMut::len) < MAX_CHUNK {
            let Ok(next) = self.records.try_recv() else {
                break;
            };
            joined
                .get_or_insert_with(|| BytesMut::from(&first[..]))
                .extend_from_slice(&next);
        }
        Poll::Ready(Some(Ok(joined.map_or(first, BytesMut::freeze))))
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn waiting_records_go_out_as_one_chunk_in_order_and_the_end_is_seen() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let mut stream = GuardedStream::new(rx, move || flag.store(true, Ordering::SeqCst));
        for record in ["1\na", "1\nb", "1\nc"] {
            tx.send(Bytes::from(record)).unwrap();
        }
        assert_eq!(stream.next().await.unwrap().unwrap(), "1\na1\nb1\nc");
        tx.send(Bytes::from("1\nd")).unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), "1\nd");
        drop(tx);
        assert!(stream.next().await.is_none());
        drop(stream);
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_chunk_stops_growing_past_its_limit() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut stream = GuardedStream::new(rx, || {});
        let record = Bytes::from(vec![b'x'; MAX_CHUNK / 2 + 1]);
        for _ in 0..3 {
            tx.send(record.clone()).unwrap();
        }
        assert_eq!(
            stream.next().await.unwrap().unwrap().len(),
            2 * record.len()
        );
        assert_eq!(stream.next().await.unwrap().unwrap().len(), record.len());
    }
}
