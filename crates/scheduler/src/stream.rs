//! Reading the master's RecordIO event stream from an HTTP response body.

use crate::error::Error;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use meseta_api::recordio::Decoder;
use meseta_api::scheduler::Event;

/// Events from one subscription response.
pub struct EventReader {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: Decoder,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> EventReader {
        EventReader {
            body: response.bytes_stream().boxed(),
            decoder: Decoder::new(),
        }
    }

    /// The next event; `None` when the master closed the stream. Records of event types
    /// we do not know are skipped.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            match self.decoder.next_record() {
                Err(e) => return Some(Err(Error::Stream(e.to_string()))),
                Ok(Some(record)) => match decode(&record) {
                    Ok(Some(event)) => return Some(Ok(event)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                },
                Ok(None) => {}
            }
            match self.body.next().await? {
                Ok(chunk) => self.decoder.feed(&chunk),
                Err(e) => return Some(Err(Error::Stream(e.to_string()))),
            }
        }
    }
}

fn decode(record: &[u8]) -> Result<Option<Event>, Error> {
    let value: serde_json::Value = serde_json::from_slice(record)
        .map_err(|e| Error::Stream(format!("an event is not JSON: {e}")))?;
    match serde_json::from_value::<Event>(value) {
        Ok(event) => Ok(Some(event)),
        Err(e) => {
            tracing::warn!("ignoring an event we cannot read: {e}");
            Ok(None)
        }
    }
}
