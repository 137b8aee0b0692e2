//! The protobuf codec of every generated service and client: tonic-prost's,
//! with small starting buffers.
//!
//! tonic's default is an 8 KiB encode and an 8 KiB decode buffer per stream,
//! which dominates a member's memory on the server (BENCHMARKS.md). Beat
//! messages are tens of bytes, so the buffers start at 256 bytes; they grow
//! on demand for a large message (a ListMembers response, say), exactly as
//! before.
//!
//! It also reports undecodable bytes with the right code. A server decodes
//! requests, whose bytes are the client's: INVALID_ARGUMENT (SPEC §2). A
//! client decodes responses, whose bytes are the server's: INTERNAL, as
//! gRPC's status code table says (tonic-prost answers INTERNAL for both).
//! Which side a message is on is written down once per type, below.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;

use crate::pb::health::v1 as health;
use crate::pb::heartbeat::v1 as hb;

/// Who is at fault when a message does not decode: the code to answer.
pub trait DecodeFault {
    /// `InvalidArgument` for requests, `Internal` for responses.
    const CODE: Code;
}

macro_rules! fault {
    ($code:ident: $($t:ty),+) => {
        $(impl DecodeFault for $t {
            const CODE: Code = Code::$code;
        })+
    };
}

fault!(InvalidArgument: hb::BeatRequest, hb::ListMembersRequest, hb::WatchMembersRequest,
    health::HealthCheckRequest, health::HealthListRequest);
fault!(Internal: hb::BeatResponse, hb::ListMembersResponse, hb::MemberEvent,
    health::HealthCheckResponse, health::HealthListResponse);

/// Starting size of the encode and decode buffers.
pub const BUFFER_SIZE: usize = 256;
/// Encoded bytes after which a streaming encoder yields (tonic's default).
const YIELD_THRESHOLD: usize = 8 * 1024;

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
    U: Message + Default + DecodeFault + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = FaultDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        FaultDecoder(PhantomData)
    }
}

/// Decodes `U`, answering [`DecodeFault::CODE`] for bytes that do not.
#[derive(Debug)]
pub struct FaultDecoder<U>(PhantomData<U>);

impl<U: Message + Default + DecodeFault> Decoder for FaultDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            let what = std::any::type_name::<U>()
                .rsplit("::")
                .next()
                .unwrap_or("message");
            Status::new(U::CODE, format!("bytes do not decode as {what}: {e}"))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        settings()
    }
}
