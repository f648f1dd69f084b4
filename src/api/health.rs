//! The gRPC health service (`grpc.health.v1.Health`), served for the whole server (service
//! name ""): SERVING while the member knows a leader and its storage works.

use crate::pb::health::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_server::Health,
};
use crate::server::driver::NodeHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct HealthService {
    h: NodeHandle,
}

impl HealthService {
    pub fn new(h: NodeHandle) -> HealthService {
        HealthService { h }
    }

    async fn status(&self) -> ServingStatus {
        let ok = self
            .h
            .run(false, |d| {
                Ok(d.stopped().is_none() && d.leader() != crate::raft::NONE)
            })
            .await
            .unwrap_or(false);
        if ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if !request.get_ref().service.is_empty() {
            return Err(Status::not_found("unknown service"));
        }
        Ok(Response::new(HealthCheckResponse {
            status: self.status().await as i32,
        }))
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let status = self.check(request).await?.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.send(Ok(status)).await;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
