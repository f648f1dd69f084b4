//! The cluster's version as etcd decides it: the lowest etcd API version its members speak
//! (major.minor), so that a client gating a feature on `/version`'s `etcdcluster` sees what
//! every member can serve, and a member older than what the cluster settled on refuses to
//! start rather than serve it (etcd's downgrade safety).
//!
//! It owns the comparison of version strings; the versions come from the members' published
//! records ([`super::MemberRecord::version`]), and reporting and refusing are the server's.

/// A version's major and minor numbers (`3.5.0` → `(3, 5)`); None for anything else.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The cluster version of members speaking `versions` (unparsable or empty ones, of members
/// that have not published, are skipped): the lowest, as `major.minor.0`; None when no
/// member has published one.
pub fn cluster_version<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<String> {
    versions
        .into_iter()
        .filter_map(major_minor)
        .min()
        .map(|(major, minor)| format!("{major}.{minor}.0"))
}

/// Refuses a member speaking `own` in a cluster whose members published `published`: it
/// must not serve a cluster that settled on a newer version (etcd's words).
pub fn check_not_downgraded<'a>(
    own: &str,
    published: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    let Some(cluster) = cluster_version(published) else {
        return Ok(());
    };
    match (major_minor(own), major_minor(&cluster)) {
        (Some(mine), Some(theirs)) if mine < theirs => Err(format!(
            "cluster cannot be downgraded (current version: {own} is lower than determined \
             cluster version: {}.{})",
            theirs.0, theirs.1
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_speaks_its_oldest_members_version() {
        assert_eq!(
            cluster_version(["3.5.0", "3.4.23", ""]),
            Some("3.4.0".into())
        );
        assert_eq!(cluster_version(["3.5.2"]), Some("3.5.0".into()));
        assert_eq!(cluster_version(["", "x"]), None);
        assert_eq!(major_minor("3.10.1"), Some((3, 10)));
    }

    #[test]
    fn an_older_member_may_not_serve_a_newer_cluster() {
        assert_eq!(check_not_downgraded("3.5.0", ["3.5.0", "3.5.1"]), Ok(()));
        assert_eq!(check_not_downgraded("3.5.0", ["3.4.0", "3.5.0"]), Ok(()));
        assert_eq!(check_not_downgraded("3.5.0", [""]), Ok(()));
        assert_eq!(
            check_not_downgraded("3.5.0", ["3.6.0", "3.6.1"]),
            Err(
                "cluster cannot be downgraded (current version: 3.5.0 is lower than \
                 determined cluster version: 3.6)"
                    .into()
            )
        );
    }
}
