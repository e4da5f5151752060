//! Which `plugin-api` versions this host can load.

use semver::Version;

/// The host's own `plugin-api` version.
pub fn host_api_version() -> &'static str {
    plugin_abi::API_VERSION
}

/// Why a plugin's `plugin-api` version cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("bad version '{text}': {err}")]
    Bad { text: String, err: semver::Error },
    #[error(
        "built against plugin-api {plugin}, but this host loads plugin-api {}; rebuild the \
         plugin against plugin-api {host}",
        loadable(.host)
    )]
    Incompatible { plugin: Version, host: Version },
}

/// The versions a host built against `host` loads, as the refusal says them.
fn loadable(host: &Version) -> String {
    if host.major == 0 {
        format!("{}.{}.x up to {host}", host.major, host.minor)
    } else {
        format!("{}.x up to {host}", host.major)
    }
}

/// A plugin built against `plugin` can be loaded by a host built against `host` when the
/// ABI is the same (same major, and same minor while at 0.x, where every ABI change bumps
/// the minor) and the plugin is not newer than the host (it may rely on a later fix).
pub fn check(plugin: &str, host: &str) -> Result<(), VersionError> {
    let parse = |text: &str| {
        Version::parse(text).map_err(|err| VersionError::Bad {
            text: text.to_owned(),
            err,
        })
    };
    let (plugin, host) = (parse(plugin)?, parse(host)?);
    let same_abi = plugin.major == host.major && (host.major != 0 || plugin.minor == host.minor);
    if same_abi && plugin <= host {
        return Ok(());
    }
    Err(VersionError::Incompatible { plugin, host })
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
        assert_eq!(
            check("0.2.0", "0.1.3").unwrap_err().to_string(),
            "built against plugin-api 0.2.0, but this host loads plugin-api 0.1.x up to 0.1.3; \
             rebuild the plugin against plugin-api 0.1.3"
        );
        assert_eq!(
            check("2.0.0", "1.2.0").unwrap_err().to_string(),
            "built against plugin-api 2.0.0, but this host loads plugin-api 1.x up to 1.2.0; \
             rebuild the plugin against plugin-api 1.2.0"
        );
    }
}
