//! `check`: watch the canary for `window`, every `interval` reading the router's access
//! log (each line names the upstream that answered, so canary and stable are told apart),
//! while synthetic `probe` requests add traffic through the same router. The verdict is a
//! table of metric, canary, stable, threshold and result, printed and kept in the record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lifeos_engine::{ExecCx, Executed, KeyCx, Probe, ProbeCx, Stream, Task, TaskError, TaskInputs};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::router::revision_addr;
use super::tasks::{settle, DeployBody, ROUTER_LOCK};
use super::{reach, revision_name};
use crate::docker::Docker;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckBody {
    /// This check's task name (its verdict is kept under it in the router state).
    pub task: String,
    /// The canary task judged.
    pub target: String,
    pub window_ms: u64,
    pub interval_ms: u64,
    pub probe_path: Option<String>,
    /// Synthetic requests per second.
    pub probe_rate: u32,
    pub success_rate: Option<f64>,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub min_requests: u64,
    /// How far the canary's success rate may fall below the stable one's.
    pub max_drop: f64,
    pub rollback: bool,
}

pub struct CheckTask {
    pub body: CheckBody,
    pub deploy: DeployBody,
    docker: Docker,
}

impl CheckTask {
    pub fn new(body: CheckBody, deploy: DeployBody, docker: Docker) -> Self {
        Self {
            body,
            deploy,
            docker,
        }
    }
}

/// Requests of one side: statuses and latencies.
#[derive(Default, Debug, Clone)]
pub struct Side {
    pub ok: u64,
    pub failed: u64,
    pub ms: Vec<f64>,
}

impl Side {
    pub fn n(&self) -> u64 {
        self.ok + self.failed
    }

    pub fn success_rate(&self) -> Option<f64> {
        (self.n() > 0).then(|| self.ok as f64 / self.n() as f64)
    }

    /// Nearest-rank percentile, in milliseconds.
    pub fn pct(&self, p: f64) -> Option<f64> {
        if self.ms.is_empty() {
            return None;
        }
        let mut v = self.ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        Some(v[rank.min(v.len()) - 1])
    }
}

/// One row of the verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub metric: String,
    pub canary: String,
    pub stable: String,
    pub threshold: String,
    /// "pass", "fail" or "no data".
    pub result: String,
}

/// Parse access-log lines (`msec status request_time upstream_addr`) into the two sides.
pub fn tally(text: &str, canary: &str, stable: &str, c: &mut Side, s: &mut Side) {
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_), Some(status), Some(rt)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        // With a retry, `a, b`: the last one answered.
        let upstream = line.rsplit([' ', ',']).next().unwrap_or("");
        let side = if upstream == canary {
            &mut *c
        } else if upstream == stable {
            &mut *s
        } else {
            continue;
        };
        let status: u16 = status.parse().unwrap_or(0);
        if (200..500).contains(&status) {
            side.ok += 1;
        } else {
            side.failed += 1;
        }
        if let Ok(t) = rt.parse::<f64>() {
            side.ms.push(t * 1000.0);
        }
    }
}

pub(super) fn fmt_rate(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into())
}

pub(super) fn fmt_ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}ms")).unwrap_or_else(|| "-".into())
}

impl CheckBody {
    /// The verdict table, and whether it passes (`None`: no data).
    pub fn verdict(&self, c: &Side, s: &Side) -> (Vec<Row>, Option<bool>) {
        let mut rows = Vec::new();
        let enough = c.n() >= self.min_requests;
        rows.push(Row {
            metric: "requests".into(),
            canary: c.n().to_string(),
            stable: s.n().to_string(),
            threshold: format!(">= {}", self.min_requests),
            result: if enough { "pass" } else { "no data" }.into(),
        });
        let judge = |ok: bool| {
            if !enough {
                "no data"
            } else if ok {
                "pass"
            } else {
                "fail"
            }
        };
        if let Some(min) = self.success_rate {
            let ok = c.success_rate().is_some_and(|r| r >= min);
            rows.push(Row {
                metric: "success_rate".into(),
                canary: fmt_rate(c.success_rate()),
                stable: fmt_rate(s.success_rate()),
                threshold: format!(">= {min}"),
                result: judge(ok).into(),
            });
        }
        if let Some(stable) = s.success_rate() {
            let ok = c
                .success_rate()
                .is_some_and(|r| r >= stable - self.max_drop);
            rows.push(Row {
                metric: "success_rate vs stable".into(),
                canary: fmt_rate(c.success_rate()),
                stable: fmt_rate(Some(stable)),
                threshold: format!(">= stable - {}", self.max_drop),
                result: judge(ok).into(),
            });
        }
        for (name, p, limit) in [
            ("p50", 50.0, self.p50_ms),
            ("p95", 95.0, self.p95_ms),
            ("p99", 99.0, self.p99_ms),
        ] {
            let Some(limit) = limit else { continue };
            let ok = c.pct(p).is_some_and(|v| v <= limit as f64);
            rows.push(Row {
                metric: name.into(),
                canary: fmt_ms(c.pct(p)),
                stable: fmt_ms(s.pct(p)),
                threshold: format!("<= {limit}ms"),
                result: judge(ok).into(),
            });
        }
        let passed = if !enough {
            None
        } else {
            Some(rows.iter().all(|r| r.result == "pass"))
        };
        (rows, passed)
    }

    /// A clear failure before the window ends: enough canary requests, and its success
    /// rate already below the threshold.
    pub(super) fn clear_failure(&self, c: &Side) -> bool {
        c.n() >= self.min_requests
            && self
                .success_rate
                .is_some_and(|min| c.success_rate().is_some_and(|r| r < min))
    }
}

/// The failed rows, one phrase each, for the error: `other` names the side compared with
/// ("stable" here, "service" on Cloud Run, where the service URL also reaches the canary).
pub fn failed_metrics(rows: &[Row], other: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r.result == "fail")
        .map(|r| {
            format!(
                "{} canary {} ({other} {}, threshold {})",
                r.metric, r.canary, r.stable, r.threshold
            )
        })
        .collect()
}

/// The table as text lines.
pub fn table(rows: &[Row]) -> Vec<String> {
    let mut out = vec![format!(
        "{:<24} {:>10} {:>10} {:>20}  {}",
        "metric", "canary", "stable", "threshold", "result"
    )];
    for r in rows {
        out.push(format!(
            "{:<24} {:>10} {:>10} {:>20}  {}",
            r.metric, r.canary, r.stable, r.threshold, r.result
        ));
    }
    out
}

#[async_trait]
impl Task for CheckTask {
    fn kind(&self) -> &'static str {
        "check"
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.body).expect("check serializes")
    }

    fn describe(&self) -> String {
        format!("check the canary of {}", self.deploy.service)
    }

    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }

    async fn probe(&self, _cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        Ok(Probe::Missing("a check judges the canary now".into()))
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let b = &self.body;
        let d = self.docker.get().await?;
        let router = self.deploy.router(cx.deps)?;
        let service = &self.deploy.service;
        let state = router.read_state(&d).await?;
        let s = state
            .services
            .get(service)
            .cloned()
            .ok_or_else(|| TaskError::Failed(format!("{service} is not deployed")))?;
        // The canary task's revision: the canary, or (promoted since) the stable one,
        // then judged alone.
        let rev: u32 = cx
            .deps
            .field(&b.target, "revision")
            .ok()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| {
                TaskError::Failed(format!("canary task `{}` left no revision", b.target))
            })?;
        let (canary, stable) = if s.canary == Some(rev) {
            (rev, s.stable)
        } else if s.stable == Some(rev) {
            (rev, None)
        } else {
            return Err(TaskError::Failed(format!(
                "r{rev} of {service} gets no traffic ({}); run `{}` first",
                s.describe(),
                b.target
            )));
        };
        let name = |rev| revision_name(&router.project, &router.env, service, rev);
        let canary_addr = revision_addr(&d, &name(canary), &router.project, s.port).await?;
        let stable_addr = match stable {
            Some(r) => revision_addr(&d, &name(r), &router.project, s.port).await?,
            None => String::new(),
        };
        let mut offset = router.access_log_end(&d, service).await?;
        cx.log.line(
            Stream::Stdout,
            &match stable {
                Some(st) => format!(
                    "checking r{canary} (canary, {}%) against r{st} for {}s",
                    s.weight,
                    b.window_ms / 1000
                ),
                None => format!(
                    "checking r{canary} (promoted, 100%) for {}s",
                    b.window_ms / 1000
                ),
            },
        );
        // Synthetic requests through the router, at `rate` per second, for the window.
        let stop = tokio_util::sync::CancellationToken::new();
        let prober = b
            .probe_path
            .clone()
            .filter(|_| b.probe_rate > 0)
            .map(|path| {
                let target = reach(&s.publish);
                let stop = stop.clone();
                let every = Duration::from_secs_f64(1.0 / b.probe_rate as f64);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    let path = Arc::new(path);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = stop.cancelled() => break,
                        }
                        let (t, p) = (target.clone(), path.clone());
                        tokio::spawn(async move {
                            let _ = super::http::get(&t, &p, Duration::from_secs(5)).await;
                        });
                    }
                })
            });
        let (mut c, mut st) = (Side::default(), Side::default());
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
            let (text, next) = router.access_log(&d, service, offset).await?;
            offset = next;
            tally(&text, &canary_addr, &stable_addr, &mut c, &mut st);
            cx.log.line(
                Stream::Stdout,
                &format!(
                    "{:>4}s  canary {} req, success {}, p95 {}  |  stable {} req, success {}, p95 {}",
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
        if let Some(p) = prober {
            let _ = p.await;
        }
        // Requests still in flight when the window closed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (text, _) = router.access_log(&d, service, offset).await?;
        tally(&text, &canary_addr, &stable_addr, &mut c, &mut st);
        let (rows, passed) = b.verdict(&c, &st);
        for l in table(&rows) {
            cx.log.line(Stream::Stdout, &l);
        }
        let data = json!({
            "canary": canary, "stable": stable, "verdict": rows,
            "passed": passed, "ended_early": early,
        });
        let keep = |d: &bollard::Docker, data: serde_json::Value| {
            let router = router.clone();
            let task = b.task.clone();
            let d = d.clone();
            async move {
                let _lock = ROUTER_LOCK.lock().await;
                let mut state = router.read_state(&d).await?;
                let mut data = data;
                data["at"] = json!(std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs());
                state.checks.insert(task, data);
                router.save_state(&d, &state).await
            }
        };
        if passed != Some(false) {
            let mut v = data.clone();
            if passed.is_none() {
                v["error"] = json!(format!(
                    "no data: the canary got {} requests, fewer than min_requests = {}",
                    c.n(),
                    b.min_requests
                ));
            }
            keep(&d, v).await?;
        }
        match passed {
            Some(true) => Ok(Executed {
                data,
                ..Default::default()
            }),
            None => Err(TaskError::Failed(format!(
                "check of {service}: no data: the canary r{canary} got {} requests, fewer than min_requests = {}; traffic left as it is ({}). Send traffic, add `probe`, or lower `min_requests`",
                c.n(),
                b.min_requests,
                s.describe()
            ))),
            Some(false) => {
                let failed = failed_metrics(&rows, "stable");
                let after = if b.rollback && stable.is_none() {
                    format!("r{canary} is already promoted: roll back with `lifeos rollback {service}`")
                } else if b.rollback {
                    let _lock = ROUTER_LOCK.lock().await;
                    let mut state = router.read_state(&d).await?;
                    if let Some(s) = state.services.get_mut(service) {
                        if s.canary == Some(canary) {
                            s.canary = None;
                            s.weight = 0;
                        }
                    }
                    router.apply(&d, &mut state, Some(&cx.log)).await?;
                    let s = state.services[service].clone();
                    settle(&d, &router, service, &s, self.deploy.keep, true).await?;
                    format!("rolled back: traffic {}", s.describe())
                } else {
                    format!("traffic left as it is ({})", s.describe())
                };
                let msg = format!("check of {service} failed: {}; {after}", failed.join("; "));
                let mut v = data.clone();
                v["error"] = json!(msg);
                keep(&d, v).await?;
                Err(TaskError::Failed(msg))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> CheckBody {
        CheckBody {
            task: "k".into(),
            target: "c".into(),
            window_ms: 1000,
            interval_ms: 100,
            probe_path: None,
            probe_rate: 0,
            success_rate: Some(0.99),
            p50_ms: None,
            p95_ms: Some(500),
            p99_ms: None,
            min_requests: 10,
            max_drop: 0.01,
            rollback: true,
        }
    }

    #[test]
    fn tally_and_verdict() {
        let mut log = String::new();
        for i in 0..20 {
            let status = if i % 4 == 0 { 500 } else { 200 };
            log.push_str(&format!("1.0 {status} 0.010 10.0.0.2:80\n"));
            log.push_str("1.0 200 0.002 10.0.0.1:80\n");
        }
        log.push_str("1.0 200 0.002 10.0.0.2:80, 10.0.0.1:80\n");
        let (mut c, mut s) = (Side::default(), Side::default());
        tally(&log, "10.0.0.2:80", "10.0.0.1:80", &mut c, &mut s);
        assert_eq!((c.n(), c.failed, s.n()), (20, 5, 21));
        let (rows, passed) = body().verdict(&c, &s);
        assert_eq!(passed, Some(false));
        let sr = rows.iter().find(|r| r.metric == "success_rate").unwrap();
        assert_eq!((sr.canary.as_str(), sr.result.as_str()), ("0.7500", "fail"));
        let (rows, passed) = body().verdict(&Side::default(), &s);
        assert_eq!(passed, None);
        assert_eq!(rows[0].result, "no data");
    }
}
