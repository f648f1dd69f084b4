//! A URL sent as the HTTP/2 `:authority`, made into one h2 accepts.
//!
//! etcdctl 3.4 dials some commands (`endpoint status`, `endpoint hashkv`, `defrag`,
//! `move-leader`, and every `--cluster` one) with the endpoint exactly as the user wrote it, so
//! `--endpoints=http://127.0.0.1:2379` goes out as the `:authority` of each request. etcd's Go
//! server never looks at that value; h2, under tonic, parses it, fails, and resets the stream
//! with PROTOCOL_ERROR, so etcdctl reports the endpoint as down.
//!
//! [`FixAuthority`] wraps an accepted client connection and rewrites such a value before h2
//! reads it: `http://127.0.0.1:2379` becomes `http__@127.0.0.1:2379`, the scheme turned into
//! user info in front of the same host and port. The new value has the old one's length, so
//! the HPACK dynamic table the client's encoder keeps and the one h2's decoder keeps stay the
//! same size: later requests that name the entry by its index need no rewriting, and every
//! other entry keeps its index. Only the value's encoding changes (a Huffman-coded string is
//! written out plain), and with it the frame's length.
//!
//! What it looks at: the client preface, then each frame header. A HEADERS frame that carries
//! its whole header block (END_HEADERS) is read in full and its block walked; everything else
//! (DATA, SETTINGS, a block continued in CONTINUATION frames, HTTP/1) passes through as it
//! came, and so does a block it cannot parse, for h2 to judge. Writes pass through untouched.
//! It recognises `:authority` by HPACK's static index (1) or a literal name, which is how
//! Go's encoder (etcdctl's) and every other one we know name it; a name taken from a dynamic
//! table entry passes unrewritten, as does a value in a block split into CONTINUATION frames.
//! Either way the two tables stay the same size, so only that request fails, as before.
//! On a TLS listener it reads the decrypted stream (it is placed after the handshake).

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The largest frame payload a client may send this server: the listener advertises it as
/// SETTINGS_MAX_FRAME_SIZE (the protocol's default), and a rewritten frame must still fit.
pub const FRAME_PAYLOAD_MAX: usize = 16_384;
/// Bytes asked of the socket per read.
const READ_BYTES: usize = 8 * 1024;
/// HPACK's static table index of `:authority`.
const AUTHORITY_INDEX: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Before the client preface (nothing checked yet).
    Preface,
    /// At a frame boundary.
    FrameStart,
    /// Inside a frame that passes as it is: this many bytes of it are still to come.
    Copy(usize),
    /// Not HTTP/2 opened with the preface (HTTP/1, or garbage for h2 to refuse).
    Passthrough,
}

/// An accepted client connection whose reads have URL-shaped `:authority` values rewritten.
pub struct FixAuthority<T> {
    inner: T,
    /// Bytes read from `inner` and not handed on yet: `buf[..ready]` are checked, the rest
    /// wait for the end of the frame they belong to.
    buf: Vec<u8>,
    /// Where each read from `inner` lands first: zeroed once, so no read pays for clearing
    /// room in `buf`.
    scratch: Box<[u8; READ_BYTES]>,
    ready: usize,
    stage: Stage,
    eof: bool,
}

impl<T> FixAuthority<T> {
    pub fn new(inner: T) -> FixAuthority<T> {
        FixAuthority {
            inner,
            buf: Vec::new(),
            scratch: Box::new([0; READ_BYTES]),
            ready: 0,
            stage: Stage::Preface,
            eof: false,
        }
    }

    /// Moves `ready` as far as the bytes read allow, rewriting header blocks on the way.
    fn check(&mut self) {
        loop {
            let pending = &self.buf[self.ready..];
            match self.stage {
                Stage::Passthrough => {
                    self.ready = self.buf.len();
                    return;
                }
                Stage::Preface => {
                    let n = pending.len().min(PREFACE.len());
                    if pending[..n] != PREFACE[..n] {
                        self.stage = Stage::Passthrough;
                    } else if n < PREFACE.len() {
                        return;
                    } else {
                        self.ready += n;
                        self.stage = Stage::FrameStart;
                    }
                }
                Stage::Copy(left) => {
                    let n = left.min(pending.len());
                    self.ready += n;
                    if n < left {
                        self.stage = Stage::Copy(left - n);
                        return;
                    }
                    self.stage = Stage::FrameStart;
                }
                Stage::FrameStart => {
                    let Some(header) = pending.get(..FRAME_HEADER_BYTES) else {
                        return;
                    };
                    let len = usize::from(header[0]) << 16
                        | usize::from(header[1]) << 8
                        | usize::from(header[2]);
                    let whole_block = header[3] == FRAME_HEADERS
                        && header[4] & FLAG_END_HEADERS != 0
                        && len <= FRAME_PAYLOAD_MAX;
                    if !whole_block {
                        self.ready += FRAME_HEADER_BYTES;
                        self.stage = Stage::Copy(len);
                        continue;
                    }
                    let frame = self.ready..self.ready + FRAME_HEADER_BYTES + len;
                    if frame.end > self.buf.len() {
                        return;
                    }
                    match rewrite_headers_frame(&self.buf[frame.clone()]) {
                        Some(new) => {
                            self.ready += new.len();
                            self.buf.splice(frame, new);
                        }
                        None => self.ready = frame.end,
                    }
                }
            }
        }
    }

    /// Hands on up to `out.remaining()` checked bytes.
    fn hand_on(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.ready.min(out.remaining());
        out.put_slice(&self.buf[..n]);
        self.buf.drain(..n);
        self.ready -= n;
        // A large header block grew the buffer: give the room back once it is handed on.
        if self.buf.is_empty() && self.buf.capacity() > 2 * READ_BYTES {
            self.buf = Vec::new();
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FixAuthority<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.ready > 0 {
                this.hand_on(out);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // What is left is a frame cut short: h2 gets it as it is, then the end.
                this.ready = this.buf.len();
                if this.ready > 0 {
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            // Bytes that pass as they are go straight to the caller.
            if this.buf.is_empty() {
                let direct = match this.stage {
                    Stage::Passthrough => Some(out.remaining()),
                    Stage::Copy(left) => Some(left.min(out.remaining())),
                    _ => None,
                };
                if let Some(limit) = direct {
                    let mut part = ReadBuf::new(out.initialize_unfilled_to(limit));
                    let r = Pin::new(&mut this.inner).poll_read(cx, &mut part);
                    let n = part.filled().len();
                    if let Poll::Ready(Ok(())) = r {
                        out.advance(n);
                        if let Stage::Copy(left) = this.stage {
                            this.stage = if n == left {
                                Stage::FrameStart
                            } else {
                                Stage::Copy(left - n)
                            };
                        }
                    }
                    return r;
                }
            }
            let mut read = ReadBuf::new(&mut this.scratch[..]);
            let r = Pin::new(&mut this.inner).poll_read(cx, &mut read);
            let n = read.filled().len();
            this.buf.extend_from_slice(&this.scratch[..n]);
            match r {
                Poll::Ready(Ok(())) if n == 0 => this.eof = true,
                Poll::Ready(Ok(())) => this.check(),
                other => return other,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FixAuthority<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for FixAuthority<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The HEADERS frame `frame` (header included) with its block rewritten, or `None` when
/// nothing in it needs rewriting or it cannot be parsed.
fn rewrite_headers_frame(frame: &[u8]) -> Option<Vec<u8>> {
    let flags = frame[4];
    let payload = &frame[FRAME_HEADER_BYTES..];
    let (mut start, mut padding) = (0, 0);
    if flags & FLAG_PADDED != 0 {
        padding = usize::from(*payload.first()?);
        start = 1;
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    let end = payload.len().checked_sub(padding)?;
    let block = payload.get(start..end)?;
    let new_block = rewrite_block(block)?;
    let len = payload.len() - block.len() + new_block.len();
    if len > FRAME_PAYLOAD_MAX {
        return None;
    }
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + len);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&frame[3..FRAME_HEADER_BYTES]);
    out.extend_from_slice(&payload[..start]);
    out.extend_from_slice(&new_block);
    out.extend_from_slice(&payload[end..]);
    Some(out)
}

/// The header block `block` with every URL-shaped `:authority` value rewritten, or `None`
/// when there is none or the block does not parse (RFC 7541 §6).
fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    let mut at = 0;
    while let Some(&first) = block.get(at) {
        if first & 0x80 != 0 {
            // An indexed field: nothing literal to look at.
            at = integer(block, at, 7)?.1;
            continue;
        }
        if first & 0xe0 == 0x20 {
            // A dynamic table size update.
            at = integer(block, at, 5)?.1;
            continue;
        }
        // A literal field: with incremental indexing (01), or without / never indexed (000).
        let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
        let (index, next) = integer(block, at, prefix)?;
        at = next;
        let is_authority = if index == 0 {
            let (name, next) = string(block, at)?;
            at = next;
            decode_string(block, name)? == b":authority"
        } else {
            index == AUTHORITY_INDEX
        };
        let (value, next) = string(block, at)?;
        if is_authority && let Some(fixed) = fix_authority(&decode_string(block, value)?) {
            let mut encoded = Vec::with_capacity(fixed.len() + 2);
            push_integer(&mut encoded, 0, 7, fixed.len());
            encoded.extend_from_slice(&fixed);
            edits.push((at..next, encoded));
        }
        at = next;
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(block.len() + 16);
    let mut copied = 0;
    for (range, encoded) in edits {
        out.extend_from_slice(&block[copied..range.start]);
        out.extend_from_slice(&encoded);
        copied = range.end;
    }
    out.extend_from_slice(&block[copied..]);
    Some(out)
}

/// An integer with an `prefix`-bit prefix starting at `block[at]` (RFC 7541 §5.1), and the
/// position after it.
fn integer(block: &[u8], at: usize, prefix: u32) -> Option<(u64, usize)> {
    let max = (1u64 << prefix) - 1;
    let mut value = u64::from(*block.get(at)?) & max;
    let mut at = at + 1;
    if value < max {
        return Some((value, at));
    }
    let mut shift = 0;
    loop {
        let b = *block.get(at)?;
        at += 1;
        value += u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value, at));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Appends `value` as an integer with a `prefix`-bit prefix, `high` holding the first byte's
/// other bits.
fn push_integer(out: &mut Vec<u8>, high: u8, prefix: u32, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A string literal at `block[at]`: whether it is Huffman-coded and where its octets are,
/// and the position after it (RFC 7541 §5.2).
fn string(block: &[u8], at: usize) -> Option<((bool, Range<usize>), usize)> {
    let huffman = *block.get(at)? & 0x80 != 0;
    let (len, start) = integer(block, at, 7)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= block.len()).then_some(((huffman, start..end), end))
}

fn decode_string(block: &[u8], (huffman, range): (bool, Range<usize>)) -> Option<Vec<u8>> {
    let octets = &block[range];
    if huffman {
        huffman_decode(octets)
    } else {
        Some(octets.to_vec())
    }
}

/// `scheme://host[:port][/...]` as `scheme__@host[:port]`, of the same length; `None` for
/// anything else, or when the result would not be a valid authority either.
fn fix_authority(value: &[u8]) -> Option<Vec<u8>> {
    let sep = value.windows(3).position(|w| w == b"://")?;
    let rest = &value[sep + 3..];
    let host_end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let host = &rest[..host_end];
    if host.is_empty() || host.contains(&b'@') {
        return None;
    }
    let user_len = value.len() - host.len() - 1;
    let mut fixed: Vec<u8> = value[..sep]
        .iter()
        .copied()
        .filter(u8::is_ascii_alphanumeric)
        .take(user_len)
        .collect();
    fixed.resize(user_len, b'_');
    fixed.push(b'@');
    fixed.extend_from_slice(host);
    tonic::codegen::http::uri::Authority::try_from(fixed.as_slice()).ok()?;
    Some(fixed)
}

/// The length in bits of each octet's code in HPACK's Huffman code (RFC 7541 Appendix B),
/// octets 0 to 255, then EOS. The code is canonical: the codes of one length are consecutive
/// and in octet order, and follow the shorter ones', so the lengths determine every code.
/// (Taken from an encoder: the length of the code of octet `b` is the byte length of the
/// Huffman coding of eight `b`s.)
const CODE_BITS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];
const CODE_BITS_MAX: usize = 30;
const EOS: u16 = 256;

/// The canonical code as a decoder uses it: for each length, its first code, how many codes
/// it has, and where its symbols start in `symbols` (sorted by length, then octet).
struct Canonical {
    first: [u32; CODE_BITS_MAX + 1],
    count: [u32; CODE_BITS_MAX + 1],
    offset: [u32; CODE_BITS_MAX + 1],
    symbols: [u16; 257],
}

const HUFFMAN: Canonical = Canonical::build();

impl Canonical {
    const fn build() -> Canonical {
        let mut count = [0u32; CODE_BITS_MAX + 1];
        let mut s = 0;
        while s < CODE_BITS.len() {
            count[CODE_BITS[s] as usize] += 1;
            s += 1;
        }
        let mut first = [0u32; CODE_BITS_MAX + 1];
        let mut offset = [0u32; CODE_BITS_MAX + 1];
        let (mut code, mut index) = (0u32, 0u32);
        let mut len = 1;
        while len <= CODE_BITS_MAX {
            first[len] = code;
            offset[len] = index;
            code = (code + count[len]) << 1;
            index += count[len];
            len += 1;
        }
        let mut symbols = [0u16; 257];
        let mut next = offset;
        let mut s = 0;
        while s < CODE_BITS.len() {
            let len = CODE_BITS[s] as usize;
            symbols[next[len] as usize] = s as u16;
            next[len] += 1;
            s += 1;
        }
        Canonical {
            first,
            count,
            offset,
            symbols,
        }
    }
}

/// Decodes a Huffman-coded string (RFC 7541 §5.2); `None` when it is not a valid coding (EOS
/// inside, or padding that is not the start of EOS).
fn huffman_decode(octets: &[u8]) -> Option<Vec<u8>> {
    let h = &HUFFMAN;
    let mut out = Vec::with_capacity(octets.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in octets {
        for bit in (0..8).rev() {
            code = code << 1 | u32::from(byte >> bit & 1);
            len += 1;
            let rank = code.wrapping_sub(h.first[len]);
            if rank < h.count[len] {
                let symbol = h.symbols[(h.offset[len] + rank) as usize];
                if symbol == EOS {
                    return None;
                }
                out.push(symbol as u8);
                (code, len) = (0, 0);
            } else if len == CODE_BITS_MAX {
                return None;
            }
        }
    }
    (len < 8 && code == (1 << len) - 1).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::AsyncReadExt;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Go's `hpack.AppendHuffmanString` (golang.org/x/net/http2/hpack, the encoder etcdctl
    /// uses) of the 256 octets 0 to 255 in order: every code appears once.
    const EVERY_OCTET: &str = "ffc7fffd8fffffe2fffffe3fffffe4fffffe5fffffe6fffffe7fffffe8ffffeafffffff3fffffa7fffffabffffffdfffffebfffffecfffffedfffffeefffffefffffff0ffffff1ffffff2fffffffbfffffcffffffd3fffffd7fffffdbfffffdffffffe3fffffe7fffffebfffffed4fe3f9ffaffcabf1febfafefe7fdfd2cbb00089969b71d79fb9f7fff20ffbff3ff50ddbd7f061c58f265cd9f469d5af66dddbf871e5f9cff7ff7fffc3ff9ffe45fff4719242cb34e6e9d68a6a3d7dac426defe3cfaf7fffbfe7ffbffdffffffcfffe6ffff4bfff9ffffa3fffd3ffff53fffd5ffffb3fffeb7fffdaffffb7ffff73fffeeffffdeffffebffffbfffffd9ffffdbfffebffffe0ffffeeffffc3ffff8bffff1ffffe4fffee7fffb1ffff97fffd9ffffcdffff9fffffbffffdafffeeffff4ffffb7fffee7fffe8ffffd3fffdeffffd5fffeeffffbdffffe1fffdfffff7fffff5ffffecffff07fff87fffe0ffff17fffedffff87ffff77fffeffffeaffff8bfffe3ffff93ffff87fffcbffff37ffff1fffff83ffffe1fffebfffe3ffff3fffff2ffffa3ffffd9fffff17ffffc7fffff27ffffdefffffbffffff2fffff8fffffb7fff97fff8fffffe6fffffc1fffff87ffffe7fffffc5ffffe5fffe4ffff2fffffd1fffff4ffffffefffffe3fffffc9fffff97fffb3ffffcffffb7fffcdffff4ffff9ffffd1ffffcffffeaffffafffffddffffeffffff4fffff5fffffabffffa7ffffd7fffff9bffffecfffffb7fffff3fffffe8fffffd3fffffabfffff5fffffff7ffffecfffffdbfffffbbfffff7ffffff0fffffbbf";

    /// Go's encoder writing `:authority: http://127.0.0.1:2379` twice: a literal with
    /// incremental indexing (static name 1, Huffman-coded value), then the new table entry
    /// by index (62).
    const GO_AUTHORITY_TWICE: &str = "418f9d29aee30c044eae05c0b86e09975fbe";

    #[test]
    fn huffman_decodes_every_octet_as_go_encodes_it() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&hex(EVERY_OCTET)), Some(all));
        // RFC 7541 C.4.1.
        assert_eq!(
            huffman_decode(&hex("f1e3c2e5f23a6ba0ab90f4ff")).as_deref(),
            Some(&b"www.example.com"[..])
        );
    }

    #[test]
    fn huffman_refuses_bad_padding_and_eos() {
        // "0" is 00000: three bits of zero padding are not the start of EOS.
        assert_eq!(huffman_decode(&[0b0000_0000]), None);
        assert_eq!(huffman_decode(&[0b0000_0111]).as_deref(), Some(&b"0"[..]));
        // A whole byte of padding is too much.
        assert_eq!(huffman_decode(&[0b0000_0111, 0xff]), None);
        // EOS itself (30 ones) inside a string.
        assert_eq!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn go_block_gets_the_same_length_authority_and_keeps_the_index() {
        let block = hex(GO_AUTHORITY_TWICE);
        let fixed = rewrite_block(&block).expect("rewritten");
        let mut want = vec![0x41, 21];
        want.extend_from_slice(b"http__@127.0.0.1:2379");
        want.push(0xbe);
        assert_eq!(fixed, want);
        // Nothing to do the second time.
        assert_eq!(rewrite_block(&fixed), None);
    }

    #[test]
    fn only_url_shaped_authorities_change() {
        assert_eq!(fix_authority(b"127.0.0.1:2379"), None);
        assert_eq!(
            fix_authority(b"https://[::1]:2379/x").as_deref(),
            Some(&b"https____@[::1]:2379"[..])
        );
        assert_eq!(fix_authority(b"unix:///tmp/sock"), None);
        assert_eq!(
            fix_authority(b"http://a:b@host:1"),
            None,
            "two user infos do not make an authority"
        );
        // A literal `:authority` name, never indexed, plain value.
        let mut block = vec![0x10, 10];
        block.extend_from_slice(b":authority");
        block.push(9);
        block.extend_from_slice(b"h://x:123");
        let mut want = block.clone();
        want[13..].copy_from_slice(b"h__@x:123");
        assert_eq!(rewrite_block(&block), Some(want));
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A client's opening: preface, SETTINGS, a HEADERS frame with a URL authority (padded,
    /// with priority), its DATA, then a HEADERS frame naming the table entry.
    fn client_bytes() -> (Vec<u8>, Vec<u8>) {
        let block = hex(GO_AUTHORITY_TWICE);
        let mut padded = vec![3, 0, 0, 0, 0, 16];
        padded.extend_from_slice(&block[..block.len() - 1]);
        padded.extend_from_slice(&[0, 0, 0]);
        let flags = FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY;
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        sent.extend(frame(FRAME_HEADERS, flags, 1, &padded));
        sent.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 2, 8, 1]));
        sent.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &[0xbe]));
        let mut fixed_block = vec![0x41, 21];
        fixed_block.extend_from_slice(b"http__@127.0.0.1:2379");
        let mut fixed_padded = vec![3, 0, 0, 0, 0, 16];
        fixed_padded.extend_from_slice(&fixed_block);
        fixed_padded.extend_from_slice(&[0, 0, 0]);
        let mut want = PREFACE.to_vec();
        want.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        want.extend(frame(FRAME_HEADERS, flags, 1, &fixed_padded));
        want.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 2, 8, 1]));
        want.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &[0xbe]));
        (sent, want)
    }

    /// What a reader of `FixAuthority` gets when the peer writes `sent` in `chunks`-sized
    /// writes and the reader reads `read_size` bytes at a time.
    fn through(sent: &[u8], chunk: usize, read_size: usize) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut peer, conn) = tokio::io::duplex(64);
            let sent = sent.to_vec();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for part in sent.chunks(chunk) {
                    peer.write_all(part).await.unwrap();
                }
            });
            let mut fixed = FixAuthority::new(conn);
            let mut got = Vec::new();
            let mut buf = vec![0; read_size];
            loop {
                let n = fixed.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            writer.await.unwrap();
            got
        })
    }

    #[test]
    fn a_connection_reads_rewritten_whatever_the_chunks() {
        let (sent, want) = client_bytes();
        for (chunk, read_size) in [(1, 1), (1, 4096), (7, 3), (4096, 1), (4096, 4096)] {
            assert_eq!(
                through(&sent, chunk, read_size),
                want,
                "{chunk}/{read_size}"
            );
        }
    }

    #[test]
    fn http1_and_cut_frames_pass_as_they_are() {
        let http1 = b"GET /metrics HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
        assert_eq!(through(&http1, 5, 16), http1);
        let (sent, _) = client_bytes();
        let cut = &sent[..PREFACE.len() + 15 + 20];
        assert_eq!(through(cut, 3, 5), cut);
    }

    /// A literal field as a client encodes it: `kind` 0x40 (incremental indexing), 0x00
    /// (without indexing) or 0x10 (never indexed), a static name index, a plain value.
    fn literal(kind: u8, index: usize, value: &str) -> Vec<u8> {
        let mut v = Vec::new();
        push_integer(&mut v, kind, if kind == 0x40 { 6 } else { 4 }, index);
        push_integer(&mut v, 0, 7, value.len());
        v.extend_from_slice(value.as_bytes());
        v
    }

    /// A header field as a client sends it, and as h2 must read it.
    fn arb_field() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        let kind = || proptest::sample::select(vec![0x40u8, 0x00, 0x10]);
        prop_oneof![
            (1usize..200).prop_map(|i| {
                let mut v = Vec::new();
                push_integer(&mut v, 0x80, 7, i);
                (v.clone(), v)
            }),
            (kind(), 2usize..62, "[ -~]{0,24}").prop_map(|(k, i, value)| {
                let v = literal(k, i, &value);
                (v.clone(), v)
            }),
            (kind(), 1u16.., any::<bool>()).prop_map(|(k, port, url)| {
                let host = format!("127.0.0.1:{port}");
                if url {
                    let sent = literal(k, 1, &format!("http://{host}"));
                    (sent, literal(k, 1, &format!("http__@{host}")))
                } else {
                    let v = literal(k, 1, &host);
                    (v.clone(), v)
                }
            }),
        ]
    }

    /// Frames as a client sends them, and as h2 must read them: other frame types pass as
    /// they are, a whole header block has its URL authorities rewritten, and a block split
    /// into a CONTINUATION frame passes as it is.
    fn arb_frames() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        let other = (
            proptest::sample::select(vec![0x0u8, 0x3, 0x4, 0x6, 0x8, 0x42]),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(kind, flags, payload)| {
                let f = frame(kind, flags, 1, &payload);
                (f.clone(), f)
            });
        let headers = (proptest::collection::vec(arb_field(), 0..6), any::<bool>()).prop_map(
            |(fields, split)| {
                let sent: Vec<u8> = fields.iter().flat_map(|(s, _)| s.clone()).collect();
                let want: Vec<u8> = fields.iter().flat_map(|(_, w)| w.clone()).collect();
                if split && sent.len() >= 2 {
                    let (a, b) = sent.split_at(sent.len() / 2);
                    let mut f = frame(FRAME_HEADERS, 0, 1, a);
                    f.extend(frame(0x9, FLAG_END_HEADERS, 1, b));
                    (f.clone(), f)
                } else {
                    (
                        frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &sent),
                        frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &want),
                    )
                }
            },
        );
        proptest::collection::vec(prop_oneof![other, headers], 0..8).prop_map(|frames| {
            let mut sent = PREFACE.to_vec();
            let mut want = PREFACE.to_vec();
            for (s, w) in frames {
                sent.extend(s);
                want.extend(w);
            }
            (sent, want)
        })
    }

    proptest! {
        /// Frames come out as the model says, however the bytes are cut on the way in and out.
        #[test]
        fn frames_read_as_the_model_says(
            (sent, want) in arb_frames(),
            chunk in 1usize..64,
            read_size in 1usize..64,
        ) {
            prop_assert_eq!(through(&sent, chunk, read_size), want);
        }

        /// Any bytes after the preface come out the same whatever the chunks, and reading
        /// never fails.
        #[test]
        fn arbitrary_frames_never_break_the_stream(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..50,
            read_size in 1usize..50,
        ) {
            let mut sent = PREFACE.to_vec();
            sent.extend_from_slice(&body);
            let got = through(&sent, chunk, read_size);
            prop_assert_eq!(got, through(&sent, sent.len(), 4096));
        }
    }
}
