//! Which lifeos process made a one-shot container, so the next run can remove the ones a
//! killed run left behind (a SIGKILLed lifeos cannot clean up after itself).
//!
//! The label `lifeos.owner=<boot id>/<pid>/<start time>` names the process. A pid alone is
//! reused; with the process's start time (clock ticks since boot, `/proc/<pid>/stat`) and the
//! boot it belongs to, it names one process for good. A container whose owner is on another
//! machine or an earlier boot is left alone: lifeos cannot tell from here whether its owner
//! lives (after a reboot the containers stopped anyway).

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::PROJECT_LABEL;

pub const OWNER_LABEL: &str = "lifeos.owner";

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This process, as the label's value.
pub fn label_value() -> String {
    let pid = std::process::id();
    format!(
        "{}/{pid}/{}",
        boot_id().unwrap_or_default(),
        start_time(pid).unwrap_or(0)
    )
}

/// Some(pid) when the owner named by `value` is certainly dead: same boot, and no process
/// with that pid and start time. None when alive or when this machine cannot tell.
pub fn dead_owner(value: &str) -> Option<u32> {
    let mut parts = value.split('/');
    let (boot, pid, start) = (parts.next()?, parts.next()?, parts.next()?);
    let (pid, start) = (pid.parse::<u32>().ok()?, start.parse::<u64>().ok()?);
    if boot.is_empty() || Some(boot) != boot_id().as_deref() {
        return None;
    }
    match start_time(pid) {
        Some(now) if now == start => None,
        _ => Some(pid),
    }
}

/// Remove `project`'s containers whose lifeos process is dead; their names and owner pids.
pub async fn remove_dead(d: &bollard::Docker, project: &str) -> Vec<(String, u32)> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{PROJECT_LABEL}={project}"),
            OWNER_LABEL.to_string(),
        ],
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

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_dead() {
        assert_eq!(dead_owner(&label_value()), None, "{}", label_value());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid).unwrap_or(0);
        child.wait().unwrap();
        let value = format!("{}/{pid}/{start}", boot_id().unwrap());
        assert_eq!(dead_owner(&value), Some(pid));
        // Another boot, or a value this lifeos did not write: cannot tell, leave it.
        assert_eq!(dead_owner(&format!("other-boot/{pid}/{start}")), None);
        assert_eq!(dead_owner("garbage"), None);
    }
}
