//! What a master or agent says about its own build: Mesos's `VersionInfo` (`/version`,
//! GET_VERSION's `version_info`, the build fields of v0 `/state`). The `meseta` binary's
//! build script finds the build time, user and git state; `main` installs them once with
//! [`set_build`]. Without them (a library's tests) the build fields are left out, and so
//! is every git field the build did not know (a tarball, no git).

use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The facts of one build, as `VersionInfo` names them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Build {
    /// Seconds since the epoch (`SOURCE_DATE_EPOCH` when the build set it).
    pub time: Option<i64>,
    pub user: Option<String>,
    pub git_sha: Option<String>,
    /// `refs/heads/<branch>`, as Mesos reports it.
    pub git_branch: Option<String>,
    /// The tag naming exactly the built commit.
    pub git_tag: Option<String>,
}

impl Build {
    /// From the variables the build script sets (`option_env!` values; absent or empty
    /// means unknown, an unreadable time too).
    pub fn from_env(
        time: Option<&str>,
        user: Option<&str>,
        git_sha: Option<&str>,
        git_branch: Option<&str>,
        git_tag: Option<&str>,
    ) -> Build {
        let known = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
        Build {
            time: time.and_then(|t| t.trim().parse().ok()),
            user: known(user),
            git_sha: known(git_sha),
            git_branch: known(git_branch),
            git_tag: known(git_tag),
        }
    }

    /// The build fields: `build_date` (`YYYY-MM-DD HH:MM:SS`, UTC), `build_time`
    /// (seconds, a double as in Mesos), `build_user`, `git_sha`, `git_branch`,
    /// `git_tag`, each only when known.
    pub fn fields(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(time) = self.time {
            out.insert("build_date".into(), json!(utc_date(time)));
            out.insert("build_time".into(), json!(time as f64));
        }
        for (name, value) in [
            ("build_user", &self.user),
            ("git_sha", &self.git_sha),
            ("git_branch", &self.git_branch),
            ("git_tag", &self.git_tag),
        ] {
            if let Some(v) = value {
                out.insert(name.into(), json!(v));
            }
        }
        out
    }
}

static BUILD: OnceLock<Build> = OnceLock::new();

/// Installs this process's build facts; the first call wins.
pub fn set_build(build: Build) {
    let _ = BUILD.set(build);
}

/// The installed build facts' fields (none when nothing was installed).
pub fn build_fields() -> Map<String, Value> {
    BUILD.get().map(Build::fields).unwrap_or_default()
}

/// `/version` and GET_VERSION's `version_info`: the Mesos API level we speak as
/// `version` (pymesos checks it), our own as `meseta_version`, and the build fields.
pub fn version_info() -> Value {
    let mut out = build_fields();
    out.insert("version".into(), json!(crate::MESOS_VERSION));
    out.insert("meseta_version".into(), json!(crate::MESETA_VERSION));
    Value::Object(out)
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC (the proleptic Gregorian
/// calendar, from the days since 1970-01-01 by Howard Hinnant's `civil_from_days`).
fn utc_date(secs: i64) -> String {
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00");
        // Mesos's own example: built 2016-02-15 10:00:28 PST.
        assert_eq!(utc_date(1_455_559_228), "2016-02-15 18:00:28");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_date(4_102_444_799), "2099-12-31 23:59:59");
        assert_eq!(utc_date(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn fields_of_a_git_build() {
        let build = Build::from_env(
            Some("1455559228"),
            Some("builder"),
            Some("9d5889b5a265849886a533965f4aefefd1fbd103"),
            Some("refs/heads/main"),
            Some("v0.1.0"),
        );
        assert_eq!(
            Value::Object(build.fields()),
            json!({
                "build_date": "2016-02-15 18:00:28",
                "build_time": 1455559228.0,
                "build_user": "builder",
                "git_sha": "9d5889b5a265849886a533965f4aefefd1fbd103",
                "git_branch": "refs/heads/main",
                "git_tag": "v0.1.0",
            })
        );
    }

    #[test]
    fn unknown_facts_are_left_out() {
        let build = Build::from_env(Some("soon"), Some(""), None, None, None);
        assert_eq!(build, Build::default());
        assert!(build.fields().is_empty());
        let build = Build::from_env(Some("10"), Some("u"), None, Some(""), None);
        assert_eq!(
            Value::Object(build.fields()),
            json!({"build_date": "1970-01-01 00:00:10", "build_time": 10.0, "build_user": "u"})
        );
    }

    #[test]
    fn version_info_carries_both_versions() {
        let info = version_info();
        assert_eq!(info["version"], crate::MESOS_VERSION);
        assert_eq!(info["meseta_version"], crate::MESETA_VERSION);
    }
}
