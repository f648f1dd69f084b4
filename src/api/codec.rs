//! The protobuf codec of every generated gRPC service and client (build.rs names it in the
//! generated code in place of `tonic_prost::ProstCodec`).
//!
//! It differs from prost's codec in one thing: before a message is encoded, the buffer is
//! grown once to the message's encoded length. Prost's codec lets the buffer double as the
//! message is written, so a large answer (a range of a gigabyte of values) was copied at
//! every doubling and, at the last one, held in two buffers at once. Decoding is prost's.
//!
//! What it does not do: stream. A unary answer is still encoded whole before it is sent.

use prost::Message;
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic_prost::ProstCodec;

/// Prost's codec, with encoding into a buffer sized once (see the module docs).
pub struct SizedCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for SizedCodec<T, U> {
    fn default() -> Self {
        SizedCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for SizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.0.decoder()
    }
}

/// Encodes a message after reserving its whole length.
pub struct SizedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .expect("the buffer was grown to the message's length");
        Ok(())
    }
}
