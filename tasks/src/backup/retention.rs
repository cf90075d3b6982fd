//! Which verified backups to keep: restic's `forget` rules (`last`, `daily`, `weekly`,
//! `monthly`), over the UTC time in each file name. Days without a backup do not count;
//! weeks are ISO weeks (Monday to Sunday). As in restic 0.17, a bucket rule that finds fewer
//! buckets than it may keep also keeps the oldest backup. The newest verified backup is
//! always kept, whatever the rules say. Only files with a sidecar are judged: a `.dump`
//! lifeos did not verify is left alone.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// `keep = { last = 3, daily = 30, weekly = 26, monthly = 12 }`; a missing rule keeps none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub daily: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weekly: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub monthly: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Keep {
    pub fn is_empty(&self) -> bool {
        *self == Keep::default()
    }
}

/// One backup file as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    pub path: PathBuf,
    pub time: DateTime<Utc>,
    /// Has a sidecar (verified before it was renamed into place).
    pub verified: bool,
}

/// What happens to one backup, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub path: PathBuf,
    pub time: DateTime<Utc>,
    /// The rules that keep it (`daily 2026-12-01`, `newest verified`); empty: it goes.
    pub kept_by: Vec<String>,
    /// Not verified: never deleted, never counted.
    pub unverified: bool,
}

impl Decision {
    pub fn goes(&self) -> bool {
        self.kept_by.is_empty() && !self.unverified
    }
}

/// The UTC stamp format in file names: `<db>-20261202T035012Z.dump`.
pub const STAMP: &str = "%Y%m%dT%H%M%SZ";

pub fn stamp(t: DateTime<Utc>) -> String {
    t.format(STAMP).to_string()
}

/// `<db>-<stamp>.dump` → its time, for files of database `db`.
pub fn parse_name(db: &str, name: &str) -> Option<DateTime<Utc>> {
    let rest = name.strip_prefix(db)?.strip_prefix('-')?;
    let s = rest.strip_suffix(".dump")?;
    NaiveDateTime::parse_from_str(s, STAMP)
        .ok()
        .map(|t| t.and_utc())
}

/// The backups of `db` in `dir` (newest first); a missing directory has none.
pub fn list(dir: &Path, db: &str) -> std::io::Result<Vec<Backup>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let Some(time) = name.to_str().and_then(|n| parse_name(db, n)) else {
            continue;
        };
        let path = e.path();
        let verified = super::sidecar::path_of(&path).is_file();
        out.push(Backup {
            path,
            time,
            verified,
        });
    }
    out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.path.cmp(&a.path)));
    Ok(out)
}

/// Decide for every backup (any order in; newest first out).
pub fn plan(backups: &[Backup], keep: &Keep) -> Vec<Decision> {
    let mut all: Vec<&Backup> = backups.iter().collect();
    all.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.path.cmp(&a.path)));
    let mut out: Vec<Decision> = all
        .iter()
        .map(|b| Decision {
            path: b.path.clone(),
            time: b.time,
            kept_by: Vec::new(),
            unverified: !b.verified,
        })
        .collect();
    let verified: Vec<usize> = (0..out.len()).filter(|&i| !out[i].unverified).collect();
    if let Some(&newest) = verified.first() {
        out[newest].kept_by.push("newest verified".into());
    }
    for (n, &i) in verified.iter().enumerate().take(keep.last as usize) {
        out[i].kept_by.push(format!("last {}", n + 1));
    }
    type Bucket = fn(&DateTime<Utc>) -> String;
    let rules: [(&str, u32, Bucket); 3] = [
        ("daily", keep.daily, |t| t.format("%Y-%m-%d").to_string()),
        ("weekly", keep.weekly, |t| {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }),
        ("monthly", keep.monthly, |t| t.format("%Y-%m").to_string()),
    ];
    for (rule, count, bucket) in rules {
        if count == 0 {
            continue;
        }
        let mut left = count;
        let mut last: Option<String> = None;
        for &i in &verified {
            if left == 0 {
                break;
            }
            let b = bucket(&out[i].time);
            if last.as_ref() != Some(&b) {
                out[i].kept_by.push(format!("{rule} {b}"));
                last = Some(b);
                left -= 1;
            }
        }
        // restic 0.17: fewer buckets than allowed → the oldest is kept as well.
        if left > 0 {
            if let Some(&oldest) = verified.last() {
                if !out[oldest].kept_by.iter().any(|k| k.starts_with(rule)) {
                    out[oldest]
                        .kept_by
                        .push(format!("{rule} (oldest, the rule is not yet full)"));
                }
            }
        }
    }
    out
}

/// Delete what the plan lets go: the dump, then its sidecar. The names of what went.
pub fn apply(plan: &[Decision]) -> std::io::Result<Vec<PathBuf>> {
    let mut gone = Vec::new();
    for d in plan.iter().filter(|d| d.goes()) {
        std::fs::remove_file(&d.path)?;
        let side = super::sidecar::path_of(&d.path);
        if let Err(e) = std::fs::remove_file(&side) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e);
            }
        }
        gone.push(d.path.clone());
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDate, TimeZone};
    use std::collections::BTreeSet;

    fn at(t: DateTime<Utc>) -> Backup {
        Backup {
            path: PathBuf::from(format!("db-{}.dump", stamp(t))),
            time: t,
            verified: true,
        }
    }

    /// A nightly backup at 02:30 UTC for `days` days, pruned after each one as the backup
    /// task does (the clock is the loop's day, not the machine's). What is left at the end.
    fn simulate(start: DateTime<Utc>, days: i64, keep: &Keep) -> Vec<DateTime<Utc>> {
        let mut files: Vec<Backup> = Vec::new();
        for d in 0..days {
            let now = start + Duration::days(d);
            files.push(at(now));
            let p = plan(&files, keep);
            let newest = files.iter().map(|b| b.time).max().unwrap();
            let gone: BTreeSet<PathBuf> = p
                .iter()
                .filter(|d| d.goes())
                .map(|d| d.path.clone())
                .collect();
            assert!(
                !gone
                    .iter()
                    .any(|g| g.to_str().unwrap().contains(&stamp(newest))),
                "day {d}: the newest backup would go"
            );
            files.retain(|b| !gone.contains(&b.path));
        }
        let mut left: Vec<_> = files.iter().map(|b| b.time).collect();
        left.sort();
        left
    }

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(2, 30, 0)
                .unwrap(),
        )
    }

    #[test]
    fn the_seeds_policy_over_400_days_keeps_30_days_and_26_sundays() {
        let start = day(2025, 11, 1);
        let keep = Keep {
            daily: 30,
            weekly: 26,
            ..Keep::default()
        };
        let left = simulate(start, 400, &keep);
        let last = start + Duration::days(399);
        // Independently: the last 30 days, and the last backup of each of the 26 most
        // recent ISO weeks (a Sunday, or the last day for the current week).
        let mut expected: BTreeSet<DateTime<Utc>> =
            (0..30).map(|i| last - Duration::days(i)).collect();
        let mut week_end = last;
        for _ in 0..26 {
            expected.insert(week_end);
            let back = week_end.weekday().num_days_from_monday() as i64 + 1;
            week_end -= Duration::days(back);
            assert_eq!(week_end.weekday(), chrono::Weekday::Sun);
        }
        assert_eq!(left, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn last_daily_weekly_monthly_over_400_days() {
        let start = day(2025, 11, 1);
        let keep = Keep {
            last: 3,
            daily: 7,
            weekly: 4,
            monthly: 12,
        };
        let left = simulate(start, 400, &keep);
        let last = start + Duration::days(399); // 2026-12-05
        let mut expected: BTreeSet<DateTime<Utc>> =
            (0..7).map(|i| last - Duration::days(i)).collect();
        let mut week_end = last;
        for _ in 0..4 {
            expected.insert(week_end);
            week_end -= Duration::days(week_end.weekday().num_days_from_monday() as i64 + 1);
        }
        // The last day of each of the 12 most recent months (this month: today).
        let mut month_end = last;
        for _ in 0..12 {
            expected.insert(month_end);
            month_end -= Duration::days(month_end.day() as i64);
        }
        assert_eq!(left, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_young_history_keeps_the_oldest_for_an_unfilled_rule() {
        let start = day(2026, 1, 1);
        let keep = Keep {
            monthly: 6,
            ..Keep::default()
        };
        // 10 days: one month, so the monthly rule keeps the newest and (not full) the oldest.
        let left = simulate(start, 10, &keep);
        assert_eq!(left, vec![start, start + Duration::days(9)]);
    }

    #[test]
    fn no_rules_keep_only_the_newest_verified_and_never_touch_unverified() {
        let t = day(2026, 3, 1);
        let mut files = vec![at(t), at(t + Duration::days(1)), at(t + Duration::days(2))];
        // The newest file has no sidecar: it does not count, and it stays.
        files[2].verified = false;
        let p = plan(&files, &Keep::default());
        let by_time = |x: DateTime<Utc>| p.iter().find(|d| d.time == x).unwrap();
        assert!(by_time(t + Duration::days(2)).unverified);
        assert!(!by_time(t + Duration::days(2)).goes());
        assert_eq!(by_time(t + Duration::days(1)).kept_by, ["newest verified"]);
        assert!(by_time(t).goes());
    }

    #[test]
    fn names_parse_for_their_database_only() {
        let t = parse_name("lifeos", "lifeos-20261202T035012Z.dump").unwrap();
        assert_eq!(stamp(t), "20261202T035012Z");
        assert!(parse_name("lifeos", "lifeos-20261202T035012Z.dump.partial").is_none());
        assert!(parse_name("life", "lifeos-20261202T035012Z.dump").is_none());
        assert!(parse_name("lifeos", "lifeos-2026.dump").is_none());
    }
}
