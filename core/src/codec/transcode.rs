//! TODO: being written.

use crate::codec::error::TranscodeError;
use crate::codec::Serializer;
use crate::message::Payload;

/// Converts `payload` to `to`.
pub fn transcode(payload: &Payload, to: Serializer) -> Result<Payload, TranscodeError> {
    let _ = to;
    Ok(payload.clone())
}
