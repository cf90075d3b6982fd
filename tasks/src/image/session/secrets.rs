//! `moby.buildkit.secrets.v1.Secrets/GetSecret`: `RUN --mount=type=secret,id=NAME` reads the
//! task's declared secret NAME, from lifeos's environment (where the key read it too).

use bollard::moby::buildkit::secrets::v1::secrets_server::Secrets;
use bollard::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use tonic::{Request, Response, Status};

pub struct SessionSecrets {
    declared: Vec<String>,
}

impl SessionSecrets {
    pub fn new(declared: Vec<String>) -> Self {
        Self { declared }
    }
}

#[tonic::async_trait]
impl Secrets for SessionSecrets {
    async fn get_secret(
        &self,
        req: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = &req.get_ref().id;
        // Not found, as the Docker CLI answers for a secret it was not given (BuildKit then
        // fails the step, or skips the mount when it is `required=false`).
        if !self.declared.contains(id) {
            return Err(Status::not_found(format!(
                "secret {id} is not among the task's secrets"
            )));
        }
        match std::env::var_os(id) {
            Some(v) => Ok(Response::new(GetSecretResponse {
                data: v.into_encoded_bytes(),
            })),
            None => Err(Status::not_found(format!("secret {id} is not set"))),
        }
    }
}
