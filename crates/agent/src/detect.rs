//! The agent's resources and attributes: what the machine has (cores, memory, the size of
//! the work directory's filesystem, the default port range), overridden per resource
//! name by `--resources`, and `--attributes` parsed into Mesos `Attribute`s.

use meseta_api::resources::{Range, Ranges, ResourceError, Scalar, Set, ValueType};
use meseta_api::{Attribute, Resource, Resources, Text};
use std::path::Path;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// What the machine offers before any `--resources` override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    pub cpus: u64,
    pub mem_bytes: u64,
    pub disk_bytes: u64,
}

impl Machine {
    /// Reads the machine: online cores, total memory, the size of the filesystem under
    /// `work_dir` (its size, not its free space, as Mesos: so that a restarted agent
    /// detects the same resources).
    pub fn detect(work_dir: &Path) -> Machine {
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u64;
        let mem_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| mem_total(&text))
            .unwrap_or(GIB);
        let disk_bytes = nix::sys::statvfs::statvfs(work_dir)
            .map(|s| s.blocks() * s.fragment_size())
            .unwrap_or(0);
        Machine {
            cpus,
            mem_bytes,
            disk_bytes,
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Mesos's defaults: all cores; memory less 1 GiB (half when under 2 GiB); disk less
/// 5 GiB (half when under 10 GiB); ports 31000-32000. Memory and disk are in MiB.
pub fn default_resources(machine: &Machine) -> Resources {
    let mem = if machine.mem_bytes >= 2 * GIB {
        machine.mem_bytes - GIB
    } else {
        machine.mem_bytes / 2
    };
    let disk = if machine.disk_bytes >= 10 * GIB {
        machine.disk_bytes - 5 * GIB
    } else {
        machine.disk_bytes / 2
    };
    let list = vec![
        Resource::scalar("cpus", machine.cpus as f64),
        Resource::scalar("mem", (mem / MIB).max(32) as f64),
        Resource::scalar("disk", (disk / MIB).max(32) as f64),
        Resource::ranges("ports", &[(31000, 32000)]),
    ];
    Resources::from_list(list).expect("defaults are valid")
}

/// The agent's total resources: the defaults, with every resource name that `flag`
/// mentions (in any role) taken from `flag` instead.
pub fn total_resources(machine: &Machine, flag: Option<&str>) -> Result<Resources, ResourceError> {
    let defaults = default_resources(machine);
    let Some(flag) = flag else {
        return Ok(defaults);
    };
    let given = Resources::parse(flag)?;
    let mut total = Resources::new();
    for r in defaults
        .iter()
        .filter(|d| given.iter().all(|g| g.name != d.name))
    {
        total.add(r);
    }
    total.add_all(&given);
    Ok(total)
}

/// Parses `--attributes`: `name:value;…`. A value is SCALAR when it is a number, RANGES
/// when `[a-b,…]`, SET when `{a,b}`, and TEXT otherwise.
pub fn parse_attributes(text: &str) -> Result<Vec<Attribute>, String> {
    let mut out: Vec<Attribute> = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once(':')
            .ok_or_else(|| format!("attribute '{part}' is not of the form name:value"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(format!("attribute '{part}' has an empty name"));
        }
        let mut attribute = Attribute {
            name: name.to_string(),
            kind: ValueType::Text,
            scalar: None,
            ranges: None,
            set: None,
            text: None,
        };
        if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            attribute.kind = ValueType::Ranges;
            attribute.ranges =
                Some(parse_ranges(inner).map_err(|why| format!("attribute '{part}': {why}"))?);
        } else if let Some(inner) = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            attribute.kind = ValueType::Set;
            let item = inner
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(String::from)
                .collect();
            attribute.set = Some(Set { item });
        } else if let Some(number) = value.parse::<f64>().ok().filter(|v| v.is_finite()) {
            attribute.kind = ValueType::Scalar;
            attribute.scalar = Some(Scalar { value: number });
        } else {
            attribute.text = Some(Text {
                value: value.to_string(),
            });
        }
        match out.iter_mut().find(|a| a.name == attribute.name) {
            Some(existing) => *existing = attribute,
            None => out.push(attribute),
        }
    }
    Ok(out)
}

fn parse_ranges(inner: &str) -> Result<Ranges, String> {
    let mut range = Vec::new();
    for piece in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (begin, end) = piece.split_once('-').unwrap_or((piece, piece));
        let parse = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("'{piece}' is not a range"))
        };
        let (begin, end) = (parse(begin)?, parse(end)?);
        if begin > end {
            return Err(format!("range '{piece}' ends before it begins"));
        }
        range.push(Range { begin, end });
    }
    Ok(Ranges { range })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BIG: Machine = Machine {
        cpus: 8,
        mem_bytes: 16 * GIB,
        disk_bytes: 100 * GIB,
    };

    #[test]
    fn defaults_follow_mesos() {
        let r = default_resources(&BIG);
        assert_eq!(r.scalar("cpus"), 8.0);
        assert_eq!(r.scalar("mem"), 15.0 * 1024.0);
        assert_eq!(r.scalar("disk"), 95.0 * 1024.0);
        assert_eq!(serde_json::json!(r.v0_map())["ports"], "[31000-32000]");
        let small = default_resources(&Machine {
            cpus: 1,
            mem_bytes: GIB,
            disk_bytes: 4 * GIB,
        });
        assert_eq!(small.scalar("mem"), 512.0);
        assert_eq!(small.scalar("disk"), 2048.0);
        let tiny = default_resources(&Machine {
            cpus: 1,
            mem_bytes: 0,
            disk_bytes: 0,
        });
        assert_eq!(tiny.scalar("mem"), 32.0);
        assert_eq!(tiny.scalar("disk"), 32.0);
    }

    #[test]
    fn flag_overrides_by_name_in_text_and_json() {
        let r = total_resources(&BIG, Some("cpus:2;ports:[5000-5001];gpus:1")).unwrap();
        assert_eq!(r.scalar("cpus"), 2.0);
        assert_eq!(r.scalar("gpus"), 1.0);
        assert_eq!(r.scalar("mem"), 15.0 * 1024.0);
        assert_eq!(serde_json::json!(r.v0_map())["ports"], "[5000-5001]");
        let r = total_resources(
            &BIG,
            Some(r#"[{"name":"mem","type":"SCALAR","scalar":{"value":64}}]"#),
        )
        .unwrap();
        assert_eq!(r.scalar("mem"), 64.0);
        assert_eq!(r.scalar("cpus"), 8.0);
        let r = total_resources(&BIG, Some("cpus(web):3")).unwrap();
        assert_eq!(
            r.scalar("cpus"),
            3.0,
            "a reserved cpus replaces the default cpus"
        );
        assert!(total_resources(&BIG, Some("cpus:lots")).is_err());
    }

    #[test]
    fn attributes_of_every_type() {
        let a = parse_attributes("rack:a;zone:1; ports:[1-3,7] ;disks:{ssd, hdd};rack:b").unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(a[0].name, "rack");
        assert_eq!(
            a[0].text.as_ref().unwrap().value,
            "b",
            "a repeated name takes the last value"
        );
        assert_eq!(a[1].kind, ValueType::Scalar);
        assert_eq!(a[1].scalar.unwrap().value, 1.0);
        assert_eq!(a[2].kind, ValueType::Ranges);
        assert_eq!(
            a[2].ranges.as_ref().unwrap().range,
            vec![Range { begin: 1, end: 3 }, Range { begin: 7, end: 7 }]
        );
        assert_eq!(a[3].set.as_ref().unwrap().item, vec!["ssd", "hdd"]);
        let json = serde_json::to_value(&a[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name":"rack","type":"TEXT","text":{"value":"b"}})
        );
        assert!(parse_attributes("novalue").is_err());
        assert!(parse_attributes(":x").is_err());
        assert!(parse_attributes("r:[5-1]").is_err());
        assert!(parse_attributes("").unwrap().is_empty());
    }

    #[test]
    fn reads_meminfo() {
        assert_eq!(
            mem_total("MemTotal:       2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(mem_total("nothing"), None);
        let m = Machine::detect(Path::new("/"));
        assert!(m.cpus >= 1 && m.mem_bytes > 0);
    }

    proptest! {
        #[test]
        fn detected_totals_are_never_empty_or_negative(cpus in 1u64..512, mem in 0u64..(1 << 42), disk in 0u64..(1 << 44)) {
            let r = default_resources(&Machine { cpus, mem_bytes: mem, disk_bytes: disk });
            prop_assert!(r.scalar("mem") >= 32.0);
            prop_assert!(r.scalar("disk") >= 32.0);
            prop_assert_eq!(r.scalar("cpus"), cpus as f64);
        }
    }
}
