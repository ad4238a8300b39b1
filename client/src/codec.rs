//! The gRPC codec of every kmemd stub: prost, but decoding each message from one
//! contiguous slice.
//!
//! tonic hands a decoder a `DecodeBuf` over the message's bytes; decoding through the
//! `Buf` trait pays a `BytesMut` bookkeeping step on every field, which for a Batch of
//! a thousand results was the largest single cost after the allocator itself. The
//! message is already contiguous in that buffer, so it is decoded from the slice and
//! the buffer advanced once. Encoding is prost's own.

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// `application/grpc+proto` with slice decoding.
#[derive(Debug, Clone)]
pub struct SliceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        SliceCodec(PhantomData)
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder(PhantomData)
    }
}

/// Decodes a `U` from the contiguous message bytes.
#[derive(Debug)]
pub struct SliceDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let n = buf.remaining();
        let item = if buf.chunk().len() >= n {
            let item = U::decode(&buf.chunk()[..n]);
            buf.advance(n);
            item
        } else {
            U::decode(buf)
        };
        item.map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}
