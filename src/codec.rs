//! The protobuf codec of every generated service and client: tonic-prost's,
//! with small starting buffers.
//!
//! tonic's default is an 8 KiB encode and an 8 KiB decode buffer per stream,
//! which dominates a member's memory on the server (BENCHMARKS.md). Beat
//! messages are tens of bytes, so the buffers start at 256 bytes; they grow
//! on demand for a large message (a ListMembers response, say), exactly as
//! before.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Starting size of the encode and decode buffers.
pub const BUFFER_SIZE: usize = 256;
/// Encoded bytes after which a streaming encoder yields (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`tonic_prost::ProstCodec`] with [`BUFFER_SIZE`] buffers.
#[derive(Debug, Clone, Copy)]
pub struct SmallCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
