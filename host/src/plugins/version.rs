//! Which `plugin-api` versions this host can load.

use semver::Version;

/// The host's own `plugin-api` version.
pub fn host_api_version() -> &'static str {
    plugin_abi::API_VERSION
}

/// A plugin built against `plugin` can be loaded by a host built against `host` when the
/// ABI is the same (same major, and same minor while at 0.x, where every ABI change bumps
/// the minor) and the plugin is not newer than the host (it may rely on a later fix).
pub fn check(plugin: &str, host: &str) -> Result<(), String> {
    let parse =
        |text: &str| Version::parse(text).map_err(|err| format!("bad version '{text}': {err}"));
    let (p, h) = (parse(plugin)?, parse(host)?);
    let same_abi = p.major == h.major && (h.major != 0 || p.minor == h.minor);
    if same_abi && p <= h {
        return Ok(());
    }
    let wanted = if h.major == 0 {
        format!("{}.{}.x up to {h}", h.major, h.minor)
    } else {
        format!("{}.x up to {h}", h.major)
    };
    Err(format!(
        "built against plugin-api {p}, but this host loads plugin-api {wanted}; rebuild the plugin against plugin-api {h}"
    ))
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn compatibility() {
        assert!(check("0.1.0", "0.1.0").is_ok());
        assert!(check("0.1.0", "0.1.3").is_ok());
        assert!(
            check("0.1.4", "0.1.3").is_err(),
            "newer patch than the host"
        );
        assert!(check("0.0.9", "0.1.0").is_err());
        assert!(check("0.2.0", "0.1.0").is_err());
        assert!(check("1.0.0", "1.2.0").is_ok());
        assert!(check("2.0.0", "1.2.0").is_err());
        assert!(check("junk", "1.2.0").is_err());
    }
}
