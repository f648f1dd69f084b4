//! Durable storage (in progress, issue 4). So far: the checksummed framing every stored record
//! uses ([`codec`]), so corruption surfaces as a typed error and is never returned as data.
//! The storage traits, the fjall implementation and the simulated disk come next.

pub mod codec;
