//! Backups in Cloud Storage (`gs://BUCKET/PREFIX/`) through the Google Cloud CLI, so its
//! credentials (`gcloud auth login`, a service account) are used as they are; lifeos holds
//! none. Upload: `gcloud storage cp FILE URL`, then `gcloud storage cat URL` read through a
//! sha256 hasher: the size and sha256 of what the bucket now serves must be the file's (GCS
//! keeps md5 and crc32c, not sha256, so the bytes are read back). Download (restore):
//! `gcloud storage objects describe URL --format=json` (its `generation`, `size`) and `gcloud
//! storage cp URL FILE`; a kept copy of the same generation is reused.
//! The program is `$LIFEOS_GCLOUD`, else `gcloud` on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::sidecar::Sha256;

/// The gcloud program.
pub fn program() -> String {
    std::env::var("LIFEOS_GCLOUD")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "gcloud".into())
}

/// Why `gs://...` cannot be used, if it cannot.
pub fn url_problem(url: &str) -> Option<String> {
    let rest = url.strip_prefix("gs://")?;
    let bucket = rest.split('/').next().unwrap_or_default();
    let ok = (3..=222).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        None
    } else {
        Some(format!(
            "`{bucket}` is not a Cloud Storage bucket name: expected gs://BUCKET/PREFIX/"
        ))
    }
}

/// `gs://b/x.dump` → `b`, for messages.
pub fn bucket_of(url: &str) -> String {
    let rest = url.trim_start_matches("gs://");
    format!("gs://{}", rest.split('/').next().unwrap_or_default())
}

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(program());
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// gcloud's error, from its `ERROR:` line on, on one line.
fn said(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let from = text.find("ERROR:").unwrap_or(0);
    let words: Vec<&str> = text[from..]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if words.is_empty() {
        "no message".into()
    } else {
        words.join(" ")
    }
}

fn cannot_run(e: std::io::Error) -> String {
    format!(
        "cannot run `{}`: {e}; install the Google Cloud CLI or set LIFEOS_GCLOUD to its path",
        program()
    )
}

/// Run `gcloud ARGS` to its end; its stdout, or its error in its own words.
async fn run(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = command(args).output().await.map_err(cannot_run)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "`gcloud {}` failed: {}",
            args.join(" "),
            said(&out.stderr)
        ))
    }
}

/// `gcloud storage cp FILE URL`, then the size and sha256 read back with `storage cat`.
pub async fn upload(url: &str, file: &Path, sha256: &str, size: u64) -> Result<(), String> {
    let local = file.to_string_lossy();
    run(&["storage", "cp", &local, url]).await?;
    let (got_sha, got_size) = cat_hash(url).await?;
    if got_size != size || got_sha != sha256 {
        return Err(format!(
            "{} stored {url} as {got_size} bytes with sha256 {got_sha}; sent {size} bytes with sha256 {sha256}",
            bucket_of(url)
        ));
    }
    Ok(())
}

/// A small file (the sidecar), copied the same way.
pub async fn upload_small(url: &str, file: &Path) -> Result<(), String> {
    run(&["storage", "cp", &file.to_string_lossy(), url])
        .await
        .map(drop)
}

/// The sha256 and size of what `gcloud storage cat URL` streams.
async fn cat_hash(url: &str) -> Result<(String, u64), String> {
    let mut child = command(&["storage", "cat", url])
        .spawn()
        .map_err(cannot_run)?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b).await;
        b
    });
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stdout
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading back {url}: {e}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("reading back {url}: {e}"))?;
    let err = errors.await.unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "reading back {url} (`gcloud storage cat`) failed: {}",
            said(&err)
        ));
    }
    Ok(h.finish())
}

/// The object's generation and size (`objects describe --format=json`).
async fn describe(url: &str) -> Result<(String, u64), String> {
    let out = run(&["storage", "objects", "describe", url, "--format=json"]).await?;
    let v: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| format!("`gcloud storage objects describe {url}` gave no JSON: {e}"))?;
    let generation = match &v["generation"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => v["etag"].as_str().unwrap_or_default().to_string(),
    };
    let size = v["size"]
        .as_u64()
        .or_else(|| v["size"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    Ok((generation, size))
}

/// Fetch `url` and its sidecar (`URL.json`) into `dir` (one directory per URL), reusing a kept
/// copy of the same generation. The dump's and the sidecar's paths, and whether it was kept.
pub async fn download(url: &str, dir: &Path) -> Result<(PathBuf, PathBuf, bool), String> {
    let name = url.rsplit('/').next().unwrap_or("backup.dump");
    if name.is_empty() {
        return Err(format!("{url} names a folder, not a backup file"));
    }
    let (generation, size) = describe(url).await?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dump = dir.join(name);
    let side = dir.join(format!("{name}.json"));
    let stamp = dir.join("generation");
    let kept = std::fs::read_to_string(&stamp).ok().as_deref() == Some(generation.as_str())
        && !generation.is_empty()
        && std::fs::metadata(&dump).is_ok_and(|m| m.len() == size)
        && side.is_file();
    if kept {
        return Ok((dump, side, true));
    }
    let _ = std::fs::remove_file(&stamp);
    run(&["storage", "cp", url, &dump.to_string_lossy()]).await?;
    run(&[
        "storage",
        "cp",
        &format!("{url}.json"),
        &side.to_string_lossy(),
    ])
    .await
    .map_err(|e| format!("the sidecar {url}.json: {e}"))?;
    std::fs::write(&stamp, &generation)
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok((dump, side, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_messages() {
        assert!(url_problem("gs://my-backups/lifeos/").is_none());
        assert!(url_problem("gs://Bad_Bucket/x").is_some());
        assert!(url_problem("gs:///x").is_some());
        assert_eq!(bucket_of("gs://b-1/x/y.dump"), "gs://b-1");
        let e = said(b"Copying...\nERROR: (gcloud.storage.cp) You do not currently have an active account selected.\nPlease run:\n\n  $ gcloud auth login\n");
        assert!(
            e.starts_with("ERROR: (gcloud.storage.cp)") && e.contains("$ gcloud auth login"),
            "{e}"
        );
    }
}
