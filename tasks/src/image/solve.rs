//! A BuildKit build with secrets when lifeos cannot open a build session of its own (see
//! `build::with_session`: an engine over TLS, a file name that is not UTF-8):
//! `RUN --mount=type=secret,id=NAME` reads the task's declared secret NAME. bollard's
//! `build_image` session serves registry auth (and file export) only, and its secrets
//! provider cannot be built outside bollard; so this goes through bollard's Moby driver:
//! BuildKit's solve over the engine's `/grpc`, with the context tar uploaded and the secrets
//! served over `/session`. That path streams no step progress (the task log gets the
//! outcome), and bollard's driver futures are not `Send`: the solve runs on a thread of its
//! own.

use std::collections::HashMap;

use bollard::grpc::build::{
    ImageBuildFrontendOptions, ImageBuildLoadInput, ImageBuildPlatform, SecretSource,
};
use bollard::grpc::driver::{moby::Moby, Build};
use bytes::Bytes;
use futures_util::TryStreamExt;
use lifeos_engine::{ExecCx, Stream, TaskError};

use super::ImageSpec;
use crate::docker::classify;

/// Build `spec` with its secrets; the image ID.
pub async fn build(
    d: &bollard::Docker,
    spec: &ImageSpec,
    cx: &ExecCx<'_>,
    dockerfile: &str,
    body: impl futures_util::Stream<Item = std::io::Result<Bytes>>,
    labels: &HashMap<String, String>,
) -> Result<String, TaskError> {
    let tar: Vec<u8> = body
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    let mut opts =
        ImageBuildFrontendOptions::builder().dockerfile(std::path::Path::new(dockerfile));
    if let Some(t) = &spec.target {
        opts = opts.target(t);
    }
    for (k, v) in &spec.build_args {
        opts = opts.buildarg(k, v);
    }
    for (k, v) in labels {
        opts = opts.label(k, v);
    }
    if let Some(p) = &spec.platform {
        let mut parts = p.splitn(3, '/');
        opts = opts.platforms(&ImageBuildPlatform {
            os: parts.next().unwrap_or_default().to_string(),
            architecture: parts.next().unwrap_or_default().to_string(),
            variant: parts.next().map(str::to_owned),
        });
    }
    // Served from lifeos's own environment, where the engine read them for the key.
    for s in &spec.secrets {
        opts = opts.set_secret(s, &SecretSource::Env(s.clone()));
    }
    let opts = opts.build();
    // The exporter tags the image with one name; the others follow (ensure_tags).
    let name = spec
        .tags
        .first()
        .cloned()
        .ok_or_else(|| TaskError::Failed("an image task needs a tag".into()))?;
    cx.log.progress("BuildKit solve (with secrets)");

    let (tx, rx) = tokio::sync::oneshot::channel();
    let (docker, cancel, tag) = (d.clone(), cx.cancel.clone(), name.clone());
    std::thread::Builder::new()
        .name("lifeos-buildkit-solve".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(async move {
                    let solve = Moby::new(&docker).docker_build(
                        &tag,
                        opts,
                        ImageBuildLoadInput::Upload(Bytes::from(tar)),
                        None,
                        None,
                    );
                    // Dropping the solve closes its connections: BuildKit cancels the build.
                    tokio::select! {
                        r = solve => Some(r.map_err(|e| e.to_string())),
                        _ = cancel.cancelled() => None,
                    }
                }),
                Err(e) => Some(Err(format!("cannot start the build's runtime: {e}"))),
            };
            let _ = tx.send(result);
        })
        .map_err(|e| TaskError::Failed(format!("cannot start the build thread: {e}")))?;
    match rx.await {
        Ok(Some(Ok(()))) => {}
        Ok(Some(Err(m))) => {
            cx.log.line(Stream::Stderr, &m);
            return Err(TaskError::Failed(format!("image build failed: {m}")));
        }
        Ok(None) => return Err(TaskError::Interrupted),
        Err(_) => return Err(TaskError::Failed("the build thread stopped".into())),
    }
    let img = d
        .inspect_image(&name)
        .await
        .map_err(|e| classify(e, &format!("inspect image {name}")))?;
    cx.log.line(
        Stream::Stdout,
        &format!("built with BuildKit secrets {}", spec.secrets.join(", ")),
    );
    img.id
        .ok_or_else(|| TaskError::Failed("the engine reported no image ID for the build".into()))
}
