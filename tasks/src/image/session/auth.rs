//! `moby.filesync.v1.Auth/Credentials`: the registry credentials BuildKit asks the session
//! for (the `cache_from` registries). Only this method is offered, so BuildKit fetches
//! tokens itself; a registry without credentials here is asked anonymously.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::moby::filesync::v1::auth_server::Auth;
use bollard::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use tonic::{Request, Response, Status};

/// Credentials by registry host (Docker Hub as `registry-1.docker.io`, as BuildKit asks).
pub struct SessionAuth {
    creds: HashMap<String, DockerCredentials>,
}

impl SessionAuth {
    pub fn new(creds: HashMap<String, DockerCredentials>) -> Self {
        Self { creds }
    }
}

#[tonic::async_trait]
impl Auth for SessionAuth {
    async fn credentials(
        &self,
        req: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let answer = match self.creds.get(&req.get_ref().host) {
            // An identity token goes with an empty user name (the Docker CLI's rule).
            Some(c) => match &c.identitytoken {
                Some(t) if !t.is_empty() => CredentialsResponse {
                    username: String::new(),
                    secret: t.clone(),
                },
                _ => CredentialsResponse {
                    username: c.username.clone().unwrap_or_default(),
                    secret: c.password.clone().unwrap_or_default(),
                },
            },
            None => CredentialsResponse::default(),
        };
        Ok(Response::new(answer))
    }

    async fn fetch_token(
        &self,
        _req: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("not offered by this session"))
    }

    async fn get_token_authority(
        &self,
        _req: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("not offered by this session"))
    }

    async fn verify_token_authority(
        &self,
        _req: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("not offered by this session"))
    }
}
