//! The build session of a BuildKit build, as the Docker CLI opens it: `POST /session`
//! upgraded to HTTP/2, over which lifeos serves the engine gRPC (health, registry
//! credentials, the task's secrets, and the files of the "context" and "dockerfile"
//! directories through FileSync). The build request then names it (`remote=client-session`, `session=<id>`), so
//! the Dockerfile travels apart from the context and `.dockerignore` can exclude it, as with
//! `docker build`. bollard's own session serves no files, hence this.

mod auth;
mod file_sync;
mod health;
mod io;
mod secrets;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;

use bollard::auth::DockerCredentials;
use bollard::health::health_server::HealthServer;
use bollard::moby::buildkit::secrets::v1::secrets_server::SecretsServer;
use bollard::moby::filesync::v1::auth_server::AuthServer;
use bollard::moby::filesync::v1::file_sync_server::FileSyncServer;
use bytes::Bytes;
use hyper_util::rt::TokioIo;

pub use source::Source;

/// The gRPC methods the session offers (the engine calls nothing else).
const METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
];

/// An open session; dropping it closes the connection.
pub struct BuildSession {
    close: tokio_util::sync::CancellationToken,
}

impl Drop for BuildSession {
    fn drop(&mut self) {
        self.close.cancel();
    }
}

/// What the session serves.
pub struct Served {
    pub context: Source,
    pub dockerfile: Source,
    pub creds: HashMap<String, DockerCredentials>,
    /// The task's declared secrets (names of environment variables).
    pub secrets: Vec<String>,
}

impl BuildSession {
    /// Open session `id` and serve `served`. `name` and `shared_key` are what the CLI sends
    /// (the context directory's name; the key under which the engine keeps its copy of the
    /// context). None: lifeos cannot dial this engine itself.
    pub async fn start(
        id: &str,
        name: &str,
        shared_key: &str,
        served: Served,
    ) -> Result<Option<BuildSession>, String> {
        let fail = |e: &dyn std::fmt::Display| format!("cannot open the build session: {e}");
        let Some(conn) = crate::docker::dial::dial().await.map_err(|e| fail(&e))? else {
            return Ok(None);
        };
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
            .await
            .map_err(|e| fail(&e))?;
        tokio::spawn(conn.with_upgrades());
        let mut req = http::Request::post("/session")
            .header(http::header::HOST, "docker")
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "h2c")
            .header("X-Docker-Expose-Session-Uuid", id)
            .header("X-Docker-Expose-Session-Name", name)
            .header("X-Docker-Expose-Session-Sharedkey", shared_key);
        for m in METHODS {
            req = req.header("X-Docker-Expose-Session-Grpc-Method", *m);
        }
        let req = req
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| fail(&e))?;
        let resp = send.send_request(req).await.map_err(|e| fail(&e))?;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            use http_body_util::BodyExt;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                .unwrap_or_default();
            return Err(fail(&format!("the engine answered {status}: {body}")));
        }
        let upgraded = hyper::upgrade::on(resp).await.map_err(|e| fail(&e))?;
        let close = tokio_util::sync::CancellationToken::new();
        let io = io::SessionIo::new(TokioIo::new(upgraded), &close);
        let dirs = HashMap::from([
            ("context".to_string(), Arc::new(served.context)),
            ("dockerfile".to_string(), Arc::new(served.dockerfile)),
        ]);
        let router = tonic::transport::Server::builder()
            .add_service(HealthServer::new(health::SessionHealth))
            .add_service(FileSyncServer::new(file_sync::FileSyncProvider::new(dirs)))
            .add_service(AuthServer::new(auth::SessionAuth::new(served.creds)))
            .add_service(SecretsServer::new(secrets::SessionSecrets::new(
                served.secrets,
            )));
        // tonic serves the connection on a task of its own, until the engine closes it or
        // the session is dropped (`close`).
        tokio::spawn(
            router.serve_with_incoming(futures_util::stream::iter([Ok::<_, std::io::Error>(io)])),
        );
        Ok(Some(BuildSession { close }))
    }
}
