//! Master addresses: what users write (`host:port`, `http://host:port`, `host`) and what
//! a non-leading master's 307 points at (`//host:port/api/v1/scheduler`).

/// The port a master listens on unless told otherwise.
const DEFAULT_PORT: u16 = 5050;

/// The base URL (`http://host:port`) of a master given as `host[:port]`, optionally with
/// an `http://` prefix and a path (ignored).
pub fn base_url(master: &str) -> Result<String, String> {
    let text = master.trim();
    if text.starts_with("https://") {
        return Err("https is not supported; use http://host:port".to_string());
    }
    if text.starts_with("zk://") {
        return Err("ZooKeeper addresses are not supported; give the master's host:port".into());
    }
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err("expected host:port".to_string());
    }
    let with_port = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
            port.parse::<u16>()
                .map_err(|_| format!("'{port}' is not a port number"))?;
            authority.to_string()
        }
        Some(_) => return Err("expected host:port".to_string()),
        None => format!("{authority}:{DEFAULT_PORT}"),
    };
    Ok(format!("http://{with_port}"))
}

/// The leader's base URL from a redirect's `Location` (protocol-relative, absolute, or a
/// path on the current master).
pub fn leader_from_location(location: &str, current: &str) -> Option<String> {
    let location = location.trim();
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(current.to_string());
    }
    let without_scheme = location
        .strip_prefix("http:")
        .unwrap_or(location)
        .strip_prefix("//")?;
    let authority = without_scheme.split('/').next()?;
    (!authority.is_empty()).then(|| format!("http://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_addresses() {
        assert_eq!(base_url("127.0.0.1:5050").unwrap(), "http://127.0.0.1:5050");
        assert_eq!(base_url("http://m1:5051/").unwrap(), "http://m1:5051");
        assert_eq!(base_url("m1").unwrap(), "http://m1:5050");
        assert_eq!(base_url("[::1]:5050").unwrap(), "http://[::1]:5050");
        assert!(base_url("m1:port").unwrap_err().contains("port"));
        assert!(base_url("https://m1:5050").is_err());
        assert!(base_url("").is_err());
    }

    #[test]
    fn redirect_locations() {
        let here = "http://a:5050";
        assert_eq!(
            leader_from_location("//b:5050/api/v1/scheduler", here).as_deref(),
            Some("http://b:5050")
        );
        assert_eq!(
            leader_from_location("http://c:1/master/api/v1/scheduler", here).as_deref(),
            Some("http://c:1")
        );
        assert_eq!(
            leader_from_location("/api/v1/scheduler", here).as_deref(),
            Some(here)
        );
        assert_eq!(leader_from_location("ftp://x", here), None);
    }
}
