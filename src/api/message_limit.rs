//! grpc-go's answer to a request message above the server's limit, around a generated
//! service: etcd (grpc-go) refuses it with `ResourceExhausted` and `grpc: received message
//! larger than max (N vs. M)`, where tonic says `OutOfRange` in words of its own. Clients
//! (and the JSON gateway, which maps the code to HTTP 429) see etcd's answer.
//!
//! It owns only that rewrite of the answer's status; the limit itself is the service's
//! (`max_decoding_message_size`), and requests below it but above `--max-request-bytes` are
//! refused by the member with `etcdserver: request is too large`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tower_service::Service;

/// The words tonic's decoder uses, with the two sizes in between.
const TONIC_PREFIX: &str = "Error, decoded message length too large: found ";
const TONIC_MIDDLE: &str = " bytes, the limit is: ";
const TONIC_SUFFIX: &str = " bytes";

/// A generated gRPC service whose message-size refusals read as grpc-go's.
#[derive(Clone)]
pub struct MessageLimit<S>(pub S);

impl<S: NamedService> NamedService for MessageLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for MessageLimit<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let answer = self.0.call(req);
        Box::pin(async move {
            let mut r = answer.await?;
            // A unary call refused while its request is decoded answers with the status in
            // its headers (a trailers-only response).
            if let Some(status) =
                Status::from_header_map(r.headers()).and_then(|s| grpc_go_status(&s))
                && status.add_header(r.headers_mut()).is_err()
            {
                tracing::warn!("could not rewrite a message-size status");
            }
            Ok(r)
        })
    }
}

/// grpc-go's status for tonic's message-size refusal `s`; None for any other status.
pub fn grpc_go_status(s: &Status) -> Option<Status> {
    if s.code() != Code::OutOfRange {
        return None;
    }
    let sizes = s
        .message()
        .strip_prefix(TONIC_PREFIX)?
        .strip_suffix(TONIC_SUFFIX)?;
    let (found, limit) = sizes.split_once(TONIC_MIDDLE)?;
    let (found, limit) = (found.parse::<u64>().ok()?, limit.parse::<u64>().ok()?);
    Some(Status::resource_exhausted(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_refusal_becomes_grpc_gos() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 2252810 bytes, the limit is: 2097152 bytes",
        );
        let s = grpc_go_status(&tonic).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "grpc: received message larger than max (2252810 vs. 2097152)"
        );
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for s in [
            Status::out_of_range("etcdserver: mvcc: required revision is a future revision"),
            Status::invalid_argument("etcdserver: request is too large"),
            Status::out_of_range("Error, decoded message length too large: found x bytes"),
        ] {
            assert!(grpc_go_status(&s).is_none(), "{s:?}");
        }
    }
}
