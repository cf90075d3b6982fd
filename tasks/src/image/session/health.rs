//! `grpc.health.v1.Health/Check`: BuildKit checks the session's health while it builds and
//! drops a session that does not answer.

use std::pin::Pin;

use bollard::health::health_check_response::ServingStatus;
use bollard::health::health_server::Health;
use bollard::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use futures_util::Stream;
use tonic::{Request, Response, Status};

pub struct SessionHealth;

#[tonic::async_trait]
impl Health for SessionHealth {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn check(
        &self,
        _req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _req: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("not offered by this session"))
    }

    async fn watch(
        &self,
        _req: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not offered by this session"))
    }
}
