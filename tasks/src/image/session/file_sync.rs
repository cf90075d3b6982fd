//! `moby.filesync.v1.FileSync/DiffCopy`, the sending side (fsutil's `send.go`): the engine
//! asks for a directory by name (`dir-name` metadata), gets every entry's STAT in walk order
//! and an empty STAT to end them, then asks for file contents by id (the index of the STAT)
//! and gets DATA packets, an empty one ending each file; FIN ends the exchange.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bollard::fsutil::types::packet::PacketType;
use bollard::fsutil::types::Packet;
use bollard::moby::filesync::v1::file_sync_server::FileSync;
use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::source::Source;

type Packets = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

/// The named directories of one build: "context" and "dockerfile", as the Docker CLI names them.
pub struct FileSyncProvider {
    dirs: HashMap<String, Arc<Source>>,
}

impl FileSyncProvider {
    pub fn new(dirs: HashMap<String, Arc<Source>>) -> Self {
        Self { dirs }
    }
}

/// fsutil sends files in 32 KiB DATA packets.
const CHUNK: usize = 32 * 1024;

fn values(req: &Request<Streaming<Packet>>, key: &str) -> Vec<String> {
    req.metadata()
        .get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

fn packet(kind: PacketType) -> Packet {
    Packet {
        r#type: kind as i32,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl FileSync for FileSyncProvider {
    type DiffCopyStream = Packets;
    type TarStreamStream = Packets;

    async fn diff_copy(
        &self,
        req: Request<Streaming<Packet>>,
    ) -> Result<Response<Packets>, Status> {
        let name = values(&req, "dir-name")
            .into_iter()
            .next()
            .unwrap_or_default();
        let source = self
            .dirs
            .get(&name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no access allowed to dir {name:?}")))?;
        let includes = values(&req, "include-patterns");
        let follow = values(&req, "followpaths");
        let mut incoming = req.into_inner();
        // The receiver's packets are read as they come, while STATs and files go out, as
        // fsutil's sender does. Read only between files, the 20.10 engine dropped the session
        // on a context of 3,000 files ("context canceled" while loading it).
        let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Result<Packet, Status>>();
        tokio::spawn(async move {
            loop {
                match incoming.message().await {
                    Ok(Some(p)) => {
                        let last = matches!(
                            PacketType::try_from(p.r#type),
                            Ok(PacketType::PacketFin | PacketType::PacketErr)
                        );
                        if in_tx.send(Ok(p)).is_err() || last {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = in_tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let (tx, rx) = mpsc::channel::<Result<Packet, Status>>(16);
        tokio::spawn(async move {
            // The ids the receiver may ask for: regular files, by STAT index.
            let mut files: HashMap<u32, PathBuf> = HashMap::new();
            for (id, e) in source.select(&includes, &follow).into_iter().enumerate() {
                if let Some(f) = &e.file {
                    files.insert(id as u32, f.clone());
                }
                let stat = Packet {
                    stat: Some(e.stat.clone()),
                    ..packet(PacketType::PacketStat)
                };
                if tx.send(Ok(stat)).await.is_err() {
                    return;
                }
            }
            if tx.send(Ok(packet(PacketType::PacketStat))).await.is_err() {
                return;
            }
            while let Some(p) = in_rx.recv().await {
                let p = match p {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                match PacketType::try_from(p.r#type) {
                    Ok(PacketType::PacketReq) => {
                        let Some(path) = files.remove(&p.id) else {
                            let _ = tx
                                .send(Err(Status::invalid_argument(format!(
                                    "invalid file id {}",
                                    p.id
                                ))))
                                .await;
                            return;
                        };
                        if let Err(e) = send_file(&tx, p.id, path).await {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                    Ok(PacketType::PacketFin) => {
                        let _ = tx.send(Ok(packet(PacketType::PacketFin))).await;
                        return;
                    }
                    Ok(PacketType::PacketErr) => {
                        let msg = String::from_utf8_lossy(&p.data).into_owned();
                        let _ = tx
                            .send(Err(Status::aborted(format!("error from receiver: {msg}"))))
                            .await;
                        return;
                    }
                    _ => {}
                }
            }
        });
        let out = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn tar_stream(
        &self,
        _req: Request<Streaming<Packet>>,
    ) -> Result<Response<Packets>, Status> {
        Err(Status::unimplemented(
            "lifeos serves the context by DiffCopy only",
        ))
    }
}

/// The bytes of file `id` in DATA packets, then the empty one that ends it. A file that
/// cannot be read fails the build (fsutil would send it empty: an image unlike its key).
async fn send_file(
    tx: &mpsc::Sender<Result<Packet, Status>>,
    id: u32,
    path: PathBuf,
) -> Result<(), Status> {
    let (chunks_tx, mut chunks_rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = chunks_tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if chunks_tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = chunks_tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    while let Some(chunk) = chunks_rx.recv().await {
        let data = chunk.map_err(|e| Status::internal(format!("cannot read {shown}: {e}")))?;
        let p = Packet {
            id,
            data,
            ..packet(PacketType::PacketData)
        };
        tx.send(Ok(p))
            .await
            .map_err(|_| Status::cancelled("the engine closed the session"))?;
    }
    tx.send(Ok(Packet {
        id,
        ..packet(PacketType::PacketData)
    }))
    .await
    .map_err(|_| Status::cancelled("the engine closed the session"))
}
