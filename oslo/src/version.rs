//! oslo RPC API versions (`"M.m"` or `"M.m.r"`) and the compatibility rule of
//! `oslo_messaging._utils.version_is_compatible`.

use std::fmt;

/// A version string that is not `M.m` or `M.m.r` with non-negative integers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RPC version `{0}` (expected M.m or M.m.r)")]
pub struct VersionError(pub String);

/// A parsed oslo API version.
///
/// ```
/// let v: fjord_oslo::Version = "1.3".parse().unwrap();
/// assert_eq!((v.major, v.minor, v.revision), (1, 3, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major: must match exactly.
    pub major: u64,
    /// Minor: the endpoint must have at least the requested one.
    pub minor: u64,
    /// Revision (0 when absent): compared only when minors are equal.
    pub revision: u64,
}

impl Version {
    /// Parses `"M.m"` or `"M.m.r"`.
    ///
    /// ```
    /// assert!(fjord_oslo::Version::parse("1.2.3").is_ok());
    /// assert!(fjord_oslo::Version::parse("one").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        let err = || VersionError(s.to_string());
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(err());
        }
        let num = |p: &str| -> Result<u64, VersionError> {
            // Only plain digits: Python's int() would also accept " 1" or "+1", nobody sends those.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            p.parse().map_err(|_| err())
        };
        Ok(Version {
            major: num(parts[0])?,
            minor: num(parts[1])?,
            revision: match parts.get(2) {
                Some(r) => num(r)?,
                None => 0,
            },
        })
    }

    /// Whether an endpoint at `self` can serve a request for `requested`.
    ///
    /// ```
    /// use fjord_oslo::Version;
    /// let endpoint = Version::parse("1.3").unwrap();
    /// assert!(endpoint.serves(&Version::parse("1.0").unwrap()));
    /// assert!(!endpoint.serves(&Version::parse("2.0").unwrap()));
    /// ```
    pub fn serves(&self, requested: &Version) -> bool {
        if self.major != requested.major {
            return false;
        }
        if requested.minor > self.minor {
            return false;
        }
        if requested.minor == self.minor && requested.revision > self.revision {
            return false;
        }
        true
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.revision == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.revision)
        }
    }
}

/// The oslo version an endpoint serves, from its WIT package version: `1.3.0` serves `1.3`,
/// `1.3.2` serves `1.3.2` (the patch is oslo's revision), no version serves `1.0`.
///
/// ```
/// use fjord_oslo::version::served_version;
/// assert_eq!(served_version(Some(&semver::Version::new(1, 3, 0))), "1.3");
/// assert_eq!(served_version(Some(&semver::Version::new(1, 3, 2))), "1.3.2");
/// assert_eq!(served_version(None), "1.0");
/// ```
pub fn served_version(package_version: Option<&semver::Version>) -> String {
    match package_version {
        None => "1.0".to_string(),
        Some(v) if v.patch == 0 => format!("{}.{}", v.major, v.minor),
        Some(v) => format!("{}.{}.{}", v.major, v.minor, v.patch),
    }
}

/// oslo's `version_is_compatible(imp_version, version)`: can an endpoint at
/// `endpoint_version` serve a request for `requested`?
///
/// ```
/// use fjord_oslo::is_compatible;
/// assert_eq!(is_compatible("1.3", "1.1"), Ok(true));
/// assert_eq!(is_compatible("1.3", "1.4"), Ok(false));
/// assert!(is_compatible("1.3", "x").is_err());
/// ```
pub fn is_compatible(endpoint_version: &str, requested: &str) -> Result<bool, VersionError> {
    let endpoint = Version::parse(endpoint_version)?;
    let requested = Version::parse(requested)?;
    Ok(endpoint.serves(&requested))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_table() {
        // (endpoint, requested, compatible), cases from oslo's test_utils.
        let table = [
            ("1.0", "1.0", true),
            ("1.1", "1.0", true),
            ("1.0", "1.1", false),
            ("1.0", "2.0", false),
            ("2.0", "1.0", false),
            ("1.1.5", "1.1", true),
            ("1.1", "1.1.5", false),
            ("1.1.5", "1.1.5", true),
            ("1.1.5", "1.1.6", false),
            ("1.2", "1.1.9", true),
            ("1.3.0", "1.3", true),
            ("1.10", "1.9", true),
            ("1.9", "1.10", false),
            ("2.3", "2.0", true),
        ];
        for (endpoint, requested, expected) in table {
            assert_eq!(
                is_compatible(endpoint, requested),
                Ok(expected),
                "endpoint {endpoint} requested {requested}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["", "1", "1.", ".1", "a.b", "1.2.3.4", "1.-1", "1.2x", "١.٢"] {
            assert!(Version::parse(bad).is_err(), "{bad}");
            assert!(is_compatible("1.0", bad).is_err());
            assert!(is_compatible(bad, "1.0").is_err());
        }
    }

    #[test]
    fn display() {
        assert_eq!(Version::parse("1.3").unwrap().to_string(), "1.3");
        assert_eq!(Version::parse("1.3.2").unwrap().to_string(), "1.3.2");
    }
}
