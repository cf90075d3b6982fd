//! `check` of a Cloud Run canary: Cloud Run has no access log lifeos can read in a window, so
//! the check measures what it sends. For `window`, `probe.rate` requests a second go to the
//! canary's tagged URL (`status.traffic[].url` of its tag) and as many to the service URL
//! (mostly the stable revision); every `interval` it prints the running numbers. The verdict is
//! the docker platform's table. A failure with `on_failure = "rollback"` gives the stable
//! revision all traffic and removes the tag, in one `update-traffic` call.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lifeos_engine::{ExecCx, Executed, KeyCx, Probe, ProbeCx, Stream, Task, TaskError, TaskInputs};
use serde_json::json;

use super::super::check::{failed_metrics, fmt_ms, fmt_rate, table, CheckBody, Side};
use super::config::CloudRunBody;
use super::tasks::{describe, gcloud, update_traffic};

pub struct CloudRunCheck {
    pub body: CheckBody,
    pub deploy: CloudRunBody,
}

/// One GET: status (0 when nothing answered) and time taken.
async fn get(client: &reqwest::Client, url: &str) -> (u16, Duration) {
    let start = Instant::now();
    match client.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            (status, start.elapsed())
        }
        Err(_) => (0, start.elapsed()),
    }
}

fn count(side: &mut Side, status: u16, took: Duration) {
    if (200..500).contains(&status) {
        side.ok += 1;
    } else {
        side.failed += 1;
    }
    if status != 0 {
        side.ms.push(took.as_secs_f64() * 1000.0);
    }
}

fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

#[async_trait]
impl Task for CloudRunCheck {
    fn kind(&self) -> &'static str {
        "check"
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.body).expect("check serializes")
    }

    fn describe(&self) -> String {
        format!(
            "probe the `{}` URL of {} ({}) for {}s{}",
            self.deploy.tag,
            self.deploy.service,
            self.body.probe_path.as_deref().unwrap_or("/"),
            self.body.window_ms / 1000,
            if self.body.rollback {
                "; on failure: update-traffic --to-revisions PREV=100"
            } else {
                ""
            }
        )
    }

    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }

    async fn probe(&self, _cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        Ok(Probe::Missing("a check judges the canary now".into()))
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let b = &self.body;
        let d = &self.deploy;
        let service = &d.service;
        let rev = cx.deps.field(&b.target, "revision").map_err(|_| {
            TaskError::Failed(format!("canary task `{}` left no revision", b.target))
        })?;
        let g = gcloud(d);
        let (log, cancel) = (Some(&cx.log), Some(&cx.cancel));
        let s = describe(&g, d, log, cancel)
            .await?
            .ok_or_else(|| TaskError::Failed(format!("{service} does not exist")))?;
        let tagged = s
            .tagged(&d.tag)
            .filter(|t| t.revision == rev && s.percent(&rev) > 0 && !s.serves_all(&rev));
        let (canary_url, stable) = match tagged {
            Some(t) => (
                t.url.clone().ok_or_else(|| {
                    TaskError::Failed(format!("the `{}` tag of {service} has no URL", d.tag))
                })?,
                Some(s.url.clone()),
            ),
            None if s.serves_all(&rev) => (s.url.clone(), None),
            None => {
                return Err(TaskError::Failed(format!(
                    "{rev} of {service} gets no traffic ({}); run `{}` first",
                    s.describe(),
                    b.target
                )))
            }
        };
        let path = b.probe_path.clone().unwrap_or_else(|| "/".into());
        cx.log.line(
            Stream::Stdout,
            &match &stable {
                Some(u) => format!(
                    "checking {rev} ({}%) at {} against {u} for {}s",
                    s.percent(&rev),
                    canary_url,
                    b.window_ms / 1000
                ),
                None => format!(
                    "checking {rev} (all traffic) at {canary_url} for {}s",
                    b.window_ms / 1000
                ),
            },
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| TaskError::Failed(format!("HTTP client: {e}")))?;
        let sides = Arc::new(Mutex::new((Side::default(), Side::default())));
        let stop = tokio_util::sync::CancellationToken::new();
        let rate = b.probe_rate.max(1);
        let prober = {
            let (stop, sides, client) = (stop.clone(), sides.clone(), client.clone());
            let canary = join(&canary_url, &path);
            let stable = stable.as_ref().map(|u| join(u, &path));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
                let mut inflight = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.cancelled() => break,
                    }
                    for (url, is_canary) in [(Some(canary.clone()), true), (stable.clone(), false)]
                    {
                        let Some(url) = url else { continue };
                        let (sides, client) = (sides.clone(), client.clone());
                        inflight.spawn(async move {
                            let (status, took) = get(&client, &url).await;
                            let mut g = sides.lock().unwrap();
                            count(if is_canary { &mut g.0 } else { &mut g.1 }, status, took);
                        });
                    }
                }
                while inflight.join_next().await.is_some() {}
            })
        };
        let start = Instant::now();
        let window = Duration::from_millis(b.window_ms);
        let interval = Duration::from_millis(b.interval_ms);
        let mut early = false;
        while start.elapsed() < window {
            let left = window.saturating_sub(start.elapsed()).min(interval);
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                _ = cx.cancel.cancelled() => { stop.cancel(); return Err(TaskError::Interrupted); }
            }
            let (c, st) = sides.lock().unwrap().clone();
            cx.log.line(
                Stream::Stdout,
                &format!(
                    "{:>4}s  canary {} req, success {}, p95 {}  |  service {} req, success {}, p95 {}",
                    start.elapsed().as_secs(),
                    c.n(),
                    fmt_rate(c.success_rate()),
                    fmt_ms(c.pct(95.0)),
                    st.n(),
                    fmt_rate(st.success_rate()),
                    fmt_ms(st.pct(95.0)),
                ),
            );
            if b.clear_failure(&c) {
                early = true;
                cx.log
                    .line(Stream::Stdout, "clear failure: the window ends early");
                break;
            }
        }
        stop.cancel();
        let _ = prober.await;
        let (c, st) = sides.lock().unwrap().clone();
        let (rows, passed) = b.verdict(&c, &st);
        for l in table(&rows) {
            cx.log.line(Stream::Stdout, &l);
        }
        let data = json!({
            "canary": rev, "verdict": rows, "passed": passed, "ended_early": early,
            "url": canary_url,
        });
        match passed {
            Some(true) => Ok(Executed {
                data,
                ..Default::default()
            }),
            None => Err(TaskError::Failed(format!(
                "check of {service}: no data: the canary {rev} answered {} requests, fewer than min_requests = {}; traffic left as it is ({}). Raise `probe.rate` or the window, or lower `min_requests`",
                c.n(),
                b.min_requests,
                s.describe()
            ))),
            Some(false) => {
                let failed = failed_metrics(&rows, "service");
                let after = if b.rollback && stable.is_none() {
                    format!(
                        "{rev} already serves all traffic: roll back with `lifeos rollback {service} --env {}`",
                        d.env
                    )
                } else if b.rollback {
                    // Now, not at the start: the split may have changed during the window.
                    let now = describe(&g, d, log, cancel)
                        .await?
                        .ok_or_else(|| TaskError::Failed(format!("{service} vanished")))?;
                    let others: Vec<String> =
                        now.split().into_keys().filter(|r| r != &rev).collect();
                    let to = match others.as_slice() {
                        [prev] => format!("{prev}=100"),
                        _ => format!("{rev}=0"),
                    };
                    let mut change = vec!["--to-revisions".to_string(), to];
                    if now.tagged(&d.tag).is_some_and(|t| t.revision == rev) {
                        change.extend(["--remove-tags".to_string(), d.tag.clone()]);
                    }
                    let after = update_traffic(&g, d, &change, log, cancel).await?;
                    format!("rolled back: traffic {}", after.describe())
                } else {
                    format!("traffic left as it is ({})", s.describe())
                };
                Err(TaskError::Failed(format!(
                    "check of {service} failed: {}; {after}",
                    failed.join("; ")
                )))
            }
        }
    }
}
