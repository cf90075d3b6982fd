//! Which lifeos process made a one-shot container, so the next run can remove the ones a
//! killed run left behind (a SIGKILLed lifeos cannot clean up after itself).
//!
//! The label `lifeos.owner=<boot id>/<pid namespace>/<pid>/<start time>` names the process.
//! A pid alone is reused; with the process's start time (clock ticks since boot,
//! `/proc/<pid>/stat`), the boot and the PID namespace it belongs to, it names one process
//! for good. Runs in other PID namespaces (CI containers, devcontainers) can share one engine
//! and one project name: their pids mean nothing in ours, so their containers are left alone,
//! as are those of another machine or an earlier boot (after a reboot the containers stopped
//! anyway), and any label lifeos cannot read with certainty (older formats, start time 0).
//! An owner counts as dead only when /proc says so plainly: no such pid, or another start time.

use std::collections::HashMap;
use std::sync::OnceLock;

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::PROJECT_LABEL;

pub const OWNER_LABEL: &str = "lifeos.owner";

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// This process's PID namespace, e.g. `pid:[4026531836]`.
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

/// What /proc says of a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Running, started at this many clock ticks since boot.
    Started(u64),
    /// `/proc/<pid>` does not exist.
    NotFound,
    /// Unreadable (EPERM, a format lifeos does not know): cannot tell.
    Unknown,
}

fn parse_start(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A process's start time (field 22 of `/proc/<pid>/stat`).
fn seen(pid: u32) -> Seen {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_start(&stat).map_or(Seen::Unknown, Seen::Started),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Seen::NotFound,
        Err(_) => Seen::Unknown,
    }
}

fn start_time(pid: u32) -> Option<u64> {
    match seen(pid) {
        Seen::Started(t) => Some(t),
        _ => None,
    }
}

/// This process, as the label's value.
pub fn label_value() -> String {
    let pid = std::process::id();
    format!(
        "{}/{}/{pid}/{}",
        boot_id().unwrap_or_default(),
        pid_namespace().unwrap_or_default(),
        start_time(pid).unwrap_or(0)
    )
}

/// Some(pid) when the owner named by `value` is certainly dead, judged as a process of boot
/// `boot` in PID namespace `ns` whose pids `seen` looks up. None when alive or uncertain.
fn judge(
    value: &str,
    boot: Option<&str>,
    ns: Option<&str>,
    seen: impl Fn(u32) -> Seen,
) -> Option<u32> {
    let parts: Vec<&str> = value.split('/').collect();
    let [b, n, pid, start] = parts[..] else {
        return None;
    };
    let (pid, start) = (pid.parse::<u32>().ok()?, start.parse::<u64>().ok()?);
    if b.is_empty() || n.is_empty() || start == 0 || pid == 0 {
        return None;
    }
    if Some(b) != boot || Some(n) != ns {
        return None;
    }
    match seen(pid) {
        Seen::NotFound => Some(pid),
        Seen::Started(now) if now != start => Some(pid),
        Seen::Started(_) | Seen::Unknown => None,
    }
}

/// Some(pid) when the owner named by `value` is certainly dead: same boot and PID namespace,
/// and no process with that pid and start time. None when alive or when this process cannot
/// tell.
pub fn dead_owner(value: &str) -> Option<u32> {
    judge(
        value,
        boot_id().as_deref(),
        pid_namespace().as_deref(),
        seen,
    )
}

/// Once per process, before its first one-shot container is created: remove the project's
/// containers left by dead runs, and say so. A run that creates none never asks the engine.
pub async fn sweep_once(d: &bollard::Docker, project: &str) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    for (name, pid) in remove_dead(d, project).await {
        eprintln!("lifeos: removed container {name}, left by a lifeos run that died (pid {pid})");
    }
}

/// Remove `project`'s containers whose lifeos process is dead; their names and owner pids.
pub async fn remove_dead(d: &bollard::Docker, project: &str) -> Vec<(String, u32)> {
    remove_dead_labelled(d, &format!("{PROJECT_LABEL}={project}")).await
}

/// Remove the containers labelled `label` (`key=value`) whose lifeos process is dead; their
/// names and owner pids.
pub async fn remove_dead_labelled(d: &bollard::Docker, label: &str) -> Vec<(String, u32)> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![label.to_string(), OWNER_LABEL.to_string()],
    )]);
    let Ok(list) = d
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
    else {
        return vec![];
    };
    let mut removed = Vec::new();
    for c in list {
        let owner = c.labels.as_ref().and_then(|l| l.get(OWNER_LABEL));
        let (Some(id), Some(pid)) = (c.id.as_deref(), owner.and_then(|o| dead_owner(o))) else {
            continue;
        };
        super::ops::remove(d, id).await;
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| id.chars().take(12).collect());
        removed.push((name, pid));
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = "b00t";
    const NS: &str = "pid:[4026531836]";

    fn j(value: &str, seen: Seen) -> Option<u32> {
        judge(value, Some(BOOT), Some(NS), |_| seen)
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_dead() {
        assert_eq!(dead_owner(&label_value()), None, "{}", label_value());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid).unwrap();
        child.wait().unwrap();
        let ns = pid_namespace().unwrap();
        let value = format!("{}/{ns}/{pid}/{start}", boot_id().unwrap());
        assert_eq!(dead_owner(&value), Some(pid));
        assert_eq!(dead_owner(&format!("other-boot/{ns}/{pid}/{start}")), None);
        assert_eq!(dead_owner("garbage"), None);
    }

    #[test]
    fn the_label_names_boot_namespace_pid_and_start_time() {
        let v = label_value();
        let parts: Vec<&str> = v.split('/').collect();
        assert_eq!(parts.len(), 4, "{v}");
        assert_eq!(parts[1], pid_namespace().unwrap());
        assert!(parts[1].starts_with("pid:["), "{v}");
        assert_eq!(parts[2], std::process::id().to_string());
        assert_ne!(parts[3], "0", "{v}");
    }

    #[test]
    fn dead_only_on_a_clean_not_found_or_another_start_time() {
        let v = format!("{BOOT}/{NS}/42/1000");
        assert_eq!(j(&v, Seen::NotFound), Some(42));
        assert_eq!(j(&v, Seen::Started(999)), Some(42), "pid reused");
        assert_eq!(j(&v, Seen::Started(1000)), None, "alive");
        assert_eq!(j(&v, Seen::Unknown), None, "unreadable (EPERM) is not dead");
    }

    #[test]
    fn another_boot_or_pid_namespace_is_left_alone() {
        assert_eq!(j(&format!("other/{NS}/42/1000"), Seen::NotFound), None);
        assert_eq!(j(&format!("{BOOT}/pid:[1]/42/1000"), Seen::NotFound), None);
        assert_eq!(j(&format!("/{NS}/42/1000"), Seen::NotFound), None);
        assert_eq!(j(&format!("{BOOT}//42/1000"), Seen::NotFound), None);
        // This process cannot read its own boot or namespace: it judges nothing.
        let v = format!("{BOOT}/{NS}/42/1000");
        assert_eq!(judge(&v, None, Some(NS), |_| Seen::NotFound), None);
        assert_eq!(judge(&v, Some(BOOT), None, |_| Seen::NotFound), None);
    }

    #[test]
    fn old_zero_or_malformed_labels_are_left_alone() {
        // The format before the namespace: <boot>/<pid>/<start>.
        assert_eq!(j(&format!("{BOOT}/42/1000"), Seen::NotFound), None);
        assert_eq!(j(&format!("{BOOT}/{NS}/42/0"), Seen::NotFound), None);
        assert_eq!(j(&format!("{BOOT}/{NS}/x/1000"), Seen::NotFound), None);
        assert_eq!(j(&format!("{BOOT}/{NS}/42/-1"), Seen::NotFound), None);
        assert_eq!(
            j(&format!("{BOOT}/{NS}/42/1000/extra"), Seen::NotFound),
            None
        );
        assert_eq!(j("", Seen::NotFound), None);
    }

    #[test]
    fn the_start_time_is_read_past_a_command_name_with_parentheses() {
        let stat = "7 (a) b (c)) S 1 7 7 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(parse_start(stat), Some(12345));
        assert_eq!(parse_start("7 (short) S"), None);
    }
}
