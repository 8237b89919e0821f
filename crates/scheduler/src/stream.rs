//! Reading the master's RecordIO event stream from an HTTP response body.

use crate::error::Error;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use meseta_api::recordio::{Typed, TypedDecoder};
use meseta_api::scheduler::Event;

/// Events from one subscription response.
pub struct EventReader {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: TypedDecoder<Event>,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> EventReader {
        EventReader {
            body: response.bytes_stream().boxed(),
            decoder: TypedDecoder::new(),
        }
    }

    /// The next event; `None` when the master closed the stream. Records of event types
    /// we do not know are skipped.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            match self.decoder.next_record() {
                Err(e) => return Some(Err(Error::Stream(e.to_string()))),
                Ok(Some(Typed::Value(event))) => return Some(Ok(event)),
                Ok(Some(Typed::Unknown(why))) => {
                    tracing::warn!("ignoring an event we cannot read: {why}");
                    continue;
                }
                Ok(None) => {}
            }
            match self.body.next().await? {
                Ok(chunk) => self.decoder.feed(&chunk),
                Err(e) => return Some(Err(Error::Stream(e.to_string()))),
            }
        }
    }
}
